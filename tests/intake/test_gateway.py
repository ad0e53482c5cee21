"""The SMTP gateway, spoken to over TCP by smtplib: 250 only for a stored message, a 4xx
whenever storing failed, 5xx for what will never be accepted."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import smtplib
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP
from django.core.files.storage import FileSystemStorage, default_storage
from django.db import connection, connections
from hypothesis import example, given
from hypothesis import strategies as st

from supportdesk.events import registry
from supportdesk.events.models import Event, EventKind, HandlerRun, RunState
from supportdesk.intake import store
from supportdesk.intake.mailboxes import ensure_default_mailboxes
from supportdesk.intake.models import InboundMessage
from supportdesk.intake.smtpd import Gateway, GatewayHandler, _GatewaySMTP
from supportdesk.intake.spool import Spool
from tests.intake.test_store import Batches
from tests.smtp_sink import HOST, free_port

DOMAIN = "support.localhost"
SYSOPS = f"sysops@{DOMAIN}"
MESSAGE = (
    b"From: Bob Customer <bob@acme.test>\r\n"
    b"To: sysops@support.localhost\r\n"
    b"Subject: Database down\r\n"
    b"Message-ID: <down-1@acme.test>\r\n"
    b"\r\n"
    b"Since 10:02 the primary refuses connections.\r\n"
)


@pytest.fixture
def probe_handler():
    name = "probe_on_mail_received"
    registry.register(EventKind.MAIL_RECEIVED, name=name)(lambda event: None)
    yield name
    registry.unregister(name)


@pytest.fixture
def start_gateway(transactional_db, settings):
    """Start the gateway in this process on a free port; the lookups and stores run in its
    threads, on their own database connections, as in `supportdesk smtpd`."""
    settings.MAIL_DOMAIN = DOMAIN
    ensure_default_mailboxes()  # a transactional test's flush removes the migration's rows
    started: list[Gateway] = []

    def start() -> Gateway:
        gateway = Gateway(HOST, free_port())
        gateway.start()
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()


@pytest.fixture
def gateway(start_gateway):
    return start_gateway()


def send(
    gateway: Gateway, raw: bytes, *, to=(SYSOPS,), sender="bob@acme.test", size=False
) -> dict[str, tuple[int, bytes]]:
    """One SMTP transaction; the reply to each step that was reached. Then it waits for the
    gateway to move what its spool holds into the database (moved)."""
    replies: dict[str, tuple[int, bytes]] = {}
    with smtplib.SMTP(gateway.host, gateway.port, timeout=30) as client:
        client.ehlo()
        options = [f"SIZE={len(raw)}"] if size else []
        replies["mail"] = client.mail(sender, options)
        if replies["mail"][0] == 250:
            for address in to:
                replies[f"rcpt {address}"] = client.rcpt(address)
            if any(code == 250 for key, (code, _) in replies.items() if key.startswith("rcpt")):
                replies["data"] = client.data(raw)
    moved(gateway)
    return replies


def moved(gateway: Gateway) -> None:
    assert gateway.mover.flush(), "the gateway's spool was not moved within 10 s"


def spooled(gateway: Gateway) -> list[str]:
    """The subjects of the mails in the gateway's spool, not moved yet."""
    spool = Spool()
    try:
        return [message.subject for _, message in spool.after(0, 1000)]
    finally:
        spool.close()


def stored_files() -> list[Path]:
    root = Path(default_storage.path("mail/raw"))
    return sorted(path for path in root.rglob("*") if path.is_file()) if root.exists() else []


def test_mail_to_sysops_is_stored_before_the_250(gateway, probe_handler, monkeypatch):
    spool_ids: list[int] = []
    real_poke = gateway.mover.poke

    def poke():  # the store thread's commit is done: what is in the spool now?
        spool = Spool()
        try:
            spool_ids.extend(spool_id for spool_id, _ in spool.after(0, 10))
        finally:
            spool.close()
        real_poke()

    monkeypatch.setattr(gateway.mover, "poke", poke)
    code, text = send(gateway, MESSAGE)["data"]
    assert code == 250
    assert text == f"2.0.0 Stored as {spool_ids[0]}".encode()  # committed before the 250
    message = InboundMessage.objects.get()  # moved from the spool
    assert default_storage.open(message.raw).read() == MESSAGE
    assert (message.mailbox.local_part, message.source) == ("sysops", "smtp")
    assert message.envelope_from == "bob@acme.test"
    assert message.envelope_to == [SYSOPS]
    assert message.message_id == "<down-1@acme.test>"
    event = Event.objects.get(kind=EventKind.MAIL_RECEIVED)
    assert event.changes == {"message": [None, message.pk]}
    assert HandlerRun.objects.get(event=event, handler=probe_handler).state == RunState.PENDING


def test_an_unknown_mailbox_is_refused_and_nothing_is_stored(gateway):
    replies = send(gateway, MESSAGE, to=[f"nobody@{DOMAIN}", "sysops@example.com"])
    assert replies[f"rcpt nobody@{DOMAIN}"] == (550, b"5.1.1 No such mailbox")
    assert replies["rcpt sysops@example.com"][0] == 550
    assert "data" not in replies
    assert not InboundMessage.objects.exists()
    assert stored_files() == []


def test_a_message_for_several_mailboxes_is_stored_once_for_the_most_urgent(gateway):
    to = [f"Support@{DOMAIN.upper()}", f"nobody@{DOMAIN}", SYSOPS]
    replies = send(gateway, MESSAGE, to=to)
    assert replies[f"rcpt nobody@{DOMAIN}"][0] == 550
    assert replies["data"][0] == 250
    message = InboundMessage.objects.get()
    assert message.mailbox.local_part == "sysops"
    assert message.envelope_to == [to[0], SYSOPS]


@pytest.mark.parametrize("announce_size", [True, False], ids=["SIZE given", "no SIZE"])
def test_an_oversized_message_gets_552_and_nothing_is_stored(
    start_gateway, settings, announce_size
):
    settings.MAIL_MAX_BYTES = 10_000
    gateway = start_gateway()
    big = MESSAGE + b"x" * 78 + b"\r\n"
    big = big * (10_000 // len(big) + 1)
    replies = send(gateway, big, size=announce_size)
    step = "mail" if announce_size else "data"
    assert replies[step][0] == 552
    assert not InboundMessage.objects.exists()
    assert stored_files() == []
    # A message under the limit still goes through on the same gateway.
    assert send(gateway, MESSAGE)["data"][0] == 250


@pytest.mark.parametrize(
    ("failure", "expected"),
    [(errno.ENOSPC, (452, b"4.3.1")), (errno.EACCES, (451, b"4.3.0"))],
    ids=["disk full", "unwritable"],
)
def test_a_storage_failure_answers_4xx_and_stores_nothing(gateway, monkeypatch, failure, expected):
    original = FileSystemStorage._save

    def save(self, name, content):
        original(self, name, content)  # written, then the disk refuses (as a flush can)
        raise OSError(failure, os.strerror(failure))

    monkeypatch.setattr(FileSystemStorage, "_save", save)
    code, text = send(gateway, MESSAGE)["data"]
    assert (code, text[:5]) == expected
    assert not InboundMessage.objects.exists()
    assert not Event.objects.filter(kind=EventKind.MAIL_RECEIVED).exists()
    assert stored_files() == []
    monkeypatch.undo()  # the disk has room again: the sender's retry is stored
    assert send(gateway, MESSAGE)["data"][0] == 250
    assert InboundMessage.objects.count() == 1


@contextlib.contextmanager
def events_table_missing():
    """A real database failure in the middle of the store's transaction: the message row is
    inserted, then the event's insert fails."""
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {quote('events_event')} RENAME TO {quote('events_gone')}")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {quote('events_gone')} RENAME TO {quote('events_event')}")


def test_a_database_failure_keeps_the_mail_in_the_spool_until_the_database_is_back(gateway):
    """The 250 waits for the spool alone: with the main database failing the mail is
    accepted, kept, and moved once the database works again."""
    with events_table_missing():
        code, _text = send(gateway, MESSAGE)["data"]
        assert code == 250
        assert not InboundMessage.objects.exists()  # the move rolled back
        assert spooled(gateway) == ["Database down"]
    moved(gateway)
    message = InboundMessage.objects.get()
    assert default_storage.open(message.raw).read() == MESSAGE
    assert Event.objects.filter(kind=EventKind.MAIL_RECEIVED).count() == 1
    assert spooled(gateway) == []


def test_a_spool_failure_answers_451_and_keeps_nothing(gateway, monkeypatch):
    def broken(self, messages):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(Spool, "insert", broken)
    code, text = send(gateway, MESSAGE)["data"]
    assert (code, text[:5]) == (451, b"4.3.0")
    assert not InboundMessage.objects.exists()
    assert stored_files() == []  # removed: no row will ever name it
    monkeypatch.undo()
    assert send(gateway, MESSAGE)["data"][0] == 250  # the spool recovered
    assert InboundMessage.objects.count() == 1


def test_the_same_mail_delivered_twice_is_stored_twice(gateway):
    # A sender that missed our 250 sends again; processing handles a Message-ID once.
    assert send(gateway, MESSAGE)["data"][0] == 250
    assert send(gateway, MESSAGE)["data"][0] == 250
    assert InboundMessage.objects.filter(message_id="<down-1@acme.test>").count() == 2


HOSTILE = {
    "nul bytes": b"From: a\x00b@example.com\r\nSubject: x\x00y\r\n\r\nbody\x00\x00\r\n",
    "8-bit garbage": bytes(range(1, 256)) * 4 + b"\r\n",
    "no headers at all": b"just a body line, no header, no blank line\r\n",
    "1 MB header line": b"Subject: " + b"A" * (1024 * 1024) + b"\r\n\r\nbody\r\n",
}


@pytest.mark.parametrize("raw", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_input_is_stored_as_it_came(gateway, raw):
    code, _text = send(gateway, raw)["data"]
    assert code == 250
    message = InboundMessage.objects.get()
    assert default_storage.open(message.raw).read() == raw
    assert "\x00" not in message.subject + message.from_address


# ---------------------------------------------------------------- senders at the same time


def mail(subject: str) -> bytes:
    return MESSAGE.replace(b"Database down", subject.encode()).replace(
        b"<down-1@acme.test>", f"<{subject.replace(' ', '-')}@acme.test>".encode()
    )


def data_reply(gateway: Gateway, raw: bytes) -> tuple[int, bytes]:
    return send(gateway, raw)["data"]


def test_concurrent_senders_each_get_250_for_a_stored_message(gateway, probe_handler):
    senders, each = 4, 5
    replies: dict[str, tuple[int, bytes]] = {}

    def sender(number: int) -> None:
        with smtplib.SMTP(gateway.host, gateway.port, timeout=30) as client:
            for n in range(each):
                subject = f"sender {number} mail {n}"
                try:
                    client.sendmail("bob@acme.test", [SYSOPS], mail(subject))
                    replies[subject] = (250, b"")
                except smtplib.SMTPResponseException as error:
                    replies[subject] = (error.smtp_code, error.smtp_error)

    threads = [threading.Thread(target=sender, args=(number,)) for number in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(replies) == senders * each
    assert {code for code, _ in replies.values()} == {250}
    moved(gateway)
    for subject in replies:
        message = InboundMessage.objects.get(message_id=f"<{subject.replace(' ', '-')}@acme.test>")
        assert default_storage.open(message.raw).read() == mail(subject)
        event = Event.objects.get(changes={"message": [None, message.pk]})
        assert HandlerRun.objects.get(event=event, handler=probe_handler).state == RunState.PENDING
    assert len(stored_files()) == senders * each


@pytest.fixture
def batches(gateway, monkeypatch):
    from supportdesk.intake import smtpd

    return Batches(monkeypatch, queued=gateway.storer.queued, commits=(smtpd, "commit_spooled"))


def together(
    gateway: Gateway, batches: Batches, subjects: list[str], queued: int = 0
) -> list[tuple[int, bytes]]:
    """The DATA replies to a "hold" mail, then to mails sent while its batch commits, which
    queue for the next batch (the one store thread is busy with the held one)."""
    calls = [lambda subject=subject: data_reply(gateway, mail(subject)) for subject in subjects]
    return batches.hold(lambda: data_reply(gateway, mail("hold")), calls, queued)


def test_mails_arriving_together_are_committed_together(gateway, batches, monkeypatch):
    directories: list[Path] = []
    real_started = store.syncs.started

    def started(paths):
        directories.extend(Path(path) for path in paths if Path(path).is_dir())
        return real_started(paths)

    monkeypatch.setattr(store.syncs, "started", started)
    assert data_reply(gateway, mail("before"))[0] == 250  # makes the day's directory
    directories.clear()
    batches.subjects.clear()
    subjects = [f"together {n}" for n in range(3)]
    replies = together(gateway, batches, subjects)
    assert [code for code, _ in replies] == [250] * 4
    assert batches.subjects == [["hold"], subjects]
    # The day's directory existed: one fsync of it per batch, not one per mail.
    assert len(directories) == 2
    assert len(set(directories)) == 1
    assert InboundMessage.objects.count() == 5


def test_mails_arriving_while_a_batchs_files_are_written_join_its_commit(
    gateway, batches, monkeypatch
):
    """A batch commits once no mail waits: the mails that came while its files were written
    share its commit, rather than waiting for it and then committing apart."""
    from supportdesk.intake import smtpd

    real_keep = smtpd.keep
    replies: dict[str, tuple[int, bytes]] = {}
    late = ["second", "third"]

    def send_late(subject: str) -> None:
        try:
            replies[subject] = data_reply(gateway, mail(subject))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=send_late, args=(subject,)) for subject in late]

    def keep(incoming):
        if b"Subject: first\r\n" in incoming.raw:  # its file is being written: two more come
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + 10
            while gateway.storer.queued() < len(late) and time.monotonic() < deadline:
                time.sleep(0.005)
        return real_keep(incoming)

    monkeypatch.setattr(smtpd, "keep", keep)
    assert data_reply(gateway, mail("first"))[0] == 250
    for thread in threads:
        thread.join(30)
    moved(gateway)
    assert {subject: code for subject, (code, _) in replies.items()} == dict.fromkeys(late, 250)
    assert batches.subjects == [["first", "second", "third"]]
    assert InboundMessage.objects.count() == 3


def test_a_batch_of_the_gateway_never_exceeds_its_limit_however_many_arrive(
    gateway, batches, monkeypatch
):
    monkeypatch.setattr(gateway.storer, "limit", 2)
    subjects = [f"queued {n}" for n in range(5)]
    replies = together(gateway, batches, subjects)
    assert [code for code, _ in replies] == [250] * 6
    assert batches.subjects[0] == ["hold"]
    assert sorted(len(batch) for batch in batches.subjects[1:]) == [1, 2, 2]
    assert sorted(subject for batch in batches.subjects[1:] for subject in batch) == subjects


def test_a_spool_failure_answers_451_to_every_mail_of_its_batch(gateway, batches, monkeypatch):
    real = Spool.insert

    def insert(self, messages):
        if any(message.subject == "poison" for message in messages):
            raise sqlite3.OperationalError("database is locked")
        return real(self, messages)

    monkeypatch.setattr(Spool, "insert", insert)
    first, *refused = together(gateway, batches, ["good", "poison"])
    moved(gateway)
    assert first[0] == 250
    assert [(code, text[:5]) for code, text in refused] == [(451, b"4.3.0")] * 2
    assert batches.subjects == [["hold"], ["good", "poison"]]
    assert list(InboundMessage.objects.values_list("subject", flat=True)) == ["hold"]
    assert len(stored_files()) == 1  # the refused mails' files are removed


def test_a_full_disk_for_one_mail_answers_452_to_it_alone(gateway, batches, monkeypatch):
    original = FileSystemStorage._save

    def save(self, name, content):
        full = b"Subject: full\r\n" in content.read()
        content.seek(0)
        saved = original(self, name, content)
        if full:  # written, then the disk refuses (as a flush can)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return saved

    monkeypatch.setattr(FileSystemStorage, "_save", save)
    subjects = ["full", "fine", "also fine"]
    replies = together(gateway, batches, subjects)
    moved(gateway)
    assert [code for code, _ in replies] == [250, 452, 250, 250]
    assert batches.subjects == [["hold"], ["also fine", "fine"]]
    assert sorted(InboundMessage.objects.values_list("subject", flat=True)) == [
        "also fine",
        "fine",
        "hold",
    ]
    assert len(stored_files()) == 3


# ---------------------------------------------------------------- the command


def test_supportdesk_smtpd_after_migrate_stores_mail_and_stops_on_sigterm_with_exit_0(tmp_path):
    home = tmp_path / "home"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("SUPPORTDESK_") and key not in {"DATABASE_URL"}
    }
    env.update(SUPPORTDESK_HOME=str(home), DJANGO_SETTINGS_MODULE="supportdesk.settings")
    env["SUPPORTDESK_MAIL_DOMAIN"] = DOMAIN
    migrate = subprocess.run(
        [sys.executable, "-m", "supportdesk", "migrate"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert migrate.returncode == 0, migrate.stderr
    port = free_port()
    smtpd = subprocess.Popen(
        [sys.executable, "-m", "supportdesk", "smtpd", "--port", str(port)],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                client = smtplib.SMTP(HOST, port, timeout=30)
                break
            except OSError:
                assert smtpd.poll() is None, smtpd.stdout.read()
                assert time.monotonic() < deadline
                time.sleep(0.1)
        with client:
            client.sendmail("bob@acme.test", [SYSOPS], MESSAGE)
        smtpd.send_signal(signal.SIGTERM)
        assert smtpd.wait(timeout=10) == 0
    finally:
        if smtpd.poll() is None:
            smtpd.kill()
            smtpd.wait()
    with sqlite3.connect(home / "supportdesk.sqlite3") as database:
        mailboxes = database.execute(
            "SELECT b.local_part, t.key, p.key FROM intake_mailbox b"
            " JOIN tickets_tickettype t ON t.id = b.ticket_type_id"
            " JOIN tickets_priority p ON p.id = b.priority_id WHERE b.is_active"
        ).fetchall()
        [(raw, box)] = database.execute(
            "SELECT m.raw, b.local_part FROM intake_inboundmessage m"
            " JOIN intake_mailbox b ON b.id = m.mailbox_id"
        ).fetchall()
    assert sorted(mailboxes) == [  # made by the data migration
        ("hosting", "incident", "normal"),
        ("support", "question", "normal"),
        ("sysops", "incident", "urgent"),
    ]
    assert box == "sysops"
    assert (home / "files" / raw).read_bytes() == MESSAGE


def test_stopping_closes_the_database_connection_of_every_gateway_thread(
    transactional_db, monkeypatch
):
    """Connections belong to their threads; a session left open outlives the gateway."""
    import threading

    from supportdesk.intake import smtpd

    gateway = Gateway(HOST, free_port())
    gateway.start()
    closed_in: list[str] = []
    monkeypatch.setattr(
        smtpd.connections, "close_all", lambda: closed_in.append(threading.current_thread().name)
    )
    gateway.stop()
    lookups = [name for name in closed_in if name.startswith("smtpd-lookup")]
    assert sorted(set(lookups)) == sorted(lookups)  # each thread once
    assert len(lookups) == smtpd.LOOKUP_THREADS
    assert sorted(set(closed_in) - set(lookups)) == ["smtpd-move", "smtpd-store"]
    assert len(closed_in) == smtpd.LOOKUP_THREADS + 2
    assert threading.current_thread().name not in closed_in


# ---------------------------------------------------------------- the address of MAIL and RCPT

_ATEXT = "abcXYZ0189!#$%&'*+/=?^_`{|}~-"
_PATHS = st.one_of(
    st.text(max_size=60),
    st.builds(
        "{}<{}@{}>{}".format,
        st.sampled_from(["", " ", "\t", "  "]),
        st.text(alphabet=_ATEXT + '.@"\\ ()<>,;:[]', min_size=0, max_size=20),
        st.text(alphabet="abc-09.[]:", min_size=0, max_size=20),
        st.sampled_from(["", " SIZE=100", " BODY=8BITMIME SMTPUTF8", ">", " <x@y>"]),
    ),
)


def _smtp(smtp_class: type[SMTP], **kwargs) -> SMTP:
    handler = GatewayHandler(executor=None, storer=None)  # type: ignore[arg-type]  (unused here)
    return smtp_class(handler, **kwargs)


@given(arg=_PATHS)
@example(arg="<a@b.c>\n")
@example(arg="<a@b.c> (comment) SIZE=1")
@example(arg="<a@b.c>\t\tSIZE=1")
@example(arg="<a..b@c>")
@example(arg="x@")
@example(arg="0@[")
def test_the_fast_address_parse_reads_every_path_as_aiosmtpd_does(arg):
    """_GatewaySMTP reads a plain `<local@domain>` itself and leaves the rest to aiosmtpd:
    every path, plain or not, must come out exactly as aiosmtpd's own parse gives it, and a
    path aiosmtpd's parse raises on is a malformed address."""
    ours = _smtp(_GatewaySMTP, line_length_limit=1001)
    theirs = _smtp(SMTP)
    try:
        expected = theirs._getaddr(arg)
    except (IndexError, AttributeError):  # the email parser's bugs: x@, x@[
        expected = (None, None)
    assert ours._getaddr(arg) == expected


@pytest.mark.parametrize("path", ["x@", '"a"@', "0@[", "<a@[1.2.3.4>"])
def test_a_path_the_email_parser_raises_on_is_refused_as_malformed_not_with_a_traceback(
    gateway, path
):
    with smtplib.SMTP(gateway.host, gateway.port, timeout=30) as client:
        client.ehlo()
        code, text = client.docmd(f"MAIL FROM:{path}")
    assert (code, text) == (553, b"5.1.3 Error: malformed address")


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("<bob@acme.test>", ("bob@acme.test", "")),
        ("<bob.o'neil+tag@mail.acme.test> SIZE=120", ("bob.o'neil+tag@mail.acme.test", "SIZE=120")),
        ("<>", ("<>", "")),  # the null sender: aiosmtpd's own parse
        ('<"bob smith"@acme.test>', ('"bob smith"@acme.test', "")),
        ("<bob@acme.test", ("bob@acme.test", "")),  # aiosmtpd's lenient parse, as before
        ("<bob@@acme.test>", (None, None)),
    ],
)
def test_paths_read_as_senders_write_them(arg, expected):
    assert _smtp(_GatewaySMTP, line_length_limit=1001)._getaddr(arg) == expected


def test_a_local_part_over_the_limit_is_refused_by_the_fast_parse_too():
    ours, theirs = _smtp(_GatewaySMTP, line_length_limit=1001), _smtp(SMTP)
    ours.local_part_limit = theirs.local_part_limit = 64  # aiosmtpd's switch: off by default
    for arg in (f"<{'a' * 65}@acme.test>", f"<{'a' * 64}@acme.test>"):
        assert ours._getaddr(arg) == theirs._getaddr(arg)
    assert ours._getaddr(f"<{'a' * 65}@acme.test>") == (None, None)


def test_the_gateway_process_hands_the_gil_over_often(monkeypatch):
    """`supportdesk smtpd` shortens the GIL's switch interval for its process: the thread
    committing a batch holds the database's write lock and must get the GIL back soon."""
    from supportdesk.intake import smtpd

    class Stopped:
        started = stopped = False

        def __init__(self, host: str, port: int) -> None:
            pass

        def start(self) -> None:
            Stopped.started = True

        def stop(self) -> None:
            Stopped.stopped = True

    class StopAtOnce(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            return True

    monkeypatch.setattr(smtpd, "Gateway", Stopped)
    monkeypatch.setattr(smtpd.threading, "Event", StopAtOnce)
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    default = sys.getswitchinterval()
    try:
        assert smtpd.run(HOST, 0) == 0
        assert sys.getswitchinterval() == pytest.approx(smtpd.GIL_SWITCH_SECONDS)
        assert default > smtpd.GIL_SWITCH_SECONDS
        assert Stopped.started
        assert Stopped.stopped
    finally:
        sys.setswitchinterval(default)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


def test_an_unexpected_error_in_the_store_thread_answers_451_and_the_next_mail_is_stored(
    gateway, monkeypatch
):
    from supportdesk.intake import smtpd

    real = smtpd.commit_spooled
    calls: list[int] = []

    def broken_once(kept, spool):
        calls.append(len(kept))
        if len(calls) == 1:
            raise RuntimeError("a bug in the store")
        return real(kept, spool)

    monkeypatch.setattr(smtpd, "commit_spooled", broken_once)
    assert data_reply(gateway, mail("first"))[0] == 451
    assert data_reply(gateway, mail("second"))[0] == 250
    assert list(InboundMessage.objects.values_list("subject", flat=True)) == ["second"]


def test_an_unexpected_error_writing_one_mails_file_answers_451_to_it_alone(
    gateway, batches, monkeypatch
):
    from supportdesk.intake import smtpd

    real_keep = smtpd.keep

    def keep(incoming):
        if b"Subject: bug\r\n" in incoming.raw:
            raise RuntimeError("a bug in the file store")
        return real_keep(incoming)

    monkeypatch.setattr(smtpd, "keep", keep)
    replies = together(gateway, batches, ["fine", "bug", "also fine"], queued=3)
    moved(gateway)
    assert [code for code, _ in replies] == [250, 250, 451, 250]
    assert batches.subjects == [["hold"], ["also fine", "fine"]]
    assert sorted(InboundMessage.objects.values_list("subject", flat=True)) == [
        "also fine",
        "fine",
        "hold",
    ]
