"""The raw-message store: every inbound mail is kept, byte for byte, before anything parses it.

A sender is told "stored" (SMTP 250, or the IMAP message marked processed) only after
store_message() returned: by then the bytes are on disk and synced, and the row commits in
one transaction with its processing run, so a crash at any point either loses nothing the
sender was promised or leaves the sender to send again.

Order matters: the file first, then the row. A file without a row (a crash between the two)
is harmless litter; a row without a file would be a promise we cannot keep.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import secrets
from collections.abc import Sequence
from email import policy
from email.header import decode_header, make_header
from email.parser import BytesHeaderParser
from pathlib import Path

from django.core.files.base import ContentFile
from django.core.files.storage import Storage, default_storage
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from supportdesk import rows
from supportdesk.events.models import EventKind, Via
from supportdesk.events.record import record
from supportdesk.intake.models import InboundMessage, Mailbox

logger = logging.getLogger(__name__)

SOURCES = ("smtp", "imap")
HEADER_MAX_CHARS = 998  # the columns' width, RFC 5322's line limit
HEADER_PEEK_MAX_BYTES = 4 * 1024 * 1024  # read of a message whose headers never end
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


class StoreUnavailable(Exception):  # noqa: N818  (the name the callers use)
    """The message could not be stored now; nothing of it was kept (a file left behind is
    logged and never referenced). The sender must try again: SMTP 451/452, IMAP leaves the
    message unmarked. `disk_full` tells a 452 (insufficient storage) from a 451."""

    def __init__(self, message: str, *, temporary: bool = True, disk_full: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.temporary = temporary
        self.disk_full = disk_full


def store_message(
    raw: bytes,
    *,
    source: str,
    mailbox: Mailbox | None,
    envelope_from: str = "",
    envelope_to: Sequence[str] = (),
    imap_uid: str = "",
) -> InboundMessage:
    """Keep `raw` durably and queue its processing; return its row.

    For IMAP (`imap_uid` given with a mailbox) a message stored before is returned as it is
    and nothing new is kept, so a poll that repeats after a dropped connection doubles nothing.
    Raises StoreUnavailable when the disk or the database refuses; never for the content.
    Must not run inside a transaction: the row must be committed when this returns.
    """
    if source not in SOURCES:
        raise ValueError(f"Unknown source {source!r}.")
    if imap_uid and mailbox is not None and (found := _stored_imap_message(mailbox, imap_uid)):
        return found
    digest = hashlib.sha256(raw).hexdigest()
    name = _write_durably(default_storage, raw, digest)
    try:
        return _insert(
            raw, name=name, digest=digest, source=source, mailbox=mailbox,
            envelope_from=envelope_from, envelope_to=envelope_to, imap_uid=imap_uid,
        )  # fmt: skip
    except IntegrityError:
        # Another poller stored the same IMAP message between our look and our insert.
        _remove(default_storage, name)
        if imap_uid and mailbox is not None and (found := _stored_imap_message(mailbox, imap_uid)):
            return found
        raise StoreUnavailable("The message could not be recorded.") from None


def _stored_imap_message(mailbox: Mailbox, imap_uid: str) -> InboundMessage | None:
    try:
        return InboundMessage.objects.filter(mailbox=mailbox, imap_uid=imap_uid).first()
    except DatabaseError as error:
        raise StoreUnavailable(f"The database is unavailable: {error}") from error


# ---------------------------------------------------------------- the file


def raw_name(digest: str) -> str:
    """mail/raw/YYYY/MM/DD/<digest prefix>-<random>.eml: dated for an operator's clean-up and
    backups, random so that the same bytes received twice are two files, never one overwritten."""
    return f"mail/raw/{timezone.now():%Y/%m/%d}/{digest[:16]}-{secrets.token_hex(8)}.eml"


def _local_path(storage: Storage, name: str) -> Path | None:
    try:
        return Path(storage.path(name))
    except NotImplementedError:  # a remote store (S3): its PUT is durable when it returns
        return None


def _write_durably(storage: Storage, raw: bytes, digest: str) -> str:
    """Save through the storage API, then fsync the file and every directory entry that
    leads to it and was made now, so that the file survives a power cut once this returns.

    Raises StoreUnavailable (disk_full for ENOSPC/EDQUOT) after removing a half-written file.
    """
    wanted = raw_name(digest)
    local = _local_path(storage, wanted)
    new_directories = _missing_directories(local.parent) if local is not None else []
    try:
        name = storage.save(wanted, ContentFile(raw))
        if local is not None:
            _fsync(Path(storage.path(name)))
            for directory in [local.parent, *(d.parent for d in new_directories)]:
                _fsync(directory)
    except OSError as error:
        _remove(storage, wanted)
        full = error.errno in _DISK_FULL
        reason = "the disk is full" if full else f"the file could not be written ({error})"
        raise StoreUnavailable(f"The message was not stored: {reason}.", disk_full=full) from error
    return name


def _missing_directories(directory: Path) -> list[Path]:
    missing = []
    while not directory.exists() and directory != directory.parent:
        missing.append(directory)
        directory = directory.parent
    return missing


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _remove(storage: Storage, name: str) -> None:
    try:
        storage.delete(name)
    except Exception:  # a failed clean-up must not hide the error that caused it
        logger.warning("Could not remove the unused raw message file %s.", name, exc_info=True)


# ---------------------------------------------------------------- the row


def _insert(
    raw: bytes,
    *,
    name: str,
    digest: str,
    source: str,
    mailbox: Mailbox | None,
    envelope_from: str,
    envelope_to: Sequence[str],
    imap_uid: str,
) -> InboundMessage:
    headers = peek_headers(raw)
    committing = False
    try:
        if connection.vendor == "sqlite" and not connection.in_atomic_block:
            # The sender is told "stored" after this commit: WAL's NORMAL sync could lose it.
            # (SQLite refuses the change inside a transaction: a caller's, such as a test's.)
            with connection.cursor() as cursor:
                cursor.execute("PRAGMA synchronous=FULL")
        with transaction.atomic():
            message = InboundMessage(
                mailbox=mailbox,
                source=source,
                raw=name,
                size=len(raw),
                sha256=digest,
                envelope_from=_clean(envelope_from),
                envelope_to=[_clean(address) for address in envelope_to],
                imap_uid=_clean(imap_uid)[:100],
                **headers,
            )
            rows.insert(message)  # the ORM's create cost more than the SQL (rows.py)
            record(
                None,
                EventKind.MAIL_RECEIVED,
                acting_user=None,
                via=Via.EMAIL,
                changes={"message": [None, message.pk]},
                version=1,
            )
            committing = True  # leaving the block commits
    except IntegrityError:
        raise
    except DatabaseError as error:
        if committing:
            # The commit itself failed, so whether the row exists is unknown: keep the file,
            # which a committed row would need; without a row it is harmless.
            logger.warning("Commit failed; the raw file %s may be unreferenced.", name)
        else:
            _remove(default_storage, name)
        raise StoreUnavailable(f"The database is unavailable: {error}") from error
    return message


def peek_headers(raw: bytes) -> dict[str, str]:
    """Message-ID, From and Subject for lists and logs, read cheaply and defensively: a header
    that cannot be read is left empty, or kept as it came when its encoded words are broken.

    The raw values (compat32) with their encoded words decoded, not policy.default's parsed
    headers, which cost five times as much; the processor parses the whole message later.
    """
    found = dict.fromkeys(("message_id", "from_address", "subject"), "")
    try:
        message = BytesHeaderParser(policy=policy.compat32).parsebytes(_header_block(raw))
    except Exception:  # noqa: BLE001  (hostile bytes: the row is still written, headers empty)
        return found
    for field, header in (
        ("message_id", "Message-ID"),
        ("from_address", "From"),
        ("subject", "Subject"),
    ):
        with contextlib.suppress(Exception):
            value = message.get(header)
            if value is not None:
                found[field] = _clean(_decoded(str(value)))
    return found


def _decoded(value: str) -> str:
    """RFC 2047 encoded words decoded; the value as it came when they cannot be."""
    try:
        return str(make_header(decode_header(value)))
    except Exception:  # noqa: BLE001  (an unknown charset, broken base64: keep the raw text)
        return value


def _header_block(raw: bytes) -> bytes:
    """The bytes up to the blank line that ends the headers: the parser would otherwise read
    every line of a 35 MB body only to skip it."""
    ends = [end for end in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if end >= 0]
    return raw[: min(ends) + 2] if ends else raw[:HEADER_PEEK_MAX_BYTES]


def _clean(value: str) -> str:
    """Storable in any database: no NUL (PostgreSQL refuses it), no lone surrogates (from
    undecodable bytes), one line, at most the column's width."""
    text = value.encode("utf-8", "replace").decode("utf-8").replace("\x00", "")
    return " ".join(text.split())[:HEADER_MAX_CHARS]
