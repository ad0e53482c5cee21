"""A ticket's conversation: public responses, and internal notes for agents only."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.http import HttpResponse
from ninja import Header, Router

from supportdesk.api import representations
from supportdesk.api.auth import ApiRequest
from supportdesk.api.idempotency import run_once
from supportdesk.api.lookups import user_by_email
from supportdesk.api.parsing import accepts_form
from supportdesk.api.problems import Problem
from supportdesk.api.schemas import (
    READ_PROBLEMS,
    WRITE_PROBLEMS,
    ResponseIn,
    ResponseOut,
    answers,
    wire,
)
from supportdesk.events.models import Via
from supportdesk.tickets import queries, services
from supportdesk.tickets.access import access_ticket

router = Router(tags=["responses"])


@router.get(
    "/tickets/{number}/responses",
    response=answers({200: list[ResponseOut]}, READ_PROBLEMS),
    operation_id="list_responses",
    url_name="ticket_responses",
)
def list_responses(request: ApiRequest, number: int) -> list[dict[str, Any]]:
    """Oldest first; a customer never sees internal notes."""
    ticket = access_ticket(request.auth, number)
    return [representations.response(r, number) for r in queries.conversation(request.auth, ticket)]


_FORM_BODY = {
    "type": "object",
    "required": ["body"],
    "properties": {
        "body": {"type": "string"},
        "internal": {"type": "boolean", "default": False},
        "channel": {"type": "string", "enum": ["web", "api", "email", "phone", "chat"]},
        "on_behalf_of": {"type": "string", "description": "Email of the customer who called."},
        "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
    },
    "additionalProperties": False,
}


def _uploads(request: ApiRequest) -> list[UploadedFile[bytes]]:
    """The files of a multipart request, each within the upload limit (else 413)."""
    if not accepts_form(request):
        return []
    files = request.FILES.getlist("files")
    limit: int = settings.UPLOAD_MAX_BYTES
    for upload in files:
        if (upload.size or 0) > limit:
            raise Problem(413, f"{upload.name} is larger than the {limit} byte limit.")
    return files


def _fingerprint(
    request: ApiRequest, payload: ResponseIn, files: list[UploadedFile[bytes]]
) -> object:
    """What a retry must repeat: the parsed JSON body, or the form with each file's digest."""
    if not accepts_form(request):
        return json.loads(request.body)
    return {
        **payload.model_dump(mode="json", exclude_unset=True),
        "files": [
            [f.name, f.size, hashlib.sha256(b"".join(f.chunks())).hexdigest()] for f in files
        ],
    }


@router.post(
    "/tickets/{number}/responses",
    response=answers({201: ResponseOut}, WRITE_PROBLEMS),
    operation_id="create_response",
    url_name="ticket_responses",
    openapi_extra={
        "requestBody": {"content": {"multipart/form-data": {"schema": _FORM_BODY}}},
    },
)
def create_response(
    request: ApiRequest,
    number: int,
    payload: ResponseIn,
    idempotency_key: str | None = Header(None, alias="Idempotency-Key"),  # type: ignore[type-arg]
) -> HttpResponse:
    """JSON, or multipart/form-data with the same fields and one or more `files` attached to
    the response."""
    files = _uploads(request)

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
            # Ninja's UploadedFile is Django's, which offers what Upload asks; its stubs differ.
            attachments=files,  # type: ignore[arg-type]
        )
        body = ResponseOut.model_validate(representations.response(added, number))
        return 201, wire(body)

    return run_once(
        request.auth,
        idempotency_key,
        operation=f"create_response:{number}",
        request=lambda: _fingerprint(request, payload, files),
        work=work,
    )
