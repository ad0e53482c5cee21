"""Reads: list, filter and queue querysets, with what each page shows loaded up front.

Queries never write. Each list has a test that its query count does not grow with rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Prefetch, Q, QuerySet

from supportdesk.accounts.models import Application, Environment, Role, User
from supportdesk.events.models import Event
from supportdesk.tickets.access import access_ticket, can_see_internal, visible_tickets
from supportdesk.tickets.models import (
    DONE_STATUSES,
    OPEN_STATUSES,
    Attachment,
    Priority,
    Response,
    Status,
    Tag,
    Ticket,
    TicketType,
)

PANEL_VIEWS = {"open": OPEN_STATUSES, "closed": DONE_STATUSES, "all": None}
AGENT_QUEUES = ("unassigned", "mine", "urgent", "open", "all")


@dataclass(frozen=True)
class TicketFilter:
    """What the query box and its filters ask for; empty fields filter nothing."""

    words: str = ""
    type: str = ""
    priority: str = ""
    tag: str = ""
    status: str = ""
    application: int | None = None


def _list_columns(tickets: QuerySet[Ticket]) -> QuerySet[Ticket]:
    """What a list row shows; the description, which can be long, is not read."""
    return (
        tickets.defer("description")
        .select_related(
            "type",
            "priority",
            "organization",
            "requester",
            "assignee",
            "last_updated_by",
            "application",
        )
        .prefetch_related("tags")
    )


def apply_filter(tickets: QuerySet[Ticket], query: TicketFilter) -> QuerySet[Ticket]:
    """Words match the number (with or without #), title or description, all words required."""
    for word in query.words.split()[:10]:
        number = word.removeprefix("#")
        match = Q(title__icontains=word) | Q(description__icontains=word)
        if number.isdigit() and len(number) < 10:
            match |= Q(number=int(number))
        tickets = tickets.filter(match)
    if query.type:
        tickets = tickets.filter(type__key=query.type)
    if query.priority:
        tickets = tickets.filter(priority__key=query.priority)
    if query.tag:
        tickets = tickets.filter(tags__name__iexact=query.tag)
    if query.status in Status.values:
        tickets = tickets.filter(status=query.status)
    if query.application is not None:
        tickets = tickets.filter(application_id=query.application)
    return tickets


def customer_panel(user: User, view: str, query: TicketFilter | None = None) -> QuerySet[Ticket]:
    """The support panel: Open (open + pending), Closed (resolved + closed) or All."""
    tickets = visible_tickets(user)
    statuses = PANEL_VIEWS.get(view)
    if statuses is not None:
        tickets = tickets.filter(status__in=statuses)
    if query is not None:
        tickets = apply_filter(tickets, query)
    return _list_columns(tickets).order_by("-updated_at", "-id")


def agent_queue(user: User, queue: str, query: TicketFilter | None = None) -> QuerySet[Ticket]:
    """Agent queues: unassigned, mine, urgent (urgent and open), all open, all."""
    tickets = visible_tickets(user)
    if queue != "all":
        tickets = tickets.filter(status__in=OPEN_STATUSES)
    if queue == "unassigned":
        tickets = tickets.filter(assignee__isnull=True)
    elif queue == "mine":
        tickets = tickets.filter(assignee=user)
    elif queue == "urgent":
        tickets = tickets.filter(priority__key="urgent")
    if query is not None:
        tickets = apply_filter(tickets, query)
    if queue == "urgent":
        return _list_columns(tickets).order_by("created_at", "id")
    return _list_columns(tickets).order_by("-updated_at", "-id")


def ticket_page(user: User, number: int) -> Ticket:
    """One ticket with what its page shows; raises NotFound like access_ticket."""
    ticket = access_ticket(user, number)
    return (
        Ticket.objects.select_related(
            "type",
            "priority",
            "organization",
            "requester",
            "created_by",
            "last_updated_by",
            "assignee",
            "application",
            "problem",
            "problem__type",
        )
        .prefetch_related("tags", "environments", "ccs")
        .get(pk=ticket.pk)
    )


def conversation(user: User, ticket: Ticket) -> QuerySet[Response]:
    responses = ticket.responses.select_related("author", "logged_by").prefetch_related(
        Prefetch("attachments", queryset=Attachment.objects.order_by("id"))
    )
    if not can_see_internal(user):
        responses = responses.filter(is_internal=False)
    return responses.order_by("created_at", "id")


def ticket_attachments(ticket: Ticket) -> QuerySet[Attachment]:
    """Files attached to the ticket itself, not to a response."""
    return ticket.attachments.filter(response__isnull=True).order_by("id")


def history(user: User, ticket: Ticket) -> QuerySet[Event]:
    events = ticket.events.select_related("actor")
    if not can_see_internal(user):
        events = events.filter(is_internal=False)
    return events.order_by("created_at", "id")


def offered_priorities() -> QuerySet[Priority]:
    return Priority.objects.filter(is_hidden=False).order_by("rank", "name")


def offered_types() -> QuerySet[TicketType]:
    return TicketType.objects.filter(is_hidden=False).order_by("rank", "name")


def offered_tags() -> QuerySet[Tag]:
    return Tag.objects.order_by("name")


def applications_for(organization_id: int | None) -> QuerySet[Application]:
    """Applications a ticket of this organization may name; None (an agent who has not
    chosen a customer yet) means every organization's, labelled by organization."""
    applications = Application.objects.select_related("organization")
    if organization_id is not None:
        applications = applications.filter(organization_id=organization_id)
    return applications.order_by("organization__name", "name", "id")


def environments_for(
    organization_id: int | None, application_id: int | None = None
) -> QuerySet[Environment]:
    """Environments of the organization's applications (all organizations' for None),
    narrowed to one application when given."""
    environments = Environment.objects.select_related("application", "application__organization")
    if organization_id is not None:
        environments = environments.filter(application__organization_id=organization_id)
    if application_id is not None:
        environments = environments.filter(application_id=application_id)
    return environments.order_by(
        "application__organization__name", "application__name", "name", "id"
    )


def active_agents() -> QuerySet[User]:
    """Who a ticket can be assigned to."""
    return User.objects.filter(is_active=True, role__in=[Role.AGENT, Role.ADMIN]).order_by(
        "name", "email"
    )
