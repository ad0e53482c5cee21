"""Which ticket a message continues, if any.

References are trusted first: they name a mail we sent about the ticket, or one we received
for it, which only someone in the conversation has. The "[#1042]" tag in a subject is only a
hint anyone can type, so it counts only for people who are on that ticket.
"""

from __future__ import annotations

import re

from django.conf import settings

from supportdesk.accounts.models import User
from supportdesk.intake.models import InboundMessage
from supportdesk.intake.parse import ParsedMessage
from supportdesk.notify.models import MailDelivery
from supportdesk.tickets.access import visible_tickets
from supportdesk.tickets.models import Ticket

_TAG = re.compile(r"\[#(\d{1,9})\]")
_THREAD_ROOT = re.compile(r"^<ticket-(\d{1,9})@([^<>]+)>$", re.I)


def referenced_ticket(parsed: ParsedMessage) -> Ticket | None:
    """The ticket of the nearest mail this one answers: In-Reply-To first, then References
    from the newest. Only our own thread roots, deliveries and received mail count."""
    refs = list(dict.fromkeys([*parsed.in_reply_to, *reversed(parsed.references)]))
    if not refs:
        return None
    by_ref: dict[str, int] = {}
    for ref in refs:
        root = _THREAD_ROOT.match(ref)
        if root and root.group(2).lower() == settings.MAIL_DOMAIN.lower():
            number = Ticket.objects.filter(number=int(root.group(1))).values_list("pk", flat=True)
            by_ref.update((ref, pk) for pk in number[:1])
    sent = MailDelivery.objects.filter(message_id__in=refs).values_list("message_id", "ticket_id")
    for message_id, ticket_id in sent:
        by_ref.setdefault(message_id, ticket_id)
    received = InboundMessage.objects.filter(message_id__in=refs, ticket__isnull=False)
    for message_id, received_ticket_id in received.values_list("message_id", "ticket_id"):
        if received_ticket_id is not None:
            by_ref.setdefault(message_id, received_ticket_id)
    for ref in refs:
        if ref in by_ref:
            return Ticket.objects.select_related("organization").get(pk=by_ref[ref])
    return None


def tagged_ticket(subject: str, sender: User) -> Ticket | None:
    """The ticket named by "[#N]" in the subject, when the sender is on it: its requester,
    a CC, an agent, or a user of its organization. Anyone else's tag is ignored (so an
    outsider cannot write into a ticket by guessing its number)."""
    for match in _TAG.finditer(subject):
        ticket = Ticket.objects.filter(number=int(match.group(1))).first()
        if ticket is not None and is_on_ticket(sender, ticket):
            return ticket
    return None


def is_on_ticket(user: User, ticket: Ticket) -> bool:
    if not user.is_active:
        return False
    if user.is_agent or user.pk == ticket.requester_id:
        return True
    if user.organization_id is not None and user.organization_id == ticket.organization_id:
        return True
    return ticket.ccs.filter(email__iexact=user.email).exists()


def find_ticket(parsed: ParsedMessage, sender: User) -> Ticket | None:
    """The ticket the sender's message continues, among the tickets the sender may see.

    A reference to a ticket the sender may not see (a CC in another organization, a
    forwarded notification) does not thread: the services would refuse the response.
    """
    ticket = referenced_ticket(parsed)
    if ticket is not None and visible_tickets(sender).filter(pk=ticket.pk).exists():
        return ticket
    ticket = tagged_ticket(parsed.subject, sender)
    if ticket is not None and visible_tickets(sender).filter(pk=ticket.pk).exists():
        return ticket
    return None


def strip_tag(subject: str) -> str:
    """A subject as a ticket title: without reply prefixes and ticket tags."""
    title = _TAG.sub("", subject)
    previous = None
    while previous != title:
        previous = title
        title = re.sub(r"^\s*(re|fw|fwd|aw|wg|sv|antw)\s*:\s*", "", title, flags=re.I)
    return " ".join(title.split())
