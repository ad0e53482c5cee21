"""Uploaded files: checked before anything is written, stored through Django's storage."""

from __future__ import annotations

import mimetypes
from collections.abc import Iterable, Sequence
from typing import Any

from supportdesk import rows
from supportdesk.accounts.models import User
from supportdesk.tickets.models import Attachment, Response, Ticket
from supportdesk.tickets.validation import Upload, clean_upload


def check_uploads(uploads: Iterable[Upload]) -> list[Upload]:
    files = list(uploads)
    for upload in files:
        clean_upload(upload)
    return files


def store_attachments(
    ticket: Ticket, uploads: Iterable[Upload], *, acting_user: User, response: Response | None
) -> list[Attachment]:
    stored = []
    for upload in uploads:
        name = clean_upload(upload)
        attachment = Attachment(
            ticket=ticket,
            response=response,
            filename=name,
            size=upload.size or 0,
            content_type=mimetypes.guess_type(name)[0] or "application/octet-stream",
            uploaded_by=acting_user,
        )
        # Storage only reads upload.chunks(), which Upload promises; the stubs want a File.
        attachment.file.save(name, upload, save=False)  # type: ignore[arg-type]
        rows.insert(attachment)  # the ORM's save cost more than the SQL (rows.py)
        stored.append(attachment)
    return stored


def filenames(stored: Sequence[Attachment]) -> dict[str, list[Any]]:
    return {"attachments": [None, [a.filename for a in stored]]} if stored else {}
