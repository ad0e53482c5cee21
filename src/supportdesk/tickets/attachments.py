"""Uploaded files: checked before anything is written, stored through Django's storage."""

from __future__ import annotations

import mimetypes
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.core.files.storage import default_storage

from supportdesk import rows
from supportdesk.accounts.models import User
from supportdesk.tickets.models import Attachment, Response, Ticket
from supportdesk.tickets.validation import Upload, clean_upload


@dataclass
class StoredFile:
    """A file already kept durably in storage, attached by reference instead of copied: the
    raw mail a ticket came from. Copying it wrote the file again while the ticket's
    transaction held the write lock (bench/README.md, "Mail in"). Whoever stored it must
    keep it as long as the ticket (intake keeps every processed message's raw file)."""

    name: str | None  # as Upload has them
    size: int | None
    stored_name: str

    def chunks(self, chunk_size: int | None = None) -> Iterable[bytes]:
        with default_storage.open(self.stored_name, "rb") as stored:
            yield from iter(lambda: stored.read(chunk_size or 64 * 1024), b"")


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
        if isinstance(upload, StoredFile):
            attachment.file.name = upload.stored_name
        else:
            # Storage only reads upload.chunks(), which Upload promises; the stubs want a File.
            attachment.file.save(name, upload, save=False)  # type: ignore[arg-type]
        rows.insert(attachment)  # the ORM's save cost more than the SQL (rows.py)
        stored.append(attachment)
    return stored


def filenames(stored: Sequence[Attachment]) -> dict[str, list[Any]]:
    return {"attachments": [None, [a.filename for a in stored]]} if stored else {}
