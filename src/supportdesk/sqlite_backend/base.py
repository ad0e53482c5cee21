"""SQLite whose write transactions queue on a lock file instead of in SQLite's busy handler.

SQLite lets one transaction write at a time. The others wait in its busy handler, which
sleeps 1, 2, 5, 10, 15, 20, 25 ... ms between tries, so under load the lock is often free
while every waiter sleeps: with 8 API clients creating tickets the p95 was about 100 ms for a
transaction that holds the lock for about 1 ms (bench/README.md). Here a transaction first
takes an exclusive flock on `<database>-writer`, one open file per connection, which the
kernel hands to the next waiter the moment the holder commits or rolls back, and only then
sends `BEGIN IMMEDIATE`, which then finds SQLite's lock free.

Only transactions (`transaction.atomic`) queue here. A lone statement in autocommit mode
still waits in the busy handler, up to the `timeout` option; those are short. A waiter here
has no timeout: the holder is a transaction of this application, and a process that dies
holding the lock releases it with its file.
"""

from __future__ import annotations

import fcntl
import os
from typing import Any

from django.db.backends.sqlite3 import base


class DatabaseWrapper(base.DatabaseWrapper):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._writer_file: int | None = None
        self._writer_held = False

    def _writer_lock_path(self) -> str | None:
        name = str(self.settings_dict["NAME"])
        if self.is_in_memory_db() or not name:
            return None
        return f"{name}-writer"

    def _take_writer_lock(self) -> None:
        if self._writer_file is None:
            path = self._writer_lock_path()
            if path is None:
                return
            self._writer_file = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._writer_file, fcntl.LOCK_EX)
        self._writer_held = True

    def _release_writer_lock(self) -> None:
        if self._writer_held and self._writer_file is not None:
            self._writer_held = False
            fcntl.flock(self._writer_file, fcntl.LOCK_UN)

    def _start_transaction_under_autocommit(self) -> None:
        self._take_writer_lock()
        try:
            super()._start_transaction_under_autocommit()
        except BaseException:
            self._release_writer_lock()
            raise

    def _commit(self) -> Any:
        try:
            return super()._commit()
        finally:  # a failed COMMIT is rolled back next, which finds SQLite's own lock held
            self._release_writer_lock()

    def _rollback(self) -> Any:
        try:
            return super()._rollback()
        finally:
            self._release_writer_lock()

    def _close(self) -> Any:
        self._release_writer_lock()
        if self._writer_file is not None:
            os.close(self._writer_file)
            self._writer_file = None
        return super()._close()
