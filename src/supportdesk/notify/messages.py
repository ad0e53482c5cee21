"""What a mail looks like: subject, headers and both parts, from a delivery row and its event.

Built afresh on every attempt from the row, so a retry carries the same Message-ID and goes
to the same address. A customer's mail shows only what the customer's ticket page shows:
internal events are never planned (recipients.py), and field changes are filtered here.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from functools import cache
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from supportdesk.accounts.models import User
from supportdesk.events.models import Event, EventKind
from supportdesk.notify import ids
from supportdesk.notify.models import MailDelivery, Reason
from supportdesk.notify.recipients import (
    CUSTOMER_VISIBLE_FIELDS,
    is_customer_mail,
    problem_was_resolved,
)
from supportdesk.tickets import access
from supportdesk.tickets.models import Ticket

BLANK_LINES = re.compile(r"\n\s*\n(\s*\n)+")

FIELD_LABELS = {
    "type": "Type",
    "priority": "Priority",
    "title": "Title",
    "description": "Description",
    "application": "Application",
    "environments": "Environments",
    "tags": "Tags",
    "ccs": "CCs",
    "status": "Status",
    "requester": "Requester",
    "attachments": "Attachments",
    "assignee": "Assignee",
    "problem": "Problem",
}

# The word before "[#1042] title" in the subject, by what the mail tells.
SUBJECT_PREFIXES = {
    "acknowledgement": "",
    "new_ticket": "New",
    "response": "Re",
    "updated": "Updated",
    "reopened": "Re-opened",
    "assigned": "Assigned to you",
    "problem_resolved": "Problem resolved",
}


@dataclass(frozen=True)
class Change:
    label: str
    before: str
    after: str
    shown: bool  # False for the description: "changed", its text is on the ticket page


def reply_to(ticket: Ticket) -> str:
    """The mailbox a reply to a mail about the ticket goes to, so it lands on the ticket.
    One mailbox for now; mailboxes per ticket type will answer here."""
    return f"support@{settings.MAIL_DOMAIN}"


def ticket_link(ticket: Ticket) -> str:
    """The ticket's page: customers and agents share the URL, the page shows each their view."""
    prefix, suffix = _ticket_path()
    return f"{settings.BASE_URL}{prefix}{ticket.number}{suffix}"


@cache
def _ticket_path() -> tuple[str, str]:
    """The ticket page's path around its number, reversed once: reverse() cost a millisecond
    a mail here (bench/README.md, "Mail in"), and the URLconf does not change while running."""
    marker = 987654321
    before, _, after = reverse("ticket", args=[marker]).partition(str(marker))
    return before, after


@cache
def _profile_path() -> str:
    """Where optional mail is turned off, reversed once as _ticket_path is: 20 us for each
    optional mail (an agent's notice of a new ticket), twice what the rest of _context took."""
    return reverse("profile")


def mail_kind(delivery: MailDelivery, event: Event) -> str:
    """What the mail tells: it picks the subject's word and the templates' wording."""
    if delivery.reason == Reason.ASSIGNED:
        return "assigned"
    if delivery.reason == Reason.INCIDENT_REQUESTER:
        return "problem_resolved"
    if event.kind == EventKind.CREATED:
        return "acknowledgement" if is_customer_mail(delivery.reason) else "new_ticket"
    if event.kind == EventKind.RESPONSE_ADDED:
        return "response"
    if event.kind == EventKind.REOPENED:
        return "reopened"
    if "status" in event.changes:
        return "status"
    return "updated"


def subject(delivery: MailDelivery, event: Event) -> str:
    ticket = delivery.ticket
    kind = mail_kind(delivery, event)
    prefix = str(event.changes["status"][1]) if kind == "status" else SUBJECT_PREFIXES[kind]
    tag = f"[#{ticket.number}] {ticket.title}"
    return f"{prefix}: {tag}" if prefix else tag


def build(delivery: MailDelivery, event: Event) -> EmailMultiAlternatives:
    """The mail for one delivery row. Times are in the recipient's zone; the HTML part
    escapes every user text (Django's autoescape), the plain part is plain text."""
    ticket = delivery.ticket
    if event.response is not None and event.response.is_internal:
        # recipients.py never plans one; this guard keeps a future change from leaking notes.
        raise ValueError(f"Event {event.pk} is an internal note: it is never mailed.")
    zone = _zone(delivery.user)
    context = _context(delivery, event, zone)
    with timezone.override(zone):
        text = _tidy(render_to_string("notify/mail.txt", context))
        html = render_to_string("notify/mail.html", context)
    thread = ids.thread_id(ticket.number)
    headers = {
        "Message-ID": delivery.message_id,
        "In-Reply-To": thread,
        "References": thread,
        # RFC 3834: an automatic mail, so auto-responders stay quiet and no loop begins.
        "Auto-Submitted": "auto-generated",
        "X-Auto-Response-Suppress": "OOF, AutoReply",
    }
    if context["unsubscribe_url"]:
        headers["List-Unsubscribe"] = f"<{context['unsubscribe_url']}>"
    mail = EmailMultiAlternatives(
        subject=subject(delivery, event),
        body=text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[delivery.recipient],
        reply_to=[reply_to(ticket)],
        headers=headers,
    )
    mail.attach_alternative(html, "text/html")
    return mail


def _tidy(text: str) -> str:
    """Template tags leave runs of blank lines; a plain-text mail reads better without."""
    return BLANK_LINES.sub("\n\n", text).strip() + "\n"


def _zone(user: User | None) -> zoneinfo.ZoneInfo:
    name = user.time_zone if user is not None else settings.TIME_ZONE
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo(settings.TIME_ZONE)


def _context(delivery: MailDelivery, event: Event, zone: zoneinfo.ZoneInfo) -> dict[str, Any]:
    ticket = delivery.ticket
    user = delivery.user
    kind = mail_kind(delivery, event)
    customer = is_customer_mail(delivery.reason)
    has_account = user is not None
    return {
        "kind": kind,
        "reason": delivery.reason,
        "customer": customer,
        "ticket": ticket,
        "recipient_name": user.display_name if user is not None else "",
        "actor_name": _actor_name(event),
        "author_name": _author_name(event),
        "by_requester": event.actor_id == ticket.requester_id,
        "when": event.created_at,
        "zone": str(zone),
        # Someone without an account cannot open the page: they reply to the mail instead.
        "ticket_url": ticket_link(ticket) if has_account else "",
        "unsubscribe_url": (
            settings.BASE_URL + _profile_path() if delivery.optional and has_account else ""
        ),
        "response": event.response,
        "attachments": _attachment_names(event),
        "changes": _changes(event, customer=customer),
        "status_after": _status_after(event, ticket),
        "problem": _problem(delivery, event),
        "other_incidents": _other_incidents(delivery, event),
    }


def _actor_name(event: Event) -> str:
    if event.actor is not None:
        return event.actor.display_name
    return event.actor_email or "Support"


def _author_name(event: Event) -> str:
    """Who spoke: for a call an agent logged, the customer on the phone."""
    response = event.response
    if response is None:
        return _actor_name(event)
    if response.author is not None:
        return response.author.display_name
    return response.author_email or _actor_name(event)


def _attachment_names(event: Event) -> list[str]:
    names = event.changes.get("attachments", [None, []])[1]
    return [str(name) for name in names or []]


def _changes(event: Event, *, customer: bool) -> list[Change]:
    """The event's field changes a recipient may see: a customer never the agents' fields."""
    if event.kind in (EventKind.CREATED, EventKind.RESPONSE_ADDED):
        return []
    changes = []
    for name, before, after in event.field_changes():
        if name == "attachments" or (customer and name not in CUSTOMER_VISIBLE_FIELDS):
            continue
        label = FIELD_LABELS.get(name, name.replace("_", " ").capitalize())
        changes.append(Change(label, _shown(before), _shown(after), name != "description"))
    return changes


def _shown(value: object) -> str:
    if value is None or value == []:
        return "none"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    return str(value)


def _status_after(event: Event, ticket: Ticket) -> str:
    change = event.changes.get("status")
    return str(change[1]) if change else ticket.get_status_display()


def _problem(delivery: MailDelivery, event: Event) -> access.ProblemView | None:
    """What the incident's requester may know of the problem: its number and title only
    when it is their organization's, as on their ticket page."""
    if delivery.reason != Reason.INCIDENT_REQUESTER or delivery.user is None:
        return None
    return access.visible_problem(delivery.user, delivery.ticket)


def _other_incidents(delivery: MailDelivery, event: Event) -> list[int]:
    """The requester's other incidents of the same problem: one mail tells of them all."""
    problem = event.ticket
    if delivery.reason != Reason.INCIDENT_REQUESTER or problem is None:
        return []
    if not problem_was_resolved(event, problem):
        return []
    incidents = problem.incidents.filter(requester_id=delivery.user_id).exclude(
        pk=delivery.ticket_id
    )
    return list(incidents.order_by("number").values_list("number", flat=True))
