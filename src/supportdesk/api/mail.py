"""Inbound mail for agents: what was held, rejected or quarantined, and the decisions on it.

Customers get 404 on every operation, as for a ticket they may not see: the API does not
reveal that a resource exists to someone who may not have it."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from django.core import signing
from django.core.files.storage import default_storage
from django.db.models import Q, QuerySet
from django.http import FileResponse, HttpResponse
from ninja import Query, Router, Schema
from pydantic import Field

from supportdesk.accounts.models import Organization
from supportdesk.api.auth import ApiRequest
from supportdesk.api.problems import Problem
from supportdesk.api.schemas import READ_PROBLEMS, WRITE_PROBLEMS, Input, answers
from supportdesk.intake import services
from supportdesk.intake.models import InboundMessage

router = Router(tags=["mail"])

_SALT = "supportdesk.api.mail.cursor"
MessageStateName = Literal[
    "held", "rejected", "quarantined", "processed", "duplicate", "recorded", "stored"
]


class MessageQuery(Schema):
    state: MessageStateName | None = Field(None, description="Only messages in this state.")
    limit: int = Field(25, ge=1, le=100)
    cursor: str | None = None


class MessageOut(Schema):
    id: int
    state: str
    source: str
    mailbox: str | None = Field(description="The mailbox address it was sent to.")
    from_address: str
    subject: str
    message_id: str
    received_at: datetime
    processed_at: datetime | None
    error: str
    ticket: int | None = Field(description="Number of the ticket it opened or landed on.")


class MessagePage(Schema):
    items: list[MessageOut]
    next_cursor: str | None


class AcceptIn(Input):
    organization: int | None = Field(
        None, description="Organization the unknown sender joins; default: by mail domain."
    )


def _agent(request: ApiRequest) -> None:
    if not request.auth.is_agent:
        raise Problem(404, "Not found.")


def _messages() -> QuerySet[InboundMessage]:
    return InboundMessage.objects.select_related("mailbox", "ticket")


def _message(request: ApiRequest, message_id: int) -> InboundMessage:
    _agent(request)
    message = _messages().filter(pk=message_id).first()
    if message is None:
        raise Problem(404, "No such message.")
    return message


def _out(message: InboundMessage) -> dict[str, Any]:
    return {
        "id": message.pk,
        "state": message.state,
        "source": message.source,
        "mailbox": message.mailbox.address if message.mailbox else None,
        "from_address": message.from_address,
        "subject": message.subject,
        "message_id": message.message_id,
        "received_at": message.received_at,
        "processed_at": message.processed_at,
        "error": message.error,
        "ticket": message.ticket.number if message.ticket else None,
    }


def _make_cursor(message: InboundMessage) -> str:
    return signing.dumps([message.received_at.isoformat(), message.pk], salt=_SALT, compress=True)


def _read_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        value, pk = signing.loads(cursor, salt=_SALT)
        if not isinstance(pk, int):
            raise ValueError
        return datetime.fromisoformat(value), pk
    except (signing.BadSignature, ValueError, TypeError):
        raise Problem(400, "The cursor is not one this API handed out.") from None


@router.get(
    "/mail/messages",
    response=answers({200: MessagePage}, READ_PROBLEMS),
    operation_id="list_mail_messages",
)
def list_messages(request: ApiRequest, params: Query[MessageQuery]) -> dict[str, Any]:
    """Inbound messages, newest first (agents only): keyset pages, like tickets."""
    _agent(request)
    messages = _messages()
    if params.state:
        messages = messages.filter(state=params.state)
    if params.cursor:
        value, pk = _read_cursor(params.cursor)
        messages = messages.filter(Q(received_at__lt=value) | Q(received_at=value, id__lt=pk))
    rows = list(messages.order_by("-received_at", "-id")[: params.limit + 1])
    next_cursor = None
    if len(rows) > params.limit:
        rows = rows[: params.limit]
        next_cursor = _make_cursor(rows[-1])
    return {"items": [_out(m) for m in rows], "next_cursor": next_cursor}


@router.get(
    "/mail/messages/{message_id}",
    response=answers({200: MessageOut}, READ_PROBLEMS),
    operation_id="get_mail_message",
)
def get_message(request: ApiRequest, message_id: int) -> dict[str, Any]:
    return _out(_message(request, message_id))


@router.get(
    "/mail/messages/{message_id}/raw",
    response=answers({200: None}, READ_PROBLEMS),
    operation_id="download_mail_message",
    openapi_extra={
        "responses": {
            200: {
                "description": "The message as received.",
                "content": {"message/rfc822": {"schema": {"type": "string", "format": "binary"}}},
            }
        }
    },
)
def download_message(request: ApiRequest, message_id: int) -> FileResponse:
    """The message byte for byte, always as a download."""
    message = _message(request, message_id)
    try:
        raw = default_storage.open(message.raw, "rb")
    except FileNotFoundError:
        raise Problem(404, "The raw message is gone.") from None
    return FileResponse(
        raw, as_attachment=True, filename=f"message-{message.pk}.eml", content_type="message/rfc822"
    )


@router.post(
    "/mail/messages/{message_id}/accept",
    response=answers({200: MessageOut}, WRITE_PROBLEMS),
    operation_id="accept_mail_message",
)
def accept_message(
    request: ApiRequest, message_id: int, payload: AcceptIn | None = None
) -> dict[str, Any]:
    """Process a held message as if its sender were known."""
    message = _message(request, message_id)
    organization = None
    if payload is not None and payload.organization is not None:
        organization = Organization.objects.filter(pk=payload.organization).first()
        if organization is None:
            raise Problem(
                422,
                "No such organization.",
                errors=[{"field": "organization", "detail": "No such organization."}],
            )
    services.accept_held(message, acting_user=request.auth, organization=organization)
    return _out(_message(request, message_id))


@router.post(
    "/mail/messages/{message_id}/reject",
    response=answers({200: MessageOut}, WRITE_PROBLEMS),
    operation_id="reject_mail_message",
)
def reject_message(request: ApiRequest, message_id: int) -> dict[str, Any]:
    """Mark a held message rejected; nobody is mailed."""
    message = _message(request, message_id)
    services.reject_held(message, acting_user=request.auth)
    return _out(_message(request, message_id))


@router.post(
    "/mail/messages/{message_id}/reprocess",
    response=answers({200: MessageOut}, WRITE_PROBLEMS),
    operation_id="reprocess_mail_message",
)
def reprocess_message(request: ApiRequest, message_id: int) -> dict[str, Any]:
    """Process a quarantined message again; it may end quarantined again."""
    message = _message(request, message_id)
    services.reprocess(message)
    return _out(_message(request, message_id))


@router.delete(
    "/mail/messages/{message_id}",
    response=answers({204: None}, WRITE_PROBLEMS),
    operation_id="delete_mail_message",
)
def delete_message(request: ApiRequest, message_id: int) -> HttpResponse:
    """Delete a held, rejected, quarantined, duplicate or recorded message and its file."""
    message = _message(request, message_id)
    services.delete_message(message)
    return HttpResponse(status=204)
