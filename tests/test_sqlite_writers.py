"""On SQLite, write transactions queue on a lock file instead of SQLite's sleeping busy handler."""

import fcntl
import os
import threading
import time

import pytest
from django.db import connection, connections, transaction
from django.db.models import F

from supportdesk.tickets.models import Counter

pytestmark = pytest.mark.django_db(transaction=True)


def on_postgresql() -> bool:
    """PostgreSQL queues writers itself, row by row: the lock file is SQLite's alone."""
    if connection.vendor == "sqlite":
        assert type(connections["default"]).__module__ == "supportdesk.sqlite_backend.base"
        return False
    assert not hasattr(connections["default"], "_take_writer_lock")
    return True


def lock_is_free(lock_file: str = "writer") -> bool:
    """Whether the lock file `<database>-<lock_file>` can be taken exclusively now."""
    descriptor = os.open(f"{connection.settings_dict['NAME']}-{lock_file}", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(descriptor)
    return True


def writer_thread(errors: list[BaseException], function, *args, **kwargs) -> threading.Thread:
    """A thread running `function` on its own connection, closed after it; what it raises
    goes to `errors`, for the test to assert on."""

    def run() -> None:
        try:
            function(*args, **kwargs)
        except BaseException as error:  # noqa: BLE001  (reported by the test's assertion)
            errors.append(error)
        finally:
            connection.close()

    return threading.Thread(target=run)


def test_a_second_writer_waits_for_the_first_instead_of_failing():
    if on_postgresql():
        return
    Counter.objects.create(name="race", value=0)
    holding = threading.Event()
    errors: list[BaseException] = []

    def first() -> None:
        with transaction.atomic():
            Counter.objects.filter(name="race").update(value=1)
            holding.set()
            threading.Event().wait(0.5)  # longer than the second's busy timeout

    def second() -> None:
        holding.wait(5)
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA busy_timeout = 50")  # SQLite alone would give up
        with transaction.atomic():
            Counter.objects.filter(name="race").update(value=2)

    threads = [writer_thread(errors, first), writer_thread(errors, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert errors == []
    assert Counter.objects.get(name="race").value == 2  # the second ran after the first


def test_the_lock_is_held_for_the_transaction_only_and_released_by_a_rollback():
    if on_postgresql():
        return
    with transaction.atomic():
        Counter.objects.create(name="held", value=1)
        assert not lock_is_free()
    assert lock_is_free()

    @transaction.atomic
    def fail() -> None:
        Counter.objects.create(name="rolled back", value=1)
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        fail()
    assert lock_is_free()
    assert not Counter.objects.filter(name="rolled back").exists()


def test_a_lone_write_outside_a_transaction_queues_on_the_lock_instead_of_failing():
    """The outbox's claims and outcomes are single statements in autocommit mode: they wait
    for a transaction that holds the lock, as a transaction would, not in the busy handler."""
    if on_postgresql():
        return
    from supportdesk import rows

    Counter.objects.create(name="lone", value=0)
    holding = threading.Event()
    errors: list[BaseException] = []
    order: list[str] = []

    def first() -> None:
        with transaction.atomic():
            Counter.objects.filter(name="lone").update(value=1)
            holding.set()
            threading.Event().wait(0.5)  # longer than the others' busy timeout
            order.append("first")

    def lone(write) -> None:
        holding.wait(5)
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA busy_timeout = 50")  # SQLite alone would give up
        write()
        order.append("lone")

    sql = f"UPDATE {rows.table(Counter)} SET value = value + 10 WHERE name = %s"  # noqa: S608
    writes = [
        lambda: Counter.objects.filter(name="lone").update(value=F("value") + 10),  # the ORM's
        lambda: rows.execute(sql, ["lone"]),  # rows.py's, straight to the driver
    ]
    threads = [writer_thread(errors, first)] + [
        writer_thread(errors, lone, write) for write in writes
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert errors == []
    assert order[0] == "first"
    assert Counter.objects.get(name="lone").value == 21  # both ran, after the first
    assert lock_is_free()


def _database_file_digest() -> str:
    import hashlib

    with open(connection.settings_dict["NAME"], "rb") as database:
        return hashlib.sha256(database.read()).hexdigest()


def test_checkpoints_run_every_so_many_writes_after_the_lock_is_let_go(monkeypatch):
    """A checkpoint is the only thing that writes the database file itself (writes go to the
    write-ahead log): the file changes at the first commit from the CHECKPOINT_EVERY-th write
    on, not before, and the checkpoint finds the lock file free: no writer waited for it."""
    if on_postgresql():
        return
    from supportdesk.sqlite_backend import base

    monkeypatch.setattr(base, "CHECKPOINT_EVERY", 6)
    lock_free_at_checkpoint: list[bool] = []
    checkpoint = base.DatabaseWrapper._checkpoint_if_due

    def observed(self: base.DatabaseWrapper) -> None:
        if self._writes_since_checkpoint >= base.CHECKPOINT_EVERY:
            lock_free_at_checkpoint.append(lock_is_free())
        checkpoint(self)

    monkeypatch.setattr(base.DatabaseWrapper, "_checkpoint_if_due", observed)
    connection.close()  # a new connection: a write count of 0, the PRAGMAs applied
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA wal_autocheckpoint")
        assert cursor.fetchone()[0] == base.AUTOCHECKPOINT_PAGES
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # start from a log already copied
    before = _database_file_digest()
    for number in range(5):  # transactions and lone writes both count
        if number % 2:
            Counter.objects.create(name=f"checkpoint {number}", value=number)
        else:
            with transaction.atomic():
                Counter.objects.create(name=f"checkpoint {number}", value=number)
    Counter.objects.create(name="checkpoint 5", value=5)  # the sixth, a lone write
    assert _database_file_digest() == before, "no checkpoint before the sixth write's commit"
    assert lock_free_at_checkpoint == []
    with transaction.atomic():
        Counter.objects.create(name="checkpoint 6", value=6)
    assert _database_file_digest() != before, "the commit's checkpoint copied the log"
    assert lock_free_at_checkpoint == [True]
    assert connection.connection is not None
    assert connection._writes_since_checkpoint == 0


def _urgent_writer_waiting() -> bool:
    """Whether a writer holds the urgent lock file shared, as it does while it waits."""
    return not lock_is_free("writer-urgent")


def test_an_urgent_writer_goes_before_writers_that_come_after_it():
    """The mail gateway's commit (urgent_writes) waits for the transaction holding the lock,
    and not for a worker's that asks after it: that one waits until the urgent one has it."""
    if on_postgresql():
        return
    Counter.objects.create(name="urgent", value=0)
    with transaction.atomic():  # makes the lock files; held until the writers queue
        pass
    order: list[str] = []
    errors: list[BaseException] = []
    holding, release = threading.Event(), threading.Event()

    def holder() -> None:
        with transaction.atomic():
            Counter.objects.filter(name="urgent").update(value=1)
            holding.set()
            release.wait(10)
            order.append("holder")

    def writer(name: str, *, urgent: bool) -> None:
        connection.ensure_connection()
        connection.urgent_writes = urgent
        with transaction.atomic():
            Counter.objects.filter(name="urgent").update(value=F("value") + 1)
            order.append(name)

    first = writer_thread(errors, holder)
    first.start()
    assert holding.wait(5)
    urgent = writer_thread(errors, writer, "gateway", urgent=True)
    urgent.start()
    deadline = time.monotonic() + 5
    while not _urgent_writer_waiting():
        assert time.monotonic() < deadline, "the urgent writer never queued"
        time.sleep(0.01)
    later = writer_thread(errors, writer, "worker", urgent=False)
    later.start()
    time.sleep(0.3)  # the worker is blocked by now, on the urgent lock file
    release.set()
    for thread in (first, urgent, later):
        thread.join(10)
    assert errors == []
    assert order == ["holder", "gateway", "worker"]
    assert Counter.objects.get(name="urgent").value == 3


def test_the_lock_holder_sees_an_urgent_writer_waiting_and_only_then():
    """A transaction of several parts (intake's processing of several messages) asks this
    between its parts, and commits early for the mail gateway."""
    if on_postgresql():
        return
    Counter.objects.create(name="waiting", value=0)
    errors: list[BaseException] = []
    seen: list[bool] = []
    queued, done = threading.Event(), threading.Event()

    def gateway() -> None:
        connection.ensure_connection()
        connection.urgent_writes = True
        queued.set()
        with transaction.atomic():
            Counter.objects.filter(name="waiting").update(value=F("value") + 1)
        done.set()

    assert connection.urgent_writer_waiting() is False  # no lock held: nothing to yield
    with transaction.atomic():
        Counter.objects.filter(name="waiting").update(value=1)
        seen.append(connection.urgent_writer_waiting())
        urgent = writer_thread(errors, gateway)
        urgent.start()
        assert queued.wait(5)
        deadline = time.monotonic() + 5
        while not connection.urgent_writer_waiting():
            assert time.monotonic() < deadline, "the holder never saw the gateway wait"
            time.sleep(0.01)
        seen.append(True)
        assert not done.is_set()  # it waits for this transaction
    urgent.join(10)
    assert errors == []
    assert seen == [False, True]
    assert Counter.objects.get(name="waiting").value == 2
