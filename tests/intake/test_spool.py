"""The gateway's spool (intake/spool.py): rows moved into the main database exactly once,
whoever moves them and wherever a move is cut short."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.core.files.storage import default_storage
from django.db import OperationalError, connections

from supportdesk.events.models import Event, EventKind
from supportdesk.intake import spool as spool_module
from supportdesk.intake import store
from supportdesk.intake.mailboxes import ensure_default_mailboxes
from supportdesk.intake.models import InboundMessage, Mailbox, SpoolMark
from supportdesk.intake.spool import Spool, move, move_all

MESSAGE = (
    b"From: Bob Customer <bob@acme.test>\r\n"
    b"To: sysops@support.localhost\r\n"
    b"Subject: {subject}\r\n"
    b"Message-ID: <{subject}@acme.test>\r\n"
    b"\r\n"
    b"Since 10:02 the primary refuses connections.\r\n"
)


def raw(subject: str) -> bytes:
    return MESSAGE.replace(b"{subject}", subject.encode())


@pytest.fixture
def sysops(transactional_db, settings):
    settings.MAIL_DOMAIN = "support.localhost"
    ensure_default_mailboxes()
    return Mailbox.objects.get(local_part="sysops")


@pytest.fixture
def spool(tmp_path):
    opened = Spool(tmp_path / "spool.sqlite3")
    yield opened
    opened.close()


def spooled(spool: Spool, mailbox: Mailbox, *subjects: str) -> list[int]:
    """Store mails as the gateway does: files written and synced, rows in the spool."""
    kept = [
        store.keep(store.Incoming(raw(s), "smtp", mailbox, "bob@acme.test", ["x@y"]))
        for s in subjects
    ]
    outcomes = store.commit_spooled(kept, spool)
    assert all(isinstance(outcome, int) for outcome in outcomes), outcomes
    return outcomes


def subjects() -> list[str]:
    return sorted(InboundMessage.objects.values_list("subject", flat=True))


def test_spooled_mails_become_messages_with_their_events_and_keep_their_time(sysops, spool):
    before = datetime.now(UTC)
    ids = spooled(spool, sysops, "one", "two", "three")
    assert ids == [1, 2, 3]
    assert not InboundMessage.objects.exists()  # a 250 needs the spool's commit alone
    assert move_all(spool) == 3
    messages = list(InboundMessage.objects.order_by("pk"))
    assert [m.subject for m in messages] == ["one", "two", "three"]
    for message in messages:
        assert default_storage.open(message.raw).read() == raw(message.subject)
        assert (message.mailbox, message.source) == (sysops, "smtp")
        assert (message.envelope_from, message.envelope_to) == ("bob@acme.test", ["x@y"])
        assert before <= message.received_at <= datetime.now(UTC)
        event = Event.objects.get(
            kind=EventKind.MAIL_RECEIVED, changes={"message": [None, message.pk]}
        )
        assert event.via == "email"
    assert SpoolMark.objects.get(spool=spool.identity).moved_through == 3
    assert spool.after(0, 10) == []  # forgotten once moved
    assert move_all(spool) == 0


def test_a_message_keeps_the_time_it_was_spooled_not_the_time_it_was_moved(sysops, spool):
    spooled(spool, sysops, "late")
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    spool._db.execute("UPDATE spooled SET received_at = ?", (an_hour_ago,))
    move_all(spool)
    assert InboundMessage.objects.get().received_at == datetime.fromisoformat(an_hour_ago)


def test_a_move_cut_short_moves_nothing_and_the_next_moves_each_once(sysops, spool, monkeypatch):
    spooled(spool, sysops, "one", "two")
    real = store.record_many

    def broken(*args, **kwargs):
        raise OperationalError("disk I/O error")

    monkeypatch.setattr(store, "record_many", broken)
    with pytest.raises(OperationalError):
        move(spool)
    assert not InboundMessage.objects.exists()  # the rows rolled back with the event
    assert SpoolMark.objects.get(spool=spool.identity).moved_through == 0
    monkeypatch.setattr(store, "record_many", real)
    assert move_all(spool) == 2
    assert subjects() == ["one", "two"]
    assert Event.objects.filter(kind=EventKind.MAIL_RECEIVED).count() == 2


def test_a_mover_that_knows_an_old_mark_skips_what_another_moved(sysops, spool):
    spooled(spool, sysops, "one", "two")
    other = Spool(spool.path)  # a worker's job, beside the gateway's mover
    try:
        assert move(other).count == 2  # moved, not forgotten yet
        spool.moved_through = 0  # it last looked before the other moved
        assert move(spool).count == 0
        assert spool.moved_through == 2
    finally:
        other.close()
    assert subjects() == ["one", "two"]


def test_two_movers_at_once_move_each_row_once(sysops, spool, monkeypatch):
    monkeypatch.setattr(spool_module, "MOVE_MAX", 7)  # many small moves, interleaved
    names = [f"mail {n}" for n in range(60)]
    spooled(spool, sysops, *names)
    errors: list[BaseException] = []

    def mover() -> None:
        own = Spool(spool.path)
        try:
            move_all(own)
        except BaseException as error:  # noqa: BLE001  (the test looks at it)
            errors.append(error)
        finally:
            own.close()
            connections.close_all()

    threads = [threading.Thread(target=mover) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert subjects() == sorted(names)
    assert Event.objects.filter(kind=EventKind.MAIL_RECEIVED).count() == 60
    assert SpoolMark.objects.get(spool=spool.identity).moved_through == 60


def test_ids_are_not_reused_once_the_moved_rows_are_forgotten(sysops, spool):
    spooled(spool, sysops, "one", "two")
    move_all(spool)
    assert spool.after(0, 10) == []
    assert spooled(spool, sysops, "three") == [3]  # not 1 again, which the mark has passed
    assert move_all(spool) == 1
    assert subjects() == ["one", "three", "two"]


def test_a_spool_made_again_is_moved_under_a_mark_of_its_own(sysops, spool):
    spooled(spool, sysops, "one", "two")
    move_all(spool)
    spool.close()
    for leftover in spool.path.parent.glob(spool.path.name + "*"):
        leftover.unlink()
    again = Spool(spool.path)
    try:
        assert again.identity != spool.identity
        assert spooled(again, sysops, "three") == [1]
        assert move_all(again) == 1
    finally:
        again.close()
    assert subjects() == ["one", "three", "two"]


def test_a_spool_failure_refuses_the_whole_batch_and_removes_its_files(sysops, spool, monkeypatch):
    def broken(messages):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(spool, "insert", broken)
    kept = [store.keep(store.Incoming(raw(s), "smtp", sysops)) for s in ("one", "two")]
    outcomes = store.commit_spooled(kept, spool)
    assert all(isinstance(outcome, store.StoreUnavailable) for outcome in outcomes)
    assert all(not default_storage.exists(pending.message.raw) for pending in kept)
    monkeypatch.undo()
    assert spool.after(0, 10) == []


def test_a_mail_whose_file_cannot_be_synced_is_refused_alone(sysops, spool, monkeypatch):
    from tests.intake.test_store import failing_syncs

    kept = [store.keep(store.Incoming(raw(s), "smtp", sysops)) for s in ("fine", "bad", "also")]
    bad = kept[1].message.raw
    failing_syncs(monkeypatch, lambda path: path.endswith(bad))
    outcomes = store.commit_spooled(kept, spool)
    assert isinstance(outcomes[1], store.StoreUnavailable)
    assert [type(outcome) for outcome in (outcomes[0], outcomes[2])] == [int, int]
    assert not default_storage.exists(bad)
    assert [message.subject for _, message in spool.after(0, 10)] == ["fine", "also"]


def test_the_workers_job_moves_what_a_stopped_gateway_left(sysops, settings, tmp_path):
    from supportdesk.intake.spool import move_spooled_mail

    settings.MAIL_SPOOL_PATH = tmp_path / "left.sqlite3"
    assert move_spooled_mail() == 0
    assert not settings.MAIL_SPOOL_PATH.exists()  # no gateway ever ran: nothing is made
    left = Spool(settings.MAIL_SPOOL_PATH)
    try:
        spooled(left, sysops, "left behind")
    finally:
        left.close()
    assert move_spooled_mail() == 1
    assert subjects() == ["left behind"]
    assert move_spooled_mail() == 0


def test_the_store_threads_commits_are_synced_and_a_movers_need_not_be(spool):
    """A 250 follows the store thread's commit (FULL: 2); a mover only forgets moved rows."""
    assert spool._db.execute("PRAGMA synchronous").fetchone() == (2,)
    mover = Spool(spool.path, durable=False)
    try:
        assert mover._db.execute("PRAGMA synchronous").fetchone() == (1,)
        assert mover.identity == spool.identity
    finally:
        mover.close()


def test_mail_for_a_mailbox_deleted_meanwhile_is_moved_without_it(sysops, spool):
    """The foreign key would refuse the row, and with it every mail moved with it."""
    support = Mailbox.objects.get(local_part="support")
    spooled(spool, sysops, "for sysops")
    spooled(spool, support, "for support")
    support.delete()
    assert move_all(spool) == 2
    moved = dict(InboundMessage.objects.values_list("subject", "mailbox__local_part"))
    assert moved == {"for sysops": "sysops", "for support": None}
