"""The raw-message store: every inbound mail is kept, byte for byte, before anything parses it.

A sender is told "stored" (SMTP 250, or the IMAP message marked processed) only after
store_message() returned: by then the bytes are on disk and synced, and the row commits in
one transaction with its processing run, so a crash at any point either loses nothing the
sender was promised or leaves the sender to send again.

Order matters: the file first, then the row. A file without a row (a crash between the two)
is harmless litter; a row without a file would be a promise we cannot keep.

Messages stored at the same time share the costly part (docs/decisions.md, "Group commit in
the mail gateway"): each caller writes its own file, then one of the waiting callers
fsyncs the files and their directories together (side by side: intake/syncs.py) and
commits every row queued meanwhile in one transaction. The mail gateway does both steps in
its one store thread (keep, then commit_spooled: its rows commit to its spool, intake/spool.py,
and move into the database from there).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import secrets
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email import policy
from email.header import decode_header, make_header
from email.parser import BytesHeaderParser
from typing import TYPE_CHECKING

from django.core.files.base import ContentFile
from django.core.files.storage import Storage, default_storage
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from supportdesk import rows
from supportdesk.events.models import EventKind, Via
from supportdesk.events.record import record_many
from supportdesk.intake import syncs
from supportdesk.intake.models import InboundMessage, Mailbox

if TYPE_CHECKING:
    from supportdesk.intake.spool import Spool

logger = logging.getLogger(__name__)

SOURCES = ("smtp", "imap")
HEADER_MAX_CHARS = 998  # the columns' width, RFC 5322's line limit
HEADER_PEEK_MAX_BYTES = 4 * 1024 * 1024  # read of a message whose headers never end
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}
# Messages committed together at most: a bound on what one failure refuses and on how long
# the write lock is held.
BATCH_MAX = 64


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
    pending = keep(Incoming(raw, source, mailbox, envelope_from, envelope_to), imap_uid)
    name = pending.message.raw
    if connection.in_atomic_block:
        # The caller's transaction (a test's) commits later, not the group: a batch of one.
        _commit_batch([pending])
    else:
        committer.commit(pending)
    try:
        return pending.result()
    except IntegrityError:
        # Another poller stored the same IMAP message between our look and our insert.
        _remove(default_storage, name)
        if imap_uid and mailbox is not None and (found := _stored_imap_message(mailbox, imap_uid)):
            return found
        raise StoreUnavailable("The message could not be recorded.") from None


@dataclass(frozen=True)
class Incoming:
    """A message to store, as store_message's arguments (SMTP's: no IMAP UID)."""

    raw: bytes
    source: str
    mailbox: Mailbox | None
    envelope_from: str = ""
    envelope_to: Sequence[str] = ()


def store_many(incoming: Sequence[Incoming]) -> list[InboundMessage | StoreUnavailable]:
    """Store several messages as store_message stores one, committing their rows together;
    return each one's row, or the StoreUnavailable that refused it (a file that could not be
    written refuses its message alone, a database failure every message of the batch).

    For a caller with its messages at hand: the batch is the caller's, so no thread waits on
    another's commit. The mail gateway runs the two steps, keep() and commit_kept(), itself,
    so that mails arriving while a batch's files are written join its commit.
    Must not run inside a transaction.
    """
    if unknown := {item.source for item in incoming} - set(SOURCES):
        raise ValueError(f"Unknown source {sorted(unknown)[0]!r}.")
    outcomes: list[InboundMessage | StoreUnavailable | None] = [None] * len(incoming)
    kept: list[tuple[int, Pending]] = []
    for index, item in enumerate(incoming):
        try:
            kept.append((index, keep(item)))
        except StoreUnavailable as refused:
            outcomes[index] = refused
    committed = commit_kept([pending for _, pending in kept])
    for (index, _), outcome in zip(kept, committed, strict=True):
        outcomes[index] = outcome
    return [outcome for outcome in outcomes if outcome is not None]  # none is left None


def keep(item: Incoming, imap_uid: str = "") -> Pending:
    """The message's file written, and its row built, waiting for its commit (commit_kept),
    which fsyncs the file first; raises StoreUnavailable when the file could not be written."""
    if item.source not in SOURCES:
        raise ValueError(f"Unknown source {item.source!r}.")
    digest = hashlib.sha256(item.raw).hexdigest()
    name, to_sync, entries = _write_file(default_storage, item.raw, digest)
    message = _new_row(
        item.raw, name=name, digest=digest, source=item.source, mailbox=item.mailbox,
        envelope_from=item.envelope_from, envelope_to=item.envelope_to, imap_uid=imap_uid,
    )  # fmt: skip
    return Pending(message, to_sync, entries)


def commit_kept(batch: Sequence[Pending]) -> list[InboundMessage | StoreUnavailable]:
    """Commit the rows of messages kept (keep()) in one transaction; return each one's row,
    or the StoreUnavailable that refused it (a database failure refuses the whole batch, and
    removes its files). Must not run inside a transaction."""
    _commit_batch(list(batch))
    return [_stored_or_refused(pending) for pending in batch]


def _stored_or_refused(pending: Pending) -> InboundMessage | StoreUnavailable:
    """A batch's outcome for one message; an unexpected error refuses it like a database
    failure (the sender tries again), as store_message's caller would refuse it."""
    try:
        return pending.result()
    except StoreUnavailable as refused:
        return refused
    except Exception as error:  # noqa: BLE001  (reported to the sender as a refusal)
        unexpected = StoreUnavailable(f"The message could not be recorded: {error}")
        unexpected.__cause__ = error
        return unexpected


def _stored_imap_message(mailbox: Mailbox, imap_uid: str) -> InboundMessage | None:
    try:
        return InboundMessage.objects.filter(mailbox=mailbox, imap_uid=imap_uid).first()
    except DatabaseError as error:
        raise StoreUnavailable(f"The database is unavailable: {error}") from error


# ---------------------------------------------------------------- the file


def raw_name(digest: str) -> str:
    """mail/raw/YYYY/MM/DD/<digest prefix>-<random>.eml: dated for an operator's incremental
    backups (a processed message's file is also its ticket's original, never pruned), and
    random so that the same bytes received twice are two files, never one overwritten."""
    return f"mail/raw/{timezone.now():%Y/%m/%d}/{digest[:16]}-{secrets.token_hex(8)}.eml"


def _local_path(storage: Storage, name: str) -> str | None:
    try:
        return storage.path(name)
    except NotImplementedError:  # a remote store (S3): its PUT is durable when it returns
        return None


def _write_file(storage: Storage, raw: bytes, digest: str) -> tuple[str, list[str], list[str]]:
    """Save through the storage API; return its name, what to fsync before its row commits
    (the file, its directory, and the parent of each directory whose entry this process
    has not seen synced: _unsynced_entries), and those directories. The syncs are left to
    the batch, which runs them side by side and syncs a directory once for all its files.
    (Paths as strings: pathlib's objects were a twentieth of the gateway's store thread.)

    Raises StoreUnavailable (disk_full for ENOSPC/EDQUOT) after removing a half-written file.
    """
    wanted = raw_name(digest)
    local = _local_path(storage, wanted)
    try:
        name = storage.save(wanted, ContentFile(raw))
    except OSError as error:
        _remove(storage, wanted)
        raise _file_refused(error) from error
    if local is None:
        return name, [], []
    path = storage.path(name)
    directory = os.path.dirname(path)
    entries = _unsynced_entries(directory, storage.path(""))
    return name, [path, directory, *(os.path.dirname(d) for d in entries)], entries


def _file_refused(error: OSError) -> StoreUnavailable:
    full = error.errno in _DISK_FULL
    reason = "the disk is full" if full else f"the file could not be written ({error})"
    return StoreUnavailable(f"The message was not stored: {reason}.", disk_full=full)


# Directories whose own entry in their parent directory this process has seen synced: a
# file's directory is durable once its parent was fsync'd after it was made, and so on up.
_durable_entries: set[str] = set()


def _unsynced_entries(directory: str, root: str) -> list[str]:
    """`directory` and its parents up to the storage's root whose entries this process has
    not yet seen synced (_durable_entries), nearest first.

    Not only the directories this call made: the day's directory made a moment ago by
    another process (an IMAP poll) or thread may not be synced yet, and a file in it is
    lost with it in a power cut, though its row committed. So each process syncs the parents
    of a directory the first time it stores a file there: a few fsyncs a day."""
    unsynced = []
    while directory not in _durable_entries and directory != root:
        parent = os.path.dirname(directory)
        if parent == directory:  # the filesystem's root: the storage's root is elsewhere
            break
        unsynced.append(directory)
        directory = parent
    return unsynced


def _remove(storage: Storage, name: str) -> None:
    try:
        storage.delete(name)
    except Exception:  # a failed clean-up must not hide the error that caused it
        logger.warning("Could not remove the unused raw message file %s.", name, exc_info=True)


# ---------------------------------------------------------------- the row


def _new_row(
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
    """The row, not inserted yet: built in the caller's thread, so that the thread committing
    a batch holds the write lock only for the INSERTs."""
    return InboundMessage(
        mailbox=mailbox,
        source=source,
        raw=name,
        size=len(raw),
        sha256=digest,
        envelope_from=_clean(envelope_from),
        envelope_to=[_clean(address) for address in envelope_to],
        imap_uid=_clean(imap_uid)[:100],
        **peek_headers(raw),
    )


@dataclass(eq=False)
class Pending:
    """A message whose file is written, waiting for its syncs and its row's commit. Whichever
    thread commits it sets `outcome`, then `done` (under the committer's lock)."""

    message: InboundMessage
    syncs: list[str]  # its file and the directories to fsync before its row commits
    entries: list[str]  # the directories whose entries those syncs make durable
    outcome: InboundMessage | BaseException | None = None
    done: bool = False

    def result(self) -> InboundMessage:
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        if self.outcome is None:
            raise RuntimeError("The message's batch ended without an outcome.")
        return self.outcome


class GroupCommit:
    """Commits the rows of messages stored at the same time in one transaction.

    It has no thread of its own: the first waiting caller that finds no commit under way
    leads, committing everything queued (up to `limit`) on its own connection, while the
    others wait; when it is done they return, or one of them leads the next batch. So there
    is nothing to start, stop or close, and a lone caller (an IMAP poll) commits at once.
    """

    def __init__(self, limit: int = BATCH_MAX) -> None:
        self.limit = limit
        self._changed = threading.Condition()
        self._queue: deque[Pending] = deque()
        self._leading = False

    def queued(self) -> int:
        """Messages waiting for a batch, not counting the batch being committed."""
        return len(self._queue)

    def commit(self, pending: Pending) -> None:
        """Return once `pending` has its outcome, from this thread's batch or another's."""
        with self._changed:
            self._queue.append(pending)
        while batch := self._lead_or_wait(pending):
            self._run(batch)

    def _lead_or_wait(self, pending: Pending) -> list[Pending]:
        """The next batch for this thread to commit; [] once `pending` is done."""
        with self._changed:
            while self._leading and not pending.done:
                self._changed.wait()
            if pending.done:
                return []
            self._leading = True
            return [self._queue.popleft() for _ in range(min(self.limit, len(self._queue)))]

    def _run(self, batch: list[Pending]) -> None:
        try:
            _commit_batch(batch)
        finally:
            with self._changed:
                for pending in batch:
                    pending.done = True
                self._leading = False
                self._changed.notify_all()


committer = GroupCommit()


def _commit_batch(batch: list[Pending]) -> None:
    """Sync the batch's files and directories and commit all its rows at once; set every
    outcome. Never raises: an unexpected error is each message's outcome, as it was when
    alone."""
    try:
        paths = list(dict.fromkeys(path for pending in batch for path in pending.syncs))
        with syncs.started(paths) as syncing:
            _insert_batch(batch, syncing.wait)
    except Exception as error:  # noqa: BLE001  (raised again by each waiting caller)
        for pending in batch:
            if pending.outcome is None:
                pending.outcome = error


class _SyncFailedError(Exception):
    """Some of a batch's files or directories could not be synced: roll back, commit the
    others again."""


def _insert_batch(batch: list[Pending], synced: Callable[[], dict[str, OSError]]) -> None:
    """One transaction for the whole batch: a database failure refuses every message in it,
    and only a commit that succeeded lets any caller answer "stored".

    The files' fsyncs (syncs.started) run while the transaction waits for the write lock
    and inserts, and are waited for (`synced`) before the COMMIT: a row commits only after
    its file and its directories are synced. A message whose syncs failed is refused (its
    file removed) and the rest are inserted again in a new transaction: a rare failure,
    paid for by that batch alone.
    """
    committing = False
    try:
        synced_commits(urgent=True)  # the sender is told "stored" after this commit
        with transaction.atomic():
            outcomes: dict[int, InboundMessage | IntegrityError] = {}
            plain = [pending.message for pending in batch if not pending.message.imap_uid]
            insert_received(plain)  # the SMTP messages: each table's rows in one statement
            for message in plain:
                outcomes[id(message)] = message
            for pending in batch:
                if pending.message.imap_uid:
                    outcomes[id(pending.message)] = _insert_imap(pending.message)
            if _refuse_unsynced(batch, synced()):
                raise _SyncFailedError
            committing = True  # leaving the block commits
    except _SyncFailedError:
        if ready := [pending for pending in batch if pending.outcome is None]:
            _insert_batch(ready, dict)  # synced already: no error left to wait for
        return
    except DatabaseError as error:
        _refuse(batch, error, committing=committing)
        return
    for pending in batch:
        pending.outcome = outcomes[id(pending.message)]


def _refuse_unsynced(batch: list[Pending], failed: dict[str, OSError]) -> bool:
    """Refuse each message whose file or directories could not be synced, removing its
    file; note the directories of the others as durable. Whether any was refused."""
    refused = False
    for pending in batch:
        errors = [failed[path] for path in pending.syncs if path in failed]
        if not errors:
            _durable_entries.update(pending.entries)
            continue
        _remove(default_storage, pending.message.raw)
        pending.outcome = _file_refused(errors[0])
        pending.outcome.__cause__ = errors[0]
        refused = True
    return refused


def _insert_imap(message: InboundMessage) -> InboundMessage | IntegrityError:
    """An IMAP message goes in under a savepoint: one stored meanwhile by another poller
    (the unique imap_uid) fails alone, not the batch it shares."""
    try:
        with transaction.atomic():
            insert_received([message])
    except IntegrityError as error:
        return error
    return message


def synced_commits(*, urgent: bool = False) -> None:
    """This thread's SQLite connection fsyncs its commits from now on: WAL's NORMAL sync
    could lose the last ones in a power cut, and a sender is told "stored" (or a spool
    forgets what was moved) after them. SQLite refuses the change inside a transaction (a
    caller's, such as a test's): nothing to do there, nor on PostgreSQL. `urgent`: a sender
    waits for these commits, which go before the workers' (sqlite_backend)."""
    if connection.vendor != "sqlite" or connection.in_atomic_block:
        return
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA synchronous=FULL")
    if urgent:
        setattr(connection, "urgent_writes", True)  # noqa: B010  (our backend's alone)


def commit_spooled(batch: Sequence[Pending], spool: Spool) -> list[int | StoreUnavailable]:
    """commit_kept, into the gateway's spool instead of the main database: each message's
    spool id, or the StoreUnavailable that refused it. The files' syncs run while the rows
    go in and are waited for before the COMMIT, as in _insert_batch."""
    ready = list(batch)
    while True:
        paths = list(dict.fromkeys(path for pending in ready for path in pending.syncs))
        try:
            with syncs.started(paths) as syncing, spool.transaction():
                ids = spool.insert([pending.message for pending in ready])
                if _refuse_unsynced(ready, syncing.wait()):
                    raise _SyncFailedError
        except _SyncFailedError:
            ready = [pending for pending in ready if pending.outcome is None]
            continue
        except Exception as error:  # noqa: BLE001  (the spool refused the batch: 451 to each)
            for pending in ready:
                _remove(default_storage, pending.message.raw)
                pending.outcome = StoreUnavailable(f"The spool is unavailable: {error}")
                pending.outcome.__cause__ = error
            ids = []
        break
    spooled = dict(zip(map(id, ready), ids, strict=False))
    outcomes: list[int | StoreUnavailable] = []
    for pending in batch:
        if isinstance(pending.outcome, StoreUnavailable):
            outcomes.append(pending.outcome)
        else:
            outcomes.append(spooled[id(pending)])
    return outcomes


def insert_received(messages: list[InboundMessage]) -> None:
    """The rows of messages whose files are synced, and their MAIL_RECEIVED events with
    their runs, inside the caller's transaction (a batch's, or the spool's move:
    intake/spool.py)."""
    rows.insert_many(messages)  # the ORM's create cost more than the SQL (rows.py)
    record_many(
        EventKind.MAIL_RECEIVED,
        [{"message": [None, message.pk]} for message in messages],
        via=Via.EMAIL,
        version=1,
    )


def _refuse(batch: list[Pending], error: DatabaseError, *, committing: bool) -> None:
    for pending in batch:
        name = pending.message.raw
        if committing:
            # The commit itself failed, so whether the rows exist is unknown: keep the files,
            # which committed rows would need; without a row they are harmless.
            logger.warning("Commit failed; the raw file %s may be unreferenced.", name)
        else:
            _remove(default_storage, name)
        pending.outcome = StoreUnavailable(f"The database is unavailable: {error}")
        pending.outcome.__cause__ = error


_PEEKED = {"message-id": "message_id", "from": "from_address", "subject": "subject"}
# What makes a header block other than plain: bytes beyond ASCII, encoded words, NUL, the
# line breaks the email package reads that str.split("\n") does not (a lone CR) and the
# other way round, and an envelope "From " line. The compat32 parser reads those.
_NOT_PLAIN = re.compile(rb"[^\x01-\x7f]|=\?|\r(?!\n)|[\x0b\x0c\x1c-\x1e]|(?:^|\n)From ")
_HEADER_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]*:")  # the email package's headerRE


def peek_headers(raw: bytes) -> dict[str, str]:
    """Message-ID, From and Subject for lists and logs, read cheaply and defensively: a header
    that cannot be read is left empty, or kept as it came when its encoded words are broken.

    The raw values (compat32) with their encoded words decoded, not policy.default's parsed
    headers, which cost five times as much; the processor parses the whole message later.
    Plain ASCII headers (nearly every mail) are read by _peek_plain, as compat32 reads them,
    in half the time: the parser was a seventh of the gateway's store thread in a profile.
    """
    block = _header_block(raw)
    if _NOT_PLAIN.search(block) is None:
        return _peek_plain(block.decode("ascii"))
    return _peek_compat32(block)


def _peek_plain(block: str) -> dict[str, str]:
    """The three headers of a plain ASCII header block, as the compat32 parser reads them
    (tests/intake/test_store.py compares the two): the first of each name, in any case, its
    folded lines joined; a line that is neither a header nor a folded line ends the block.
    What that parser reads with a defect (a folded first line, a header with no name) is
    left to it."""
    found = dict.fromkeys(("message_id", "from_address", "subject"), "")
    taken: set[str] = set()
    field: str | None = None  # the one of the three the header being read fills
    parts: list[str] = []
    for number, line in enumerate(block.split("\n")):
        line = line.removesuffix("\r")
        if line[:1] in (" ", "\t"):
            if number == 0:
                return _peek_compat32(block.encode("ascii"))
            parts.append(line)
            continue
        if field is not None:
            found[field] = _clean("".join(parts))
            field = None
        if line[:1] == ":":
            return _peek_compat32(block.encode("ascii"))
        if not line or _HEADER_NAME.match(line) is None:
            break
        name, _, value = line.partition(":")
        key = _PEEKED.get(name.lower())
        if key is not None and key not in taken:
            taken.add(key)
            field, parts = key, [value.lstrip(" \t")]
    if field is not None:
        found[field] = _clean("".join(parts))
    return found


def _peek_compat32(block: bytes) -> dict[str, str]:
    found = dict.fromkeys(("message_id", "from_address", "subject"), "")
    try:
        message = BytesHeaderParser(policy=policy.compat32).parsebytes(block)
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
