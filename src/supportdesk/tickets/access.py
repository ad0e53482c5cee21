"""Who may see and do what. Services and templates ask the same predicates."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import QuerySet

from supportdesk.accounts.models import Organization, User
from supportdesk.errors import NotFound
from supportdesk.tickets.models import DONE_STATUSES, Attachment, Ticket

# What a customer may set and later edit; everything else is agents' only.
CUSTOMER_FIELDS = frozenset(
    {"type", "priority", "application", "environments", "title", "description", "tags", "ccs"}
)
AGENT_FIELDS = CUSTOMER_FIELDS | {"status", "assignee", "problem", "requester"}


def visible_tickets(user: User) -> QuerySet[Ticket]:
    """Every ticket the user may see: customers their organization's, agents all."""
    if not user.is_active:
        return Ticket.objects.none()
    if user.is_agent:
        return Ticket.objects.all()
    if user.organization_id is None:  # the database refuses such a customer; never widen
        return Ticket.objects.none()
    return Ticket.objects.filter(organization_id=user.organization_id)


def visible_organizations(user: User) -> QuerySet[Organization]:
    """The organizations a user may see, with their applications and environments:
    a customer only their own, agents every one (they work all tickets)."""
    if not user.is_active:
        return Organization.objects.none()
    if user.is_agent:
        return Organization.objects.all()
    if user.organization_id is None:  # as in visible_tickets: never widen
        return Organization.objects.none()
    return Organization.objects.filter(id=user.organization_id)


def access_ticket(user: User, number: int, *, for_update: bool = False) -> Ticket:
    """Fetch a ticket the user may see; raises NotFound otherwise.

    Another organization's ticket is NotFound, never Forbidden: a 403 would confirm it exists.
    With for_update the row is locked until the caller's transaction ends.
    """
    tickets = visible_tickets(user)
    if for_update:
        tickets = tickets.select_for_update()
    try:
        return tickets.get(number=number)
    except (Ticket.DoesNotExist, ValueError, TypeError, OverflowError):
        raise NotFound(f"No ticket #{number}.") from None


def editable_fields(user: User) -> frozenset[str]:
    return AGENT_FIELDS if user.is_agent else CUSTOMER_FIELDS


def can_see_internal(user: User) -> bool:
    return user.is_agent


def can_change_status(user: User) -> bool:
    return user.is_agent


def can_reopen(user: User, ticket: Ticket) -> bool:
    return ticket.status in DONE_STATUSES and (
        user.is_agent or ticket.organization_id == user.organization_id
    )


def can_log_on_behalf(user: User) -> bool:
    """Only agents log a phone call or chat for a customer."""
    return user.is_agent


@dataclass(frozen=True)
class ProblemView:
    """What a user may know of the problem linked to an incident."""

    status: str
    status_label: str
    number: int | None = None
    title: str | None = None


def visible_problem(user: User, ticket: Ticket) -> ProblemView | None:
    """A customer sees a linked problem's number and title only when it is their
    organization's; otherwise only that a known problem exists, and its status."""
    problem = ticket.problem
    if problem is None:
        return None
    label = problem.get_status_display()
    if user.is_agent or problem.organization_id == user.organization_id:
        return ProblemView(problem.status, label, problem.number, problem.title)
    return ProblemView(problem.status, label)


def access_attachment(user: User, ticket_number: int, attachment_id: int) -> Attachment:
    """An attachment the user may download; an internal note's files are agents' only."""
    ticket = access_ticket(user, ticket_number)
    try:
        attachment = ticket.attachments.select_related("response").get(pk=attachment_id)
    except (Attachment.DoesNotExist, ValueError, TypeError, OverflowError):
        raise NotFound("No such attachment.") from None
    if attachment.is_internal and not can_see_internal(user):
        raise NotFound("No such attachment.")
    return attachment
