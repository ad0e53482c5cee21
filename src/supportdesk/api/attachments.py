"""Files: uploaded onto a ticket (multipart), downloaded through the same access check as
the web page."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.http import FileResponse, HttpResponse
from ninja import File, Router
from ninja.files import UploadedFile

from supportdesk.api import representations
from supportdesk.api.auth import ApiRequest
from supportdesk.api.problems import Problem
from supportdesk.api.schemas import READ_PROBLEMS, WRITE_PROBLEMS, AttachmentOut, answers, wire
from supportdesk.events.models import Via
from supportdesk.tickets import queries, services
from supportdesk.tickets.access import access_attachment, access_ticket

router = Router(tags=["attachments"])


@router.get(
    "/tickets/{number}/attachments",
    response=answers({200: list[AttachmentOut]}, READ_PROBLEMS),
    operation_id="list_attachments",
)
def list_attachments(request: ApiRequest, number: int) -> list[dict[str, Any]]:
    """Files attached to the ticket itself; a response's files are listed with it."""
    ticket = access_ticket(request.auth, number)
    return [representations.attachment(a, number) for a in queries.ticket_attachments(ticket)]


@router.post(
    "/tickets/{number}/attachments",
    response=answers({201: list[AttachmentOut]}, WRITE_PROBLEMS),
    operation_id="upload_attachments",
)
def upload_attachments(
    request: ApiRequest, number: int, files: File[list[UploadedFile]]
) -> HttpResponse:
    """multipart/form-data with one or more `files`; each at most the upload limit (413)."""
    if not (request.content_type or "").startswith("multipart/form-data"):
        raise Problem(415, "Upload files as multipart/form-data.")
    limit: int = settings.UPLOAD_MAX_BYTES
    for upload in files:
        if (upload.size or 0) > limit:
            raise Problem(413, f"{upload.name} is larger than the {limit} byte limit.")
    ticket = access_ticket(request.auth, number)
    # Ninja's UploadedFile is Django's, which offers what Upload asks; its stubs differ.
    stored = services.add_attachments(
        ticket,
        files,  # type: ignore[arg-type]
        acting_user=request.auth,
        via=Via.API,
    )
    body = [
        wire(AttachmentOut.model_validate(representations.attachment(a, number))) for a in stored
    ]
    return HttpResponse(json.dumps(body), status=201, content_type="application/json")


@router.get(
    "/tickets/{number}/attachments/{attachment_id}",
    response=answers({200: None}, READ_PROBLEMS),
    openapi_extra={
        "responses": {
            200: {
                "description": "The file",
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                },
            }
        }
    },
    operation_id="download_attachment",
    url_name="attachment_download",
)
def download_attachment(request: ApiRequest, number: int, attachment_id: int) -> FileResponse:
    attachment = access_attachment(request.auth, number, attachment_id)
    return FileResponse(
        attachment.file.open("rb"),
        as_attachment=True,
        filename=attachment.filename,
        content_type="application/octet-stream",
    )
