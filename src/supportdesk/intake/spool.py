"""The mail gateway's spool: a small SQLite file of its own where an accepted mail's row
commits before the 250, so that a sender never waits for the main database's write lock.

On SQLite the main database has one write lock, which the workers hold while they turn mail
into tickets; the gateway's commits queued behind theirs, and a sender waited for both
(bench/README.md, "Mail in"). The spool is written by the gateway alone. Its rows are moved
into the main database (`move`) in batches, each batch's InboundMessage rows, their
MAIL_RECEIVED events and the spool's mark committed in one transaction: the mark (SpoolMark,
the highest spool id moved) makes a move exactly-once whoever runs it and however often it
is cut short. The gateway moves its rows as they come; the workers' periodic job moves what
a gateway stopped for good left behind.

A spool is known by an identity written when its file is made, not by its path: a spool
file removed and made again starts its ids at 1, under a mark of its own.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from supportdesk.intake.models import InboundMessage, Mailbox, SpoolMark
from supportdesk.intake.store import insert_received, synced_commits

logger = logging.getLogger(__name__)

# Rows moved in one transaction at most: a bound on how long the move holds the write lock.
MOVE_MAX = 256
BUSY_TIMEOUT_SECONDS = 5.0
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS spooled (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        received_at TEXT NOT NULL,
        mailbox_id INTEGER,
        source TEXT NOT NULL,
        raw TEXT NOT NULL,
        size INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        envelope_from TEXT NOT NULL,
        envelope_to TEXT NOT NULL,
        message_id TEXT NOT NULL,
        from_address TEXT NOT NULL,
        subject TEXT NOT NULL
    )""",
    "CREATE TABLE IF NOT EXISTS identity (value TEXT NOT NULL)",
)
_COLUMNS = (
    "received_at", "mailbox_id", "source", "raw", "size", "sha256", "envelope_from",
    "envelope_to", "message_id", "from_address", "subject",
)  # fmt: skip
# The column names are this module's constants, never input.
_NAMES, _MARKS = ", ".join(_COLUMNS), ", ".join("?" * len(_COLUMNS))
_INSERT = f"INSERT INTO spooled ({_NAMES}) VALUES ({_MARKS}) RETURNING id"  # noqa: S608
_SELECT = f"SELECT id, {_NAMES} FROM spooled WHERE id > ? ORDER BY id LIMIT ?"  # noqa: S608


def spool_path() -> Path:
    return Path(settings.MAIL_SPOOL_PATH)


class Spool:
    """One connection to the spool file, for the thread that opened it.

    The gateway's store thread's commits are synced (synchronous=FULL): a sender is told
    "stored" after them. A mover's (`durable=False`) only forget rows already moved, which
    need no sync of their own: the next synced commit carries them, and a forget lost in a
    power cut leaves rows that the mark skips.
    """

    def __init__(self, path: Path | None = None, *, durable: bool = True) -> None:
        self.path = path or spool_path()
        made = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        with self.transaction():
            for statement in _SCHEMA:
                self._db.execute(statement)
            found = self._db.execute("SELECT value FROM identity").fetchone()
            if found is None:
                found = (uuid.uuid4().hex,)
                self._db.execute("INSERT INTO identity (value) VALUES (?)", found)
        self.identity: str = found[0]
        if made:
            _sync_directory(self.path.parent)  # the new file's entry, before any 250 needs it
        self.moved_through: int | None = None  # the mark as this connection last saw it

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any error."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def insert(self, messages: Sequence[InboundMessage]) -> list[int]:
        """Insert the rows of messages built by store.keep (inside `transaction`); their
        spool ids, in order."""
        now = datetime.now(UTC).isoformat()
        ids = []
        for message in messages:
            values = (
                now, message.mailbox_id, message.source, message.raw, message.size,
                message.sha256, message.envelope_from, json.dumps(message.envelope_to),
                message.message_id, message.from_address, message.subject,
            )  # fmt: skip
            ids.append(self._db.execute(_INSERT, values).fetchone()[0])
        return ids

    def after(self, spool_id: int, limit: int) -> list[tuple[int, InboundMessage]]:
        """The rows past `spool_id`, oldest first, as unsaved InboundMessages."""
        rows = self._db.execute(_SELECT, (spool_id, limit)).fetchall()
        return [(row[0], _message(row[1:])) for row in rows]

    def forget_through(self, spool_id: int) -> None:
        """Remove the rows moved (their mark committed): space, not correctness, since a
        move never reads below the mark."""
        with self.transaction():
            self._db.execute("DELETE FROM spooled WHERE id <= ?", (spool_id,))


def _message(row: Sequence[object]) -> InboundMessage:
    values = dict(zip(_COLUMNS, row, strict=True))
    return InboundMessage(
        received_at=datetime.fromisoformat(str(values.pop("received_at"))),
        envelope_to=json.loads(str(values.pop("envelope_to"))),
        **values,
    )


def _sync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@dataclass(frozen=True)
class Moved:
    """What one move did: rows moved, and the mark after it."""

    count: int
    through: int


def move(spool: Spool, limit: int = MOVE_MAX) -> Moved:
    """Move up to `limit` rows past the mark into the main database, in one transaction
    with the new mark; rows another mover moved meanwhile are skipped. Raises the database's
    error (nothing moved; the rows stay in the spool for the next try)."""
    if spool.moved_through is None:
        spool.moved_through = _mark(spool.identity)
    rows = spool.after(spool.moved_through, limit)
    if not rows:
        return Moved(0, spool.moved_through)
    synced_commits()  # the spool forgets what this commit moved: it must survive a power cut
    with transaction.atomic():
        mark = SpoolMark.objects.select_for_update().get(spool=spool.identity)
        fresh = [message for spool_id, message in rows if spool_id > mark.moved_through]
        through = max(mark.moved_through, rows[-1][0])
        if fresh:
            _forget_deleted_mailboxes(fresh)
            insert_received(fresh)
            SpoolMark.objects.filter(pk=mark.pk).update(moved_through=through)
    spool.moved_through = through
    return Moved(len(fresh), through)


def _forget_deleted_mailboxes(messages: list[InboundMessage]) -> None:
    """A mailbox an admin deleted after its mail was spooled: the message is moved without
    it (as the foreign key's SET_NULL would have left it), rather than failing the move of
    every mail behind it. The processor opens such a message's ticket with its defaults."""
    named = {message.mailbox_id for message in messages if message.mailbox_id is not None}
    if not named:
        return
    existing = set(Mailbox.objects.filter(pk__in=named).values_list("pk", flat=True))
    for message in messages:
        if message.mailbox_id is not None and message.mailbox_id not in existing:
            message.mailbox_id = None


def _mark(identity: str) -> int:
    """The spool's mark, made at 0 the first time."""
    try:
        mark, _ = SpoolMark.objects.get_or_create(spool=identity)
    except IntegrityError:  # another mover made it between the look and the insert
        mark = SpoolMark.objects.get(spool=identity)
    return mark.moved_through


def move_all(spool: Spool) -> int:
    """Move until nothing is left past the mark, then forget what was moved; the count."""
    moved = 0
    while (step := move(spool)).count or spool.after(step.through, 1):
        moved += step.count
    if spool.moved_through:
        spool.forget_through(spool.moved_through)
    return moved


def move_spooled_mail() -> int:
    """The workers' periodic job: move what a gateway left in the spool (stopped for good,
    or its database down when it stopped); the count moved. A gateway that never ran left
    no spool, and none is made."""
    path = spool_path()
    if not path.exists():
        return 0
    spool = Spool(path, durable=False)
    try:
        moved = move_all(spool)
    finally:
        spool.close()
    if moved:
        logger.warning("Moved %d mails a mail gateway had left in its spool.", moved)
    return moved


def status(now: datetime) -> dict[str, Any]:
    """For /healthz: mail the gateway accepted that is not in the database yet (`waiting`;
    moved rows leave the spool a moment after their move) and how long the oldest has
    waited. A growing `oldest_seconds` means the moves fail: the gateway's log says why.
    Read-only, and never made: no gateway ever ran, nothing waits."""
    path = spool_path()
    if not path.exists():
        return {"waiting": 0, "oldest_seconds": None}
    try:
        with contextlib.closing(
            sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_SECONDS)
        ) as spool:
            waiting, oldest = spool.execute(
                "SELECT count(*), min(received_at) FROM spooled"
            ).fetchone()
    except sqlite3.Error as error:
        logger.warning("Health check: the mail spool could not be read: %s", error)
        return {"waiting": None, "oldest_seconds": None, "error": str(error)}
    if oldest is None:
        return {"waiting": 0, "oldest_seconds": None}
    waited = (now - datetime.fromisoformat(str(oldest))).total_seconds()
    return {"waiting": int(waiting), "oldest_seconds": round(max(0.0, waited), 1)}
