"""The raw-message store: bytes kept exactly, row and processing run committed together,
and a refusal (disk, database) that leaves nothing half-stored behind."""

from __future__ import annotations

import contextlib
import errno
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.apps import apps as django_apps
from django.core.files.storage import FileSystemStorage, default_storage
from django.db import OperationalError, connections
from hypothesis import example, given
from hypothesis import strategies as st

from supportdesk.events import registry
from supportdesk.events.models import Event, EventKind, HandlerRun, RunState
from supportdesk.intake import store
from supportdesk.intake.mailboxes import (
    DEFAULT_MAILBOXES,
    ensure_default_mailboxes,
    find_mailbox,
)
from supportdesk.intake.models import InboundMessage, Mailbox, MessageState
from supportdesk.intake.store import StoreUnavailable, store_message

PLAIN = (
    b"From: Bob Customer <bob@acme.test>\r\n"
    b"To: sysops@support.localhost\r\n"
    b"Subject: =?utf-8?q?Server_d=C3=A9faillant?=\r\n"
    b"Message-ID: <abc-1@acme.test>\r\n"
    b"\r\n"
    b"The database server is down.\r\n"
)


@pytest.fixture
def probe_handler():
    """A handler on MAIL_RECEIVED, so that a stored message has a run to look at whether or
    not the processor is registered."""
    name = "probe_on_mail_received"
    registry.register(EventKind.MAIL_RECEIVED, name=name)(lambda event: None)
    yield name
    registry.unregister(name)


@pytest.fixture
def sysops(db, settings):
    settings.MAIL_DOMAIN = "support.localhost"
    ensure_default_mailboxes()
    return Mailbox.objects.get(local_part="sysops")


def stored_files() -> list[Path]:
    root = Path(default_storage.path("mail/raw"))
    return sorted(path for path in root.rglob("*") if path.is_file()) if root.exists() else []


def test_ensure_default_mailboxes_makes_each_once(db):
    # The data migration runs the same code; a fresh `migrate` is checked in test_gateway.
    ensure_default_mailboxes()
    ensure_default_mailboxes(django_apps)
    mailboxes = {
        box.local_part: (box.ticket_type.key, box.priority.key, box.is_active)
        for box in Mailbox.objects.select_related("ticket_type", "priority")
    }
    assert mailboxes == {
        local: (kind, priority, True) for local, kind, priority in DEFAULT_MAILBOXES
    }
    assert mailboxes["sysops"] == ("incident", "urgent", True)


def test_ensure_default_mailboxes_leaves_an_admins_change_alone(sysops):
    Mailbox.objects.filter(pk=sysops.pk).update(is_active=False, local_part="SysOps")
    ensure_default_mailboxes()
    assert Mailbox.objects.filter(local_part__iexact="sysops").count() == 1
    assert not Mailbox.objects.get(pk=sysops.pk).is_active


def test_find_mailbox_ignores_case_and_wants_our_domain_and_an_active_box(sysops):
    assert find_mailbox("SysOps@Support.Localhost") == sysops
    assert find_mailbox("<sysops@support.localhost>") == sysops
    assert find_mailbox("sysops@example.com") is None
    assert find_mailbox("sysops") is None
    assert find_mailbox("nobody@support.localhost") is None
    Mailbox.objects.filter(pk=sysops.pk).update(is_active=False)
    assert find_mailbox("sysops@support.localhost") is None


def test_a_message_is_kept_byte_for_byte_with_its_row_and_a_pending_run(sysops, probe_handler):
    message = store_message(
        PLAIN,
        source="smtp",
        mailbox=sysops,
        envelope_from="bob@acme.test",
        envelope_to=["sysops@support.localhost"],
    )
    message.refresh_from_db()
    assert default_storage.open(message.raw).read() == PLAIN
    assert message.raw.startswith("mail/raw/")
    assert message.raw.endswith(".eml")
    assert message.size == len(PLAIN)
    assert message.sha256 == __import__("hashlib").sha256(PLAIN).hexdigest()
    assert message.raw.split("/")[-1].startswith(message.sha256[:16])
    assert (message.mailbox, message.source, message.state) == (
        sysops,
        "smtp",
        MessageState.STORED,
    )
    assert message.envelope_from == "bob@acme.test"
    assert message.envelope_to == ["sysops@support.localhost"]
    assert message.message_id == "<abc-1@acme.test>"
    assert message.from_address == "Bob Customer <bob@acme.test>"
    assert message.subject == "Server défaillant"
    event = Event.objects.get(kind=EventKind.MAIL_RECEIVED)
    assert event.ticket is None
    assert event.changes == {"message": [None, message.pk]}
    run = HandlerRun.objects.get(event=event, handler=probe_handler)
    assert run.state == RunState.PENDING


def test_the_same_bytes_twice_are_two_rows_and_two_files(sysops):
    first = store_message(PLAIN, source="smtp", mailbox=sysops)
    second = store_message(PLAIN, source="smtp", mailbox=sysops)
    # Which copy counts is the processor's call (by Message-ID); the store keeps both.
    assert first.pk != second.pk
    assert first.raw != second.raw
    assert len(stored_files()) == 2


def test_an_imap_message_stored_before_is_returned_not_stored_again(sysops):
    first = store_message(PLAIN, source="imap", mailbox=sysops, imap_uid="7:42")
    again = store_message(PLAIN + b"changed", source="imap", mailbox=sysops, imap_uid="7:42")
    assert again.pk == first.pk
    assert InboundMessage.objects.count() == 1
    assert len(stored_files()) == 1
    other = store_message(PLAIN, source="imap", mailbox=sysops, imap_uid="7:43")
    assert other.pk != first.pk


HOSTILE = {
    "nul bytes": b"From: a\x00b@example.com\r\nSubject: x\x00y\r\n\r\nbody\x00\x00\r\n",
    "8-bit garbage": bytes(range(256)) * 8,
    "no headers at all": b"just a body line, no header, no blank line",
    "empty": b"",
    "1 MB header line": b"Subject: " + b"A" * (1024 * 1024) + b"\r\n\r\nbody\r\n",
    "broken encoded words": b"Subject: =?x-unknown?q?=FF=FE?= =?utf-8?b?###?=\r\n"
    b"From: =?utf-8?q?\xff?= <\r\nMessage-ID: <<<>>>\r\n\r\n",
    "headers only, latin-1": b"From: J\xf6rg <j@example.de>\r\nSubject: Gr\xfc\xdfe\r\n",
}


@pytest.mark.parametrize("raw", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_bytes_are_stored_as_they_came(sysops, raw):
    message = store_message(raw, source="smtp", mailbox=sysops, envelope_from="x\x00@y")
    message.refresh_from_db()
    assert default_storage.open(message.raw).read() == raw
    assert message.size == len(raw)
    for text in (message.message_id, message.from_address, message.subject, message.envelope_from):
        assert "\x00" not in text
        assert len(text) <= store.HEADER_MAX_CHARS
        text.encode("utf-8")  # storable in PostgreSQL: no lone surrogates


def test_a_long_subject_is_cut_to_the_column(sysops):
    message = store_message(HOSTILE["1 MB header line"], source="smtp", mailbox=sysops)
    assert message.subject == "A" * store.HEADER_MAX_CHARS


def full_disk(monkeypatch):
    """The storage writes the whole file, then the disk reports it full (as a close or a
    flush can): the half-kept file must go."""
    original = FileSystemStorage._save

    def save(self, name, content):
        original(self, name, content)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(FileSystemStorage, "_save", save)


def test_a_full_disk_refuses_the_message_and_keeps_nothing(sysops, monkeypatch):
    full_disk(monkeypatch)
    with pytest.raises(StoreUnavailable) as refused:
        store_message(PLAIN, source="smtp", mailbox=sysops)
    assert refused.value.disk_full
    assert refused.value.temporary
    assert not InboundMessage.objects.exists()
    assert not Event.objects.filter(kind=EventKind.MAIL_RECEIVED).exists()
    assert stored_files() == []


def test_an_unwritable_store_refuses_the_message_as_temporary(sysops, monkeypatch):
    def save(self, name, content):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(FileSystemStorage, "_save", save)
    with pytest.raises(StoreUnavailable) as refused:
        store_message(PLAIN, source="smtp", mailbox=sysops)
    assert not refused.value.disk_full
    assert not InboundMessage.objects.exists()


def test_a_database_failure_after_the_row_rolls_it_back_and_removes_the_file(sysops, monkeypatch):
    def locked(*args, **kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr(store, "record_many", locked)
    with pytest.raises(StoreUnavailable):
        store_message(PLAIN, source="smtp", mailbox=sysops)
    assert not InboundMessage.objects.exists()
    assert stored_files() == []


def test_an_unknown_source_is_a_programming_error(sysops):
    with pytest.raises(ValueError, match="source"):
        store_message(PLAIN, source="pigeon", mailbox=sysops)


# ---------------------------------------------------------------- several at once (the gateway's)


def test_store_many_commits_a_batch_and_refuses_only_the_file_that_failed(
    transactional_db, sysops, committed, monkeypatch
):
    original = FileSystemStorage._save

    def save(self, name, content):
        if b"disk full here" in content.read():
            raise OSError(errno.ENOSPC, "No space left on device")
        content.seek(0)
        return original(self, name, content)

    monkeypatch.setattr(FileSystemStorage, "_save", save)
    raws = [hold_mail(f"mail {n}") for n in range(3)] + [hold_mail("disk full here")]
    before = committed[0]
    outcomes = store.store_many(
        [store.Incoming(raw, source="smtp", mailbox=sysops, envelope_to=["s@x"]) for raw in raws]
    )
    assert committed[0] - before == 1  # the three stored rows in one transaction
    *stored, refused = outcomes
    assert isinstance(refused, StoreUnavailable)
    assert refused.disk_full
    assert [message.subject for message in stored] == ["mail 0", "mail 1", "mail 2"]
    assert list(InboundMessage.objects.order_by("pk").values_list("pk", "envelope_to")) == [
        (message.pk, ["s@x"]) for message in stored
    ]
    assert len(stored_files()) == 3
    assert [default_storage.open(m.raw).read() for m in stored] == raws[:3]


def test_store_many_refuses_only_the_message_whose_file_could_not_be_synced(
    transactional_db, sysops, committed, monkeypatch
):
    """The syncs are waited for inside the batch's transaction, after its inserts: a failed
    one rolls the batch back, and the others commit again without it."""
    failing_syncs(monkeypatch, lambda path: b"bad sector" in Path(path).read_bytes()
                  if Path(path).is_file() else False)  # fmt: skip
    raws = [hold_mail("mail 0"), hold_mail("bad sector"), hold_mail("mail 2")]
    before = committed[0]
    first, refused, last = store.store_many(
        [store.Incoming(raw, source="smtp", mailbox=sysops) for raw in raws]
    )
    assert isinstance(refused, StoreUnavailable)
    assert not refused.disk_full
    assert isinstance(refused.__cause__, OSError)
    assert committed[0] - before == 1  # the first transaction rolled back
    assert [first.subject, last.subject] == ["mail 0", "mail 2"]
    assert sorted(InboundMessage.objects.values_list("subject", flat=True)) == ["mail 0", "mail 2"]
    assert Event.objects.filter(kind=EventKind.MAIL_RECEIVED).count() == 2
    assert sorted(default_storage.open(m.raw).read() for m in (first, last)) == sorted(
        [raws[0], raws[2]]
    )
    assert len(stored_files()) == 2  # the refused mail's file removed


def test_store_many_refuses_every_message_of_a_batch_the_database_refused(
    transactional_db, sysops, monkeypatch
):
    def locked(*args, **kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr(store, "record_many", locked)
    outcomes = store.store_many(
        [store.Incoming(hold_mail(f"mail {n}"), source="smtp", mailbox=sysops) for n in range(2)]
    )
    assert [type(outcome) for outcome in outcomes] == [StoreUnavailable] * 2
    assert not InboundMessage.objects.exists()
    assert stored_files() == []


def test_store_many_refuses_an_unknown_source_before_keeping_anything(sysops):
    with pytest.raises(ValueError, match="source"):
        store.store_many(
            [store.Incoming(PLAIN, source=source, mailbox=sysops) for source in ("smtp", "pigeon")]
        )
    assert stored_files() == []


# ---------------------------------------------------------------- group commit


def hold_mail(subject: str = "hold") -> bytes:
    return PLAIN.replace(b"Server_d=C3=A9faillant", subject.encode())


class Batches:
    """Records the subjects of each batch the store commits. With `hold()`, the first batch
    waits until the messages sent after it are queued behind it, so that they share the
    next batch whatever the threads' timing."""

    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        queued: Callable[[], int] | None = None,
        commits: tuple[object, str] = (store, "_commit_batch"),
    ) -> None:
        """`queued` and `commits` name the queue and the batch's commit: the group commit's
        by default, the gateway's Storer and commit_spooled for the gateway."""
        self.subjects: list[list[str]] = []
        self.queued = queued or store.committer.queued
        self.leading = threading.Event()
        self.expected = 0
        owner, name = commits
        real = getattr(owner, name)

        def commit(batch, *args):
            if self.expected and not self.subjects:
                self.leading.set()
                deadline = time.monotonic() + 10
                while self.queued() < self.expected and time.monotonic() < deadline:
                    time.sleep(0.005)
            self.subjects.append(sorted(pending.message.subject for pending in batch))
            return real(batch, *args)

        monkeypatch.setattr(owner, name, commit)

    def hold(
        self, first: Callable[[], object], then: list[Callable[[], object]], queued: int = 0
    ) -> list:
        """Run `first`, and once its batch is being committed, all of `then` at once, held
        until `queued` of them (all by default) wait for the next batch; the result (or
        exception) of each, `first`'s first."""
        self.expected = queued or len(then)
        results: list = [None] * (len(then) + 1)

        def run(index: int, call: Callable[[], object]) -> None:
            try:
                results[index] = call()
            except Exception as error:  # noqa: BLE001  (the test looks at it)
                results[index] = error
            finally:
                connections.close_all()

        leader = threading.Thread(target=run, args=(0, first))
        leader.start()
        assert self.leading.wait(10)
        threads = [threading.Thread(target=run, args=(i + 1, call)) for i, call in enumerate(then)]
        for thread in threads:
            thread.start()
        for thread in [leader, *threads]:
            thread.join(30)
        return results


@pytest.fixture
def batches(transactional_db, monkeypatch):
    return Batches(monkeypatch)


@pytest.fixture
def committed(transactional_db, monkeypatch):
    """The number of COMMITs the database connections run, in any thread."""
    count = [0]
    wrapper = type(connections["default"])
    real = wrapper._commit

    def commit(self):
        count[0] += 1
        return real(self)

    monkeypatch.setattr(wrapper, "_commit", commit)
    return count


@pytest.fixture
def synced(monkeypatch):
    """The paths fsync'd by the store, files and directories, in the order given."""
    paths: list[Path] = []
    real = store.syncs.started

    def started(given):
        paths.extend(Path(path) for path in given)
        return real(given)

    monkeypatch.setattr(store.syncs, "started", started)
    return paths


def failing_syncs(monkeypatch, failing: Callable[[str], bool]) -> None:
    """The store's fsyncs of the paths `failing` picks fail with EIO; the others are real."""
    real = store.syncs.started

    @contextlib.contextmanager
    def started(paths):
        failed = {path: OSError(errno.EIO, "Input/output error") for path in paths if failing(path)}
        with real([path for path in paths if path not in failed]) as syncing:
            yield SimpleNamespace(wait=lambda: {**syncing.wait(), **failed})

    monkeypatch.setattr(store.syncs, "started", started)


def store_call(
    raw: bytes, mailbox: Mailbox, source: str = "smtp", **kwargs
) -> Callable[[], InboundMessage]:
    return lambda: store_message(raw, source=source, mailbox=mailbox, **kwargs)


def test_messages_stored_together_share_one_commit_and_one_directory_sync(
    sysops, probe_handler, batches, committed, synced
):
    then = [store_call(hold_mail(f"together {n}"), sysops) for n in range(3)]
    results = batches.hold(store_call(hold_mail(), sysops), then)
    assert all(isinstance(result, InboundMessage) for result in results)
    assert batches.subjects == [["hold"], ["together 0", "together 1", "together 2"]]
    assert committed[0] == 2  # one COMMIT per batch, not per message
    files = stored_files()
    assert len(files) == 4
    day = files[0].parent
    assert synced.count(day) == 2  # the directory once per batch, each file once
    assert sorted(path for path in synced if path.is_file()) == files
    for message in results:
        event = Event.objects.get(changes={"message": [None, message.pk]})
        assert HandlerRun.objects.get(event=event, handler=probe_handler).state == RunState.PENDING
        assert default_storage.open(message.raw).read() == hold_mail(message.subject)


def poison_records(monkeypatch, subject: str = "poison") -> None:
    """The database fails while it records the message with this subject, inside the
    transaction of the batch it shares."""
    real_record = store.record_many

    def record_many(kind, changes, **kwargs):
        ids = [change["message"][1] for change in changes]
        if InboundMessage.objects.filter(pk__in=ids, subject=subject).exists():
            raise OperationalError("database is locked")
        return real_record(kind, changes, **kwargs)

    monkeypatch.setattr(store, "record_many", record_many)


def test_a_database_failure_refuses_every_message_of_its_batch(sysops, batches, monkeypatch):
    poison_records(monkeypatch)
    then = [store_call(hold_mail(subject), sysops) for subject in ("good", "poison", "fine")]
    first, *refused = batches.hold(store_call(hold_mail(), sysops), then)
    assert batches.subjects == [["hold"], ["fine", "good", "poison"]]
    assert all(isinstance(error, StoreUnavailable) for error in refused)
    assert not any(error.disk_full for error in refused)
    assert list(InboundMessage.objects.values_list("pk", flat=True)) == [first.pk]
    assert Event.objects.filter(kind=EventKind.MAIL_RECEIVED).count() == 1
    assert stored_files() == [Path(default_storage.path(first.raw))]


def test_a_failed_commit_refuses_the_batch_and_keeps_its_files(sysops, batches, monkeypatch):
    wrapper = type(connections["default"])
    real = wrapper._commit
    calls = [0]

    def commit(self):
        calls[0] += 1
        if calls[0] == 2:  # the second batch's COMMIT
            raise OperationalError("disk I/O error")
        return real(self)

    monkeypatch.setattr(wrapper, "_commit", commit)
    then = [store_call(hold_mail(f"lost {n}"), sysops) for n in range(2)]
    first, *refused = batches.hold(store_call(hold_mail(), sysops), then)
    assert isinstance(first, InboundMessage)
    assert all(isinstance(error, StoreUnavailable) for error in refused)
    assert list(InboundMessage.objects.values_list("pk", flat=True)) == [first.pk]
    # Whether a failed COMMIT kept the rows is unknown to us: their files stay.
    assert len(stored_files()) == 3


def test_a_duplicate_imap_message_in_a_batch_fails_alone(sysops, batches):
    then = [
        store_call(hold_mail("imap"), sysops, source="imap", imap_uid="7:42"),
        store_call(hold_mail("imap again"), sysops, source="imap", imap_uid="7:42"),
        store_call(hold_mail("smtp"), sysops),
    ]
    first, imap, again, smtp = batches.hold(store_call(hold_mail(), sysops), then)
    assert batches.subjects == [["hold"], ["imap", "imap again", "smtp"]]
    # Both pollers get the one row that won; the other's file is removed.
    assert imap.pk == again.pk
    assert InboundMessage.objects.filter(imap_uid="7:42").count() == 1
    assert {first.subject, smtp.subject} == {"hold", "smtp"}
    assert InboundMessage.objects.count() == 3
    assert len(stored_files()) == 3


def test_a_directory_made_elsewhere_has_its_parents_synced_once(sysops, synced, monkeypatch):
    """The day's directory, made a moment ago by another process (an IMAP poll), may not be
    on disk yet: the first file this process stores in it syncs its parents too."""
    monkeypatch.setattr(store, "_durable_entries", set())
    root = Path(default_storage.path(""))
    day = Path(default_storage.path(store.raw_name("0" * 64))).parent
    day.mkdir(parents=True)  # as another process would, syncing nothing this one knows of
    store_message(hold_mail("first"), source="smtp", mailbox=sysops)
    chain = [day, *day.parents[: len(day.relative_to(root).parts)]]
    assert chain[-1] == root
    assert sorted(path for path in synced if path.is_dir()) == sorted(chain)
    synced.clear()
    store_message(hold_mail("second"), source="smtp", mailbox=sysops)
    assert [path for path in synced if path.is_dir()] == [day]
    assert InboundMessage.objects.count() == 2


def test_a_directory_that_cannot_be_synced_refuses_its_messages(sysops, monkeypatch):
    failing_syncs(monkeypatch, lambda path: Path(path).is_dir())
    with pytest.raises(StoreUnavailable) as refused:
        store_message(PLAIN, source="smtp", mailbox=sysops)
    assert not refused.value.disk_full
    assert not InboundMessage.objects.exists()
    assert stored_files() == []


def test_a_batch_never_exceeds_its_limit(sysops, batches, monkeypatch):
    monkeypatch.setattr(store.committer, "limit", 2)
    then = [store_call(hold_mail(f"queued {n}"), sysops) for n in range(5)]
    results = batches.hold(store_call(hold_mail(), sysops), then)
    assert all(isinstance(result, InboundMessage) for result in results)
    assert [len(subjects) for subjects in batches.subjects] == [1, 2, 2, 1]


# ---------------------------------------------------------------- the header peek

_NAMES = ["Message-ID", "message-id", "MESSAGE-ID", "From", "from", "Subject", "SUBJECT",
          "X-Mailer", "Received", "To", "From ", "Bad Name", "", "Sub:ject"]  # fmt: skip
# Mostly what the plain peek reads (printable ASCII, tabs), sometimes what it leaves.
_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(min_codepoint=32, max_codepoint=126), st.sampled_from("\t:<>@")
    ),
    max_size=30,
) | st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=127), max_size=10)
_LINE = st.one_of(
    st.builds(
        "{}:{}{}".format,
        st.sampled_from(_NAMES),
        st.sampled_from(["", " ", "  ", "\t"]),
        _TEXT,
    ),
    st.builds("{}{}".format, st.sampled_from([" ", "\t", "  "]), _TEXT),
    st.sampled_from(["", "junk without a colon", "From someone", "=?utf-8?q?x?=", "Jörg"]),
)


@given(
    lines=st.lists(_LINE, max_size=12),
    ending=st.sampled_from(["\r\n", "\n"]),
    body=st.sampled_from(["", "\r\n\r\nbody\r\n", "\n\nbody\n"]),
)
@example(lines=["Subject: a", " b", "\tc", "From: x@y"], ending="\r\n", body="")
@example(lines=["X: 1", " folded", "subject:  Two", "Subject: second"], ending="\n", body="")
@example(lines=[" first folded", "Subject: s"], ending="\r\n", body="")
@example(lines=["Subject: s", ":no name", " cont"], ending="\r\n", body="")
@example(lines=["X: 1", "junk without a colon", "Subject: after"], ending="\r\n", body="")
def test_the_plain_header_peek_reads_what_the_compat32_parser_reads(lines, ending, body):
    raw = ending.join(lines).encode("utf-8", "surrogateescape") + body.encode()
    assert store.peek_headers(raw) == store._peek_compat32(store._header_block(raw))


def test_the_plain_peek_is_taken_for_plain_headers_only(monkeypatch):
    taken: list[str] = []
    real = store._peek_plain
    monkeypatch.setattr(store, "_peek_plain", lambda block: taken.append(block) or real(block))
    assert store.peek_headers(PLAIN.replace(b"=?utf-8?q?Server_d=C3=A9faillant?=", b"Down")) == {
        "message_id": "<abc-1@acme.test>",
        "from_address": "Bob Customer <bob@acme.test>",
        "subject": "Down",
    }
    assert len(taken) == 1
    assert store.peek_headers(PLAIN)["subject"] == "Server défaillant"  # encoded words
    assert store.peek_headers(HOSTILE["headers only, latin-1"])["subject"] == "Gr\ufffd\ufffde"
    assert len(taken) == 1
