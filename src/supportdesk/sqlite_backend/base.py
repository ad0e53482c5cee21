"""SQLite whose write transactions queue on a lock file instead of in SQLite's busy handler.

SQLite lets one transaction write at a time. The others wait in its busy handler, which
sleeps 1, 2, 5, 10, 15, 20, 25 ... ms between tries, so under load the lock is often free
while every waiter sleeps: with 8 API clients creating tickets the p95 was about 100 ms for a
transaction that holds the lock for about 1 ms (bench/README.md). Here a transaction first
takes an exclusive flock on `<database>-writer`, one open file per connection, which the
kernel hands to the next waiter the moment the holder commits or rolls back, and only then
sends `BEGIN IMMEDIATE`, which then finds SQLite's lock free.

Transactions (`transaction.atomic`) queue here, and so does a lone INSERT, UPDATE or DELETE
in autocommit mode (the outbox's claims and outcomes, a `save()` outside a transaction):
in the busy handler those slept up to 10 ms at a time behind the mail gateway's commits,
which hold the lock through an fsync (bench/README.md, "Mail in"). A waiter here has no
timeout: the holder is a statement or transaction of this application, and a process that
dies holding the lock releases it with its file.

A connection marked `urgent_writes` (the mail gateway's: a sender waits for its commit) goes
first: while it waits for the lock, other writers wait before queueing for it, on a second
lock file (`<database>-writer-urgent`) it holds shared while it waits. Without it the gateway's
commit queued behind each worker's processing transaction in turn (bench/README.md, "Mail
in"). A writer already queued still competes with it once; none is kept out for longer
than the urgent writer's wait.

Checkpoints (copying the write-ahead log back into the database) run after the lock file is
let go. SQLite runs one inside the COMMIT that grows the log past 1,000 pages, with two
fsyncs, and every writer queued here waited for it: 3 % of commits took 8-20 ms instead of
0.3 ms (bench/README.md, "Mail in"). A checkpoint needs no write lock, so each connection
runs a passive one itself at its first commit after CHECKPOINT_EVERY writes, once its lock is
released (not after a lone write: its statement may still be open until its rows are read);
SQLite's own is kept, at a larger size, only as a bound should these not keep up.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import sqlite3
from collections.abc import Iterator
from typing import Any

from django.db.backends.sqlite3 import base

logger = logging.getLogger(__name__)

_WRITE = re.compile(r"\s*(INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)
# Writes of one connection between its passive checkpoints; and SQLite's own threshold, in
# pages, which then only bounds the log (16,000 pages of 4 KiB: 64 MB). Every 100 writes, the
# several connections of a gateway, workers and web processes checkpointed many times a
# second, each with its fsyncs on the disk the gateway syncs every mail to: at 1,000, back to
# back, the gateway accepted 204-209 mails a second beside the workers instead of 156-206,
# and 8 API clients created 257-401 tickets a second instead of 203-236 (bench/README.md).
CHECKPOINT_EVERY = 1000
AUTOCHECKPOINT_PAGES = 16000


class _QueuedCursor(base.SQLiteCursorWrapper):
    """Django's SQLite cursor, whose lone writes in autocommit mode queue on the lock file."""

    wrapper: DatabaseWrapper

    def execute(self, query: str, params: Any = None) -> Any:
        with self.wrapper.queued_write(query):
            return super().execute(query, params)

    def executemany(self, query: str, param_list: Any) -> Any:
        with self.wrapper.queued_write(query):
            return super().executemany(query, param_list)


class DatabaseWrapper(base.DatabaseWrapper):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._writer_file: int | None = None
        self._urgent_file: int | None = None
        self._writer_held = False
        self._writes_since_checkpoint = 0
        self.urgent_writes = False

    def get_new_connection(self, conn_params: Any) -> Any:
        connection = super().get_new_connection(conn_params)
        self._writes_since_checkpoint = 0
        if not self.is_in_memory_db():
            connection.execute(f"PRAGMA wal_autocheckpoint = {AUTOCHECKPOINT_PAGES}")
        return connection

    def _writer_lock_path(self) -> str | None:
        name = str(self.settings_dict["NAME"])
        if self.is_in_memory_db() or not name:
            return None
        return f"{name}-writer"

    def _take_writer_lock(self) -> None:
        if self._writer_file is None or self._urgent_file is None:
            path = self._writer_lock_path()
            if path is None:
                return
            flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
            if self._writer_file is None:
                self._writer_file = os.open(path, flags, 0o600)
            if self._urgent_file is None:
                self._urgent_file = os.open(f"{path}-urgent", flags, 0o600)
        if self.urgent_writes:
            fcntl.flock(self._urgent_file, fcntl.LOCK_SH)  # others: wait behind me
            try:
                fcntl.flock(self._writer_file, fcntl.LOCK_EX)
            finally:
                fcntl.flock(self._urgent_file, fcntl.LOCK_UN)
        else:
            fcntl.flock(self._urgent_file, fcntl.LOCK_EX)  # no urgent writer is waiting
            fcntl.flock(self._urgent_file, fcntl.LOCK_UN)
            fcntl.flock(self._writer_file, fcntl.LOCK_EX)
        self._writer_held = True

    def urgent_writer_waiting(self) -> bool:
        """Whether an urgent writer (the mail gateway) waits for the lock this connection
        holds: a transaction of several parts of work ends early for it (intake/process.py).
        It holds the urgent lock file shared while it waits, so an exclusive try fails."""
        if not self._writer_held or self._urgent_file is None:
            return False
        try:
            fcntl.flock(self._urgent_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(self._urgent_file, fcntl.LOCK_UN)
        return False

    def _release_writer_lock(self) -> None:
        if self._writer_held and self._writer_file is not None:
            self._writer_held = False
            fcntl.flock(self._writer_file, fcntl.LOCK_UN)
            self._writes_since_checkpoint += 1

    def _checkpoint_if_due(self) -> None:
        """A passive checkpoint after CHECKPOINT_EVERY writes, with the lock file let go: it
        copies what no reader still needs and waits for no one. A failure leaves the work to
        the next one (or to SQLite's own), never to the write that has just committed."""
        if self._writes_since_checkpoint < CHECKPOINT_EVERY or self.connection is None:
            return
        self._writes_since_checkpoint = 0
        try:
            self.connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error:
            logger.debug("A passive checkpoint failed; the next one retries.", exc_info=True)

    def create_cursor(self, name: str | None = None) -> Any:
        cursor = self.connection.cursor(factory=_QueuedCursor)
        cursor.wrapper = self
        return cursor

    @contextlib.contextmanager
    def queued_write(self, sql: str) -> Iterator[None]:
        """Hold the lock file while `sql` runs, if it writes on its own (no transaction is
        open, and so no lock is held); a read, or a statement of a transaction, runs as is.
        The caller reads every row inside: a statement ends when SQLite has stepped it out."""
        if self._writer_held or self.in_atomic_block or not _WRITE.match(sql):
            yield
            return
        self._take_writer_lock()
        try:
            yield
        finally:
            self._release_writer_lock()

    def _start_transaction_under_autocommit(self) -> None:
        self._take_writer_lock()
        try:
            super()._start_transaction_under_autocommit()
        except BaseException:
            self._release_writer_lock()
            raise

    def _commit(self) -> Any:
        try:
            committed = super()._commit()
        finally:  # a failed COMMIT is rolled back next, which finds SQLite's own lock held
            self._release_writer_lock()
        self._checkpoint_if_due()
        return committed

    def _rollback(self) -> Any:
        try:
            return super()._rollback()
        finally:
            self._release_writer_lock()

    def _close(self) -> Any:
        self._release_writer_lock()
        for descriptor in (self._writer_file, self._urgent_file):
            if descriptor is not None:
                os.close(descriptor)
        self._writer_file = self._urgent_file = None
        return super()._close()
