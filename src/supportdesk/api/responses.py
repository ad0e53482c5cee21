"""A ticket's conversation: public responses, and internal notes for agents only."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpResponse
from ninja import Header, Router

from supportdesk.api import representations
from supportdesk.api.auth import ApiRequest
from supportdesk.api.idempotency import run_once
from supportdesk.api.lookups import user_by_email
from supportdesk.api.schemas import ResponseIn, ResponseOut
from supportdesk.events.models import Via
from supportdesk.tickets import queries, services
from supportdesk.tickets.access import access_ticket

router = Router(tags=["responses"])


@router.get(
    "/tickets/{number}/responses", response=list[ResponseOut], operation_id="list_responses"
)
def list_responses(request: ApiRequest, number: int) -> list[dict[str, Any]]:
    """Oldest first; a customer never sees internal notes."""
    ticket = access_ticket(request.auth, number)
    return [representations.response(r, number) for r in queries.conversation(request.auth, ticket)]


@router.post(
    "/tickets/{number}/responses", response={201: ResponseOut}, operation_id="create_response"
)
def create_response(
    request: ApiRequest,
    number: int,
    payload: ResponseIn,
    idempotency_key: str | None = Header(None, alias="Idempotency-Key"),  # type: ignore[type-arg]
) -> HttpResponse:
    def work() -> tuple[int, dict[str, Any]]:
        ticket = access_ticket(request.auth, number)
        added = services.add_response(
            ticket,
            acting_user=request.auth,
            via=Via.API,
            body=payload.body,
            internal=payload.internal,
            channel=payload.channel,
            on_behalf_of=user_by_email(payload.on_behalf_of),
        )
        body = ResponseOut.model_validate(representations.response(added, number))
        return 201, body.model_dump(mode="json")

    return run_once(
        request.auth,
        idempotency_key,
        operation=f"create_response:{number}",
        request=json.loads(request.body),
        work=work,
    )
