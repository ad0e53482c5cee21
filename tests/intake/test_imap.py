"""IMAP polling against a real Dovecot: stored raw once, marked after, never lost or doubled."""

from __future__ import annotations

import logging
import os
import signal

import pytest
from django.core.files.storage import default_storage

from supportdesk.intake import imap, store
from supportdesk.intake.models import InboundMessage, Mailbox
from supportdesk.tickets.models import Priority, TicketType
from tests.intake.dovecot import dovecot_fixture, dovecot_server_fixture  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)  # the store commits its own rows

PASSWORD_VARIABLE = "SUPPORTDESK_TEST_IMAP_PASSWORD"


def mail(number: int, *, message_id: str | None = None) -> bytes:
    """A message whose bytes a re-serialisation would change: CRLF endings, a folded header
    with a tab, 8-bit Latin-1 body bytes and trailing spaces."""
    message_id = message_id or f"<m{number}@customer.test>"
    return (
        f"From: Bob <bob@customer.test>\r\n"
        f"To: support@support.localhost\r\n"
        f"Subject: Problem number {number}\r\n"
        f"X-Long: a header that goes on\r\n\tand on\r\n"
        f"Message-ID: {message_id}\r\n"
        f"Content-Type: text/plain; charset=latin-1\r\n"
        f"\r\n"
        f"Caf\xe9 {number}   \r\n"
    ).encode("latin-1")


def make_mailbox(account, *, local_part="support-imap", folder="INBOX", **fields) -> Mailbox:
    fields.setdefault("imap_password_env", PASSWORD_VARIABLE)
    return Mailbox.objects.create(
        local_part=local_part,
        ticket_type=TicketType.objects.get(key="question"),
        priority=Priority.objects.get(key="normal"),
        imap_host=account.host,
        imap_port=account.port,
        imap_tls=False,
        imap_user=account.user,
        imap_folder=folder,
        **fields,
    )


@pytest.fixture
def password(dovecot, monkeypatch):
    monkeypatch.setenv(PASSWORD_VARIABLE, dovecot.password)
    return dovecot.password


def stored_raw(mailbox: Mailbox) -> list[bytes]:
    rows = InboundMessage.objects.filter(mailbox=mailbox).order_by("id")
    return [default_storage.open(row.raw).read() for row in rows]


def server_state(server, folder="INBOX") -> list[tuple[str, set[str]]]:
    """(UID, flags) of every message in the folder."""
    with server.client(folder=folder) as client:
        return [
            (message.uid, set(message.flags))
            for message in client.fetch(mark_seen=False, headers_only=True)
        ]


def test_messages_are_stored_raw_then_flagged_and_never_stored_again(dovecot_server, password):
    messages = [mail(1), mail(2), mail(3)]
    dovecot_server.deliver(*messages)
    mailbox = make_mailbox(dovecot_server.account)

    assert imap.fetch(once=True) == 3

    assert stored_raw(mailbox) == messages
    rows = InboundMessage.objects.filter(mailbox=mailbox)
    assert {row.source for row in rows} == {"imap"}
    assert {row.imap_uid.split(":")[1] for row in rows} == {"1", "2", "3"}
    assert all(
        {"\\Seen", imap.PROCESSED_KEYWORD} <= flags for _, flags in server_state(dovecot_server)
    )

    assert imap.fetch(once=True) == 0
    assert InboundMessage.objects.filter(mailbox=mailbox).count() == 3


def test_a_message_read_by_a_person_is_still_fetched(dovecot_server, password):
    dovecot_server.deliver(mail(1), flags=("\\Seen",))
    mailbox = make_mailbox(dovecot_server.account)

    assert imap.fetch(once=True) == 1
    assert stored_raw(mailbox) == [mail(1)]


def test_a_connection_cut_mid_batch_loses_and_doubles_nothing(
    dovecot_server, password, monkeypatch
):
    messages = [mail(1), mail(2), mail(3)]
    dovecot_server.deliver(*messages)
    mailbox = make_mailbox(dovecot_server.account)
    real_store = store.store_message

    def store_then_cut(raw, **kwargs):
        row = real_store(raw, **kwargs)
        dovecot_server.stop()  # stored, not yet marked: the worst moment to lose the server
        return row

    monkeypatch.setattr(store, "store_message", store_then_cut)
    assert imap.fetch(once=True) == 1
    assert stored_raw(mailbox) == [mail(1)]

    monkeypatch.setattr(store, "store_message", real_store)
    dovecot_server.start()
    assert imap.PROCESSED_KEYWORD not in dict(server_state(dovecot_server))["1"]

    assert imap.fetch(once=True) == 2
    assert stored_raw(mailbox) == messages  # the first one recognised by its UID, not again
    assert all(imap.PROCESSED_KEYWORD in flags for _, flags in server_state(dovecot_server))
    assert imap.fetch(once=True) == 0


def test_a_store_that_is_unavailable_stops_the_batch_until_the_next_poll(
    dovecot_server, password, monkeypatch
):
    dovecot_server.deliver(mail(1), mail(2), mail(3))
    mailbox = make_mailbox(dovecot_server.account)
    real_store = store.store_message
    calls = []

    def fail_second(raw, **kwargs):
        calls.append(raw)
        if len(calls) == 2:
            raise store.StoreUnavailable("The message was not stored: the disk is full.")
        return real_store(raw, **kwargs)

    monkeypatch.setattr(store, "store_message", fail_second)
    assert imap.fetch(once=True) == 1
    assert len(calls) == 2  # the third was not tried after the store refused
    flagged = {
        uid for uid, flags in server_state(dovecot_server) if imap.PROCESSED_KEYWORD in flags
    }
    assert flagged == {"1"}  # the refused message stays unmarked on the server

    monkeypatch.setattr(store, "store_message", real_store)
    assert imap.fetch(once=True) == 2
    assert stored_raw(mailbox) == [mail(1), mail(2), mail(3)]


def test_processed_mail_is_moved_to_the_configured_folder(dovecot_server, password):
    dovecot_server.deliver(mail(1), mail(2))
    mailbox = make_mailbox(dovecot_server.account, imap_processed_folder="Processed")

    assert imap.fetch(once=True) == 2  # the folder did not exist: it is created

    assert stored_raw(mailbox) == [mail(1), mail(2)]
    assert server_state(dovecot_server) == []
    assert len(server_state(dovecot_server, folder="Processed")) == 2
    dovecot_server.deliver(mail(3))
    assert imap.fetch(once=True) == 1
    assert stored_raw(mailbox) == [mail(1), mail(2), mail(3)]


def test_a_mailbox_without_its_password_is_skipped_and_the_others_are_fetched(
    dovecot_server, tmp_path, monkeypatch, caplog
):
    monkeypatch.delenv(PASSWORD_VARIABLE, raising=False)
    dovecot_server.deliver(mail(1))
    secret = tmp_path / "imap-password"
    secret.write_text(dovecot_server.account.password + "\n")
    broken = make_mailbox(dovecot_server.account, local_part="hosting-imap")
    working = make_mailbox(
        dovecot_server.account,
        local_part="support-imap",
        imap_password_env="",
        imap_password_file=str(secret),
    )

    with caplog.at_level(logging.ERROR, logger="supportdesk.intake.imap"):
        assert imap.fetch(once=True) == 1

    assert stored_raw(working) == [mail(1)]
    assert not InboundMessage.objects.filter(mailbox=broken).exists()
    errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert any(broken.address in error and PASSWORD_VARIABLE in error for error in errors)
    assert password_not_logged(caplog, dovecot_server.account.password)


def test_a_refused_login_is_logged_and_the_other_mailboxes_are_fetched(
    dovecot_server, password, monkeypatch, caplog
):
    monkeypatch.setenv("SUPPORTDESK_TEST_WRONG_PASSWORD", "not-" + password)
    dovecot_server.deliver(mail(1))
    # Polled after the working one (mailboxes go in address order): Dovecot makes the next
    # login from an address that just failed wait seconds, which would only slow the test.
    refused = make_mailbox(
        dovecot_server.account,
        local_part="sysops-imap",
        imap_password_env="SUPPORTDESK_TEST_WRONG_PASSWORD",
    )
    working = make_mailbox(dovecot_server.account, local_part="support-imap")

    with caplog.at_level(logging.ERROR, logger="supportdesk.intake.imap"):
        assert imap.fetch(once=True) == 1

    assert stored_raw(working) == [mail(1)]
    assert not InboundMessage.objects.filter(mailbox=refused).exists()
    assert any(
        refused.address in record.getMessage() and record.levelno == logging.ERROR
        for record in caplog.records
    )
    assert password_not_logged(caplog, "not-" + password)


def password_not_logged(caplog, password: str) -> bool:
    return all(password not in record.getMessage() for record in caplog.records)


def test_a_uidvalidity_change_never_mistakes_a_new_message_for_an_old_one(dovecot_server, password):
    """A folder rebuilt by the server restarts its UIDs at 1. The UIDs we keep carry the
    UIDVALIDITY, so a new message with an old number is stored, not skipped as seen. A copy
    that kept our keyword is skipped; one that lost it is stored again and its Message-ID
    makes the processor treat it as the duplicate it is."""
    with dovecot_server.client() as client:
        client.folder.create("Support")
    first, second = mail(1), mail(2)
    dovecot_server.deliver(first, second, folder="Support")
    mailbox = make_mailbox(dovecot_server.account, folder="Support")
    assert imap.fetch(once=True) == 2
    old_validity = {row.imap_uid.split(":")[0] for row in InboundMessage.objects.all()}

    with dovecot_server.client() as client:
        client.folder.delete("Support")
        client.folder.create("Support")
        new_validity = str(client.folder.status("Support")["UIDVALIDITY"])
    assert old_validity != {new_validity}
    new = mail(3, message_id="<new@customer.test>")
    dovecot_server.deliver(new, folder="Support")  # UID 1, as `first` had
    dovecot_server.deliver(first, folder="Support", flags=(imap.PROCESSED_KEYWORD,))
    dovecot_server.deliver(second, folder="Support")  # restored without our keyword

    assert imap.fetch(once=True) == 2

    rows = list(InboundMessage.objects.filter(mailbox=mailbox).order_by("id"))
    assert [default_storage.open(row.raw).read() for row in rows] == [first, second, new, second]
    assert [row.imap_uid for row in rows[2:]] == [f"{new_validity}:1", f"{new_validity}:3"]
    assert rows[3].message_id == rows[1].message_id
    assert imap.fetch(once=True) == 0


def test_the_loop_stops_on_sigterm_after_the_message_in_hand(
    dovecot_server, password, monkeypatch, settings
):
    settings.FETCHMAIL_SECONDS = 3600  # the test ends only if the signal ends the loop
    dovecot_server.deliver(mail(1), mail(2))
    mailbox = make_mailbox(dovecot_server.account)
    real_store = store.store_message

    def store_then_terminate(raw, **kwargs):
        row = real_store(raw, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)
        return row

    monkeypatch.setattr(store, "store_message", store_then_terminate)
    previous = signal.getsignal(signal.SIGTERM)

    assert imap.fetch(once=False) == 1

    assert signal.getsignal(signal.SIGTERM) is previous
    assert stored_raw(mailbox) == [mail(1)]
    flags = dict(server_state(dovecot_server))
    assert imap.PROCESSED_KEYWORD in flags["1"]  # the message in hand was finished
    assert imap.PROCESSED_KEYWORD not in flags["2"]
