"""Tickets by number: list, create, read, edit, re-open and history."""

from __future__ import annotations

import json
from typing import Any, Literal

from django.http import HttpResponse
from ninja import Header, Query, Router, Schema
from pydantic import Field

from supportdesk.api import representations
from supportdesk.api.auth import ApiRequest
from supportdesk.api.idempotency import run_once
from supportdesk.api.lookups import user_by_email
from supportdesk.api.pagination import page
from supportdesk.api.problems import Problem
from supportdesk.api.schemas import (
    READ_PROBLEMS,
    WRITE_PROBLEMS,
    EventOut,
    TicketIn,
    TicketOut,
    TicketPage,
    TicketPatch,
    answers,
    wire,
)
from supportdesk.errors import Conflict
from supportdesk.events.models import Via
from supportdesk.tickets import queries, services
from supportdesk.tickets.access import access_ticket

router = Router(tags=["tickets"])


class TicketQuery(Schema):
    view: Literal["open", "all", "closed"] = "open"
    queue: Literal["unassigned", "mine", "urgent", "open", "all"] = "all"
    q: str = Field("", max_length=500, description="Words, or a number with or without #.")
    type: str = ""
    priority: str = ""
    tag: str = ""
    status: str = ""
    application: int | None = None
    sort: Literal["updated", "created"] = "updated"
    limit: int = Field(25, ge=1, le=100)
    cursor: str | None = None


def _etag(detail: dict[str, Any]) -> str:
    return f'"{detail["number"]}-{detail["version"]}"'


def _detail(request: ApiRequest, number: int) -> dict[str, Any]:
    return representations.ticket_detail(request.auth, queries.ticket_page(request.auth, number))


@router.get(
    "/tickets", response=answers({200: TicketPage}, READ_PROBLEMS), operation_id="list_tickets"
)
def list_tickets(request: ApiRequest, params: Query[TicketQuery]) -> dict[str, Any]:
    """Visible tickets, newest first: the customer panel's views, or an agent's queues."""
    user = request.auth
    query = queries.TicketFilter(
        words=params.q,
        type=params.type,
        priority=params.priority,
        tag=params.tag,
        status=params.status,
        application=params.application,
    )
    if user.is_agent:
        tickets = queries.agent_queue(user, params.queue, query)
    else:
        tickets = queries.customer_panel(user, params.view, query)
    rows, next_cursor = page(tickets, sort=params.sort, limit=params.limit, cursor=params.cursor)
    return {
        "items": [representations.ticket_summary(t) for t in rows],
        "next_cursor": next_cursor,
    }


@router.post(
    "/tickets", response=answers({201: TicketOut}, WRITE_PROBLEMS), operation_id="create_ticket"
)
def create_ticket(
    request: ApiRequest,
    payload: TicketIn,
    idempotency_key: str | None = Header(None, alias="Idempotency-Key"),  # type: ignore[type-arg]
) -> HttpResponse:
    def work() -> tuple[int, dict[str, Any]]:
        ticket = services.create_ticket(
            acting_user=request.auth,
            via=Via.API,
            **payload.model_dump(exclude={"requester"}),
            requester=user_by_email(payload.requester),
        )
        # The service's ticket already holds what the answer shows: reading it back through
        # ticket_page (a 12-table join) was more than half of a create's time (bench/).
        body = TicketOut.model_validate(representations.ticket_detail(request.auth, ticket))
        return 201, wire(body)

    response = run_once(
        request.auth,
        idempotency_key,
        operation="create_ticket",
        request=lambda: json.loads(request.body),
        work=work,
    )
    if response.status_code == 201:
        response["Location"] = (
            f"{request.path.rstrip('/')}/{json.loads(response.content)['number']}"
        )
    return response


@router.get(
    "/tickets/{number}",
    response=answers({200: TicketOut}, READ_PROBLEMS),
    operation_id="get_ticket",
)
def get_ticket(request: ApiRequest, number: int, response: HttpResponse) -> dict[str, Any]:
    detail = _detail(request, number)
    response["ETag"] = _etag(detail)
    return detail


def _expected_version(if_match: str | None, number: int) -> int | None:
    """The version an If-Match names; a tag of another ticket or a malformed one can never
    match, so it is a 412 like a stale one."""
    if if_match is None or if_match.strip() == "*":
        return None
    tag = if_match.strip().removeprefix("W/").strip('"')
    tag_number, _, version = tag.partition("-")
    if tag_number != str(number) or not version.isdigit() or len(version) > 9:
        raise Problem(412, "If-Match does not name a version of this ticket.")
    return int(version)


@router.patch(
    "/tickets/{number}",
    response=answers({200: TicketOut}, (*WRITE_PROBLEMS, 412)),
    operation_id="update_ticket",
)
def update_ticket(
    request: ApiRequest,
    number: int,
    payload: TicketPatch,
    response: HttpResponse,
    if_match: str | None = Header(None, alias="If-Match"),  # type: ignore[type-arg]
) -> dict[str, Any]:
    """Change the fields present in the body. With If-Match, a stale ETag gets 412 and
    changes nothing."""
    ticket = access_ticket(request.auth, number)
    changes = payload.model_dump(exclude_unset=True)
    if "requester" in changes:
        changes["requester"] = user_by_email(changes["requester"])
    expected = _expected_version(if_match, number)
    try:
        services.update_ticket(
            ticket,
            acting_user=request.auth,
            via=Via.API,
            changes=changes,
            expected_version=expected,
        )
    except Conflict as error:
        if expected is None:
            raise
        raise Problem(412, error.message, extra={"changed": error.changed}) from None
    detail = _detail(request, number)
    response["ETag"] = _etag(detail)
    return detail


@router.post(
    "/tickets/{number}/reopen",
    response=answers({200: TicketOut}, WRITE_PROBLEMS),
    operation_id="reopen_ticket",
)
def reopen_ticket(request: ApiRequest, number: int, response: HttpResponse) -> dict[str, Any]:
    ticket = access_ticket(request.auth, number)
    services.reopen_ticket(ticket, acting_user=request.auth, via=Via.API)
    detail = _detail(request, number)
    response["ETag"] = _etag(detail)
    return detail


@router.get(
    "/tickets/{number}/events",
    response=answers({200: list[EventOut]}, READ_PROBLEMS),
    operation_id="list_events",
)
def list_events(request: ApiRequest, number: int) -> list[dict[str, Any]]:
    """The ticket's history, oldest first; internal events are agents' only."""
    ticket = access_ticket(request.auth, number)
    return [representations.event(e) for e in queries.history(request.auth, ticket)]
