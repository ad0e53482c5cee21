"""Who is mailed about a change, and why: the mail rules of PRODUCT.md, in one place.

Customers hear of every public change to their ticket: the requester and the CCs, never the
author of the change, never of an internal event. Agents hear of customers' messages: the
assignee, or while nobody is, every agent who opted in. Mail is essential (acknowledgement,
responses, status changes, a resolved problem) or optional (field changes, agents' notices);
a user who turned optional mail off gets only the essential. One mail per address and event.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache

from django.db.models.functions import Lower

from supportdesk import rows
from supportdesk.accounts.models import Role, User
from supportdesk.events.models import Event, EventKind
from supportdesk.notify.models import Reason
from supportdesk.tickets import access
from supportdesk.tickets.models import Status, Ticket, TicketCC

# Changes customers see on their ticket page; the assignee and the problem link are agents'.
CUSTOMER_VISIBLE_FIELDS = access.CUSTOMER_FIELDS | {"status", "requester", "attachments"}

# The kinds that can mail anyone; NOTE_ADDED and PROBLEM_LINKED are agents' business only.
MAILED_KINDS = (
    EventKind.CREATED,
    EventKind.RESPONSE_ADDED,
    EventKind.UPDATED,
    EventKind.STATUS_CHANGED,
    EventKind.REOPENED,
    EventKind.ASSIGNED,
    EventKind.ATTACHMENT_ADDED,
)


@dataclass(frozen=True)
class Recipient:
    email: str
    user: User | None
    reason: Reason
    optional: bool
    ticket: Ticket  # the ticket the mail is about: a linked incident for a resolved problem


@dataclass
class _Plan:
    author_ids: set[int]
    author_emails: set[str]
    recipients: list[Recipient] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)

    def is_author(self, email: str, user: User | None) -> bool:
        return email.lower() in self.author_emails or (
            user is not None and user.pk in self.author_ids
        )

    def add(self, recipient: Recipient, *, even_the_author: bool = False) -> None:
        """Add unless already mailed, deactivated, the author, or opted out of optional mail."""
        email, user = recipient.email, recipient.user
        if not email or email.lower() in self.seen:
            return
        if user is not None and not user.is_active:
            return
        if not even_the_author and self.is_author(email, user):
            return
        if recipient.optional and user is not None and not user.mail_optional:
            return
        self.seen.add(email.lower())
        self.recipients.append(recipient)


def recipients_for(event: Event) -> list[Recipient]:
    """Everyone to mail about this event, in a stable order: requester, CCs, agents, then a
    resolved problem's incident requesters. Empty for an internal event or an account's."""
    ticket = event.ticket
    if ticket is None or event.is_internal or _is_internal_response(event):
        return []
    plan = _Plan(*_authors(event))
    kind = event.kind
    if kind == EventKind.CREATED:
        # The acknowledgement is the requester's receipt, so it goes even to its author.
        _requester(plan, ticket, Reason.REQUESTER, optional=False, even_the_author=True)
        _ccs(plan, ticket, optional=False)
        if not _by_agent(event.actor):
            _agents_for_customer_message(plan, ticket)
    elif kind == EventKind.RESPONSE_ADDED:
        _requester(plan, ticket, Reason.REQUESTER, optional=False)
        _ccs(plan, ticket, optional=False)
        if event.response is not None and not _by_agent(event.response.author):
            _agents_for_customer_message(plan, ticket)
    elif set(event.changes) & CUSTOMER_VISIBLE_FIELDS:
        optional = "status" not in event.changes  # a field change; a status change is essential
        _requester(plan, ticket, Reason.REQUESTER, optional=optional)
        _ccs(plan, ticket, optional=optional)
    if "assignee" in event.changes:
        _new_assignee(plan, ticket, event)
    if problem_was_resolved(event, ticket):
        _incident_requesters(plan, ticket)
    return plan.recipients


def is_customer_mail(reason: str) -> bool:
    """Whether the mail is the customer's view of the ticket (and may show only that)."""
    return reason in (Reason.REQUESTER, Reason.CC, Reason.INCIDENT_REQUESTER)


def problem_was_resolved(event: Event, ticket: Ticket) -> bool:
    """A problem moved to Resolved, or straight to Closed (Resolved then Closed tells once)."""
    change = event.changes.get("status")
    if not change or ticket.type.key != "problem":
        return False
    before, after = str(change[0]), str(change[1])
    return after == Status.RESOLVED.label or (
        after == Status.CLOSED.label and before != Status.RESOLVED.label
    )


def _is_internal_response(event: Event) -> bool:
    return event.response is not None and event.response.is_internal


def _authors(event: Event) -> tuple[set[int], set[str]]:
    """Whoever made the change: the acting user, and for a response also its author (a call
    logged by an agent is the customer's words; they need no copy of them)."""
    ids: set[int] = set()
    emails: set[str] = set()
    people: list[tuple[User | None, str]] = [(event.actor, event.actor_email)]
    if event.response is not None:
        people.append((event.response.author, event.response.author_email))
    for user, email in people:
        if user is not None:
            ids.add(user.pk)
            emails.add(user.email.lower())
        if email:
            emails.add(email.lower())
    return ids, emails


def _by_agent(user: User | None) -> bool:
    """A message by no account (a plain CC writing by mail) counts as the customer's."""
    return user is not None and user.is_agent


def _requester(
    plan: _Plan, ticket: Ticket, reason: Reason, *, optional: bool, even_the_author: bool = False
) -> None:
    requester = ticket.requester
    plan.add(
        Recipient(requester.email, requester, reason, optional, ticket),
        even_the_author=even_the_author,
    )


def _ccs(plan: _Plan, ticket: Ticket, *, optional: bool) -> None:
    """Every CC; a plain address that has since become a user's is treated as that user
    (their preferences, their time zone, and never mailed once deactivated)."""
    ccs = []
    for row in rows.fetch_all(_ccs_sql(), [ticket.pk]):
        cc, cc_user = rows.build_joined(row, TicketCC, User)
        assert isinstance(cc, TicketCC)  # noqa: S101  (the FROM table: never NULL)
        cc.user = cc_user  # type: ignore[assignment]
        ccs.append(cc)
    known = _users_by_email(cc.email for cc in ccs if cc.user is None)
    for cc in ccs:
        user = cc.user or known.get(cc.email.lower())
        plan.add(Recipient(cc.email, user, Reason.CC, optional, ticket))


# Written once (supportdesk/rows.py): every customer's message asks these, and compiling
# them as QuerySets cost more than the acknowledgement's SQL (bench/README.md, "Mail in").
@cache
def _ccs_sql() -> str:
    selected = f"{rows.columns(TicketCC, 'cc')}, {rows.columns(User, 'u')}"
    return (
        f"SELECT {selected} FROM {rows.table(TicketCC)} cc"  # noqa: S608
        f" LEFT JOIN {rows.table(User)} u ON u.id = cc.user_id"
        " WHERE cc.ticket_id = %s ORDER BY cc.email, cc.id"
    )


@cache
def _opted_in_agents_sql() -> str:
    return (
        f"SELECT {rows.columns(User, 'u')} FROM {rows.table(User)} u"  # noqa: S608
        " WHERE u.is_active AND u.mail_unassigned AND u.role IN (%s, %s) ORDER BY u.email, u.id"
    )


def _users_by_email(emails: Iterable[str]) -> dict[str, User]:
    wanted = {email.lower() for email in emails}
    if not wanted:
        return {}
    users = User.objects.annotate(email_lower=Lower("email")).filter(email_lower__in=wanted)
    return {user.email.lower(): user for user in users}


def _agents_for_customer_message(plan: _Plan, ticket: Ticket) -> None:
    """The assignee must see what the customer said; with nobody assigned, every agent who
    asked to hear of unassigned tickets does (an optional notice)."""
    if ticket.assignee is not None:
        assignee = ticket.assignee
        plan.add(Recipient(assignee.email, assignee, Reason.ASSIGNEE, False, ticket))
        return
    found = rows.fetch_all(_opted_in_agents_sql(), [Role.AGENT, Role.ADMIN])
    for agent in (rows.build(User, row) for row in found):
        plan.add(Recipient(agent.email, agent, Reason.UNASSIGNED, True, ticket))


def _new_assignee(plan: _Plan, ticket: Ticket, event: Event) -> None:
    """The agent the event assigned, if still assigned: a later re-assignment mails its own."""
    assignee = ticket.assignee
    if assignee is None or str(assignee) != event.changes["assignee"][1]:
        return
    plan.add(Recipient(assignee.email, assignee, Reason.ASSIGNED, True, ticket))


def _incident_requesters(plan: _Plan, problem: Ticket) -> None:
    """Each linked incident's requester, once, about their earliest linked incident."""
    incidents = problem.incidents.select_related("requester").order_by("number")
    for incident in incidents:
        requester = incident.requester
        plan.add(Recipient(requester.email, requester, Reason.INCIDENT_REQUESTER, False, incident))
