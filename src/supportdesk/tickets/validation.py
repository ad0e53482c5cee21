"""Shape checks every channel gets for free: no NUL bytes, lengths, upload sizes.

They live beside the services (not in forms) because mail and the CLI have no forms.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from supportdesk.errors import InvalidChange

TITLE_MAX = 200
TEXT_MAX = 200_000
FILENAME_MAX = 200


class Upload(Protocol):
    """What an uploaded file offers: Django's UploadedFile, or a ContentFile with a name."""

    name: str | None
    size: int | None

    def chunks(self, chunk_size: int | None = None) -> Iterable[bytes]: ...


def clean_text(
    value: object,
    *,
    field: str,
    max_length: int = TEXT_MAX,
    required: bool = False,
    one_line: bool = False,
) -> str:
    """Text as typed, minus surrounding whitespace.

    Refuses what no database stores: NUL (PostgreSQL text cannot hold it) and lone surrogates
    (JSON can carry "\\ud800"; neither database can encode it). Line breaks are stored as
    "\\n" whatever the channel sent (browsers send "\\r\\n"), so saving a form unchanged
    changes nothing. With one_line, line breaks become spaces: a title becomes a mail
    subject, where a line break would start a header.
    """
    if not isinstance(value, str):
        raise InvalidChange(f"{field} must be text.", field=field)
    if "\x00" in value:
        raise InvalidChange(f"{field} contains a NUL byte.", field=field)
    if _has_surrogate(value):
        raise InvalidChange(f"{field} contains an invalid character.", field=field)
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    if one_line:
        value = " ".join(value.splitlines())
    value = value.strip()
    if required and not value:
        raise InvalidChange(f"{field} is required.", field=field)
    if len(value) > max_length:
        raise InvalidChange(f"{field} is longer than {max_length} characters.", field=field)
    return value


def _has_surrogate(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def clean_email(value: object, *, field: str) -> str:
    text = clean_text(value, field=field, max_length=254, required=True)
    try:
        validate_email(text)
    except ValidationError:
        raise InvalidChange(f"{text!r} is not an email address.", field=field) from None
    local, _, domain = text.rpartition("@")
    return f"{local}@{domain.lower()}"


def clean_upload(upload: Upload, *, field: str = "attachments") -> str:
    """Check one upload; return a safe file name (no path, no control characters)."""
    raw_name = upload.name or "attachment"
    name = raw_name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip().lstrip(".") or "attachment"
    name = name[-FILENAME_MAX:]
    size = upload.size or 0
    if size == 0:
        raise InvalidChange(f"{name} is empty.", field=field)
    if size > settings.UPLOAD_MAX_BYTES:
        limit = settings.UPLOAD_MAX_BYTES // (1024 * 1024)
        raise InvalidChange(f"{name} is larger than the {limit} MB limit.", field=field)
    return name
