"""The raw-message store: bytes kept exactly, row and processing run committed together,
and a refusal (disk, database) that leaves nothing half-stored behind."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from django.apps import apps as django_apps
from django.core.files.storage import FileSystemStorage, default_storage
from django.db import OperationalError

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

    monkeypatch.setattr(store, "record", locked)
    with pytest.raises(StoreUnavailable):
        store_message(PLAIN, source="smtp", mailbox=sysops)
    assert not InboundMessage.objects.exists()
    assert stored_files() == []


def test_an_unknown_source_is_a_programming_error(sysops):
    with pytest.raises(ValueError, match="source"):
        store_message(PLAIN, source="pigeon", mailbox=sysops)
