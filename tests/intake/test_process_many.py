"""Several stored messages claimed together: processed in one transaction, each under its own
savepoint, as if each had been processed alone."""

from __future__ import annotations

import pytest
from django.db import connection

from supportdesk.events.models import HandlerRun, RunState
from supportdesk.events.tasks import execute_many
from supportdesk.intake import process
from supportdesk.intake.models import InboundMessage, MessageState
from supportdesk.tickets.models import Response, Ticket, TicketType
from tests.factories import make_ticket
from tests.intake.mail import HANDLER, plain, store

pytestmark = pytest.mark.django_db(transaction=True)


def runs_of(messages: list[InboundMessage]) -> list[int]:
    return [
        HandlerRun.objects.get(handler=HANDLER, event__changes__message__1=message.pk).pk
        for message in messages
    ]


@pytest.fixture
def transactions(monkeypatch):
    """The processing transactions begun by process_stored_many (its outermost blocks)."""
    begun: list[int] = []
    real = process._apply_together

    def counted(ready):
        real_atomic = process.transaction.atomic

        def atomic(*args, **kwargs):
            if not connection.in_atomic_block:
                begun.append(len(ready))
            return real_atomic(*args, **kwargs)

        monkeypatch.setattr(process.transaction, "atomic", atomic)
        try:
            real(ready)
        finally:
            monkeypatch.setattr(process.transaction, "atomic", real_atomic)

    monkeypatch.setattr(process, "_apply_together", counted)
    return begun


def states(messages: list[InboundMessage]) -> list[str]:
    for message in messages:
        message.refresh_from_db()
    return [message.state for message in messages]


def test_messages_claimed_together_are_processed_in_one_transaction_each_as_alone(
    bob, transactions, monkeypatch
):
    ticket = make_ticket(requester=bob)
    parsed_in: list[bool] = []
    real_parse = process.parse_message

    def watched(raw: bytes):
        parsed_in.append(connection.in_atomic_block)
        return real_parse(raw)

    monkeypatch.setattr(process, "parse_message", watched)
    new = store(plain(sender=bob.email, subject="Printer offline", message_id="<new@acme.test>"))
    reply = store(plain(sender=bob.email, subject=f"Re: [#{ticket.number}] it"))
    copy = store(plain(sender=bob.email, subject="Printer offline", message_id="<new@acme.test>"))
    stranger = store(plain(sender="stranger@example.org", subject="Who am I"))
    messages = [new, reply, copy, stranger]
    assert execute_many(runs_of(messages)) == 4
    assert transactions == [4]  # one processing transaction for the four
    assert parsed_in == [False] * 4  # each parsed before it
    assert states(messages) == [
        MessageState.PROCESSED,
        MessageState.PROCESSED,
        MessageState.DUPLICATE,
        MessageState.HELD,
    ]
    assert new.ticket.title == "Printer offline"
    assert reply.ticket_id == ticket.pk
    assert Response.objects.get(ticket=ticket).pk == reply.response_id
    assert Ticket.objects.count() == 2
    assert set(HandlerRun.objects.filter(handler=HANDLER).values_list("state", flat=True)) == {
        RunState.DONE
    }


def test_a_message_that_fails_in_the_batch_is_rolled_back_and_quarantined_alone(
    bob, transactions, monkeypatch
):
    real_open = process._open

    def failing_open(message, parsed, raw, sender, **kwargs):
        real_open(message, parsed, raw, sender, **kwargs)  # its ticket written, then:
        if parsed.subject == "Explodes":
            raise RuntimeError("the parser exploded")

    monkeypatch.setattr(process, "_open", failing_open)
    messages = [
        store(plain(sender=bob.email, subject=subject)) for subject in ("One", "Explodes", "Two")
    ]
    assert execute_many(runs_of(messages)) == 3
    assert transactions == [3]
    assert states(messages) == [
        MessageState.PROCESSED,
        MessageState.QUARANTINED,
        MessageState.PROCESSED,
    ]
    assert "the parser exploded" in messages[1].error
    assert sorted(Ticket.objects.values_list("title", flat=True)) == ["One", "Two"]


def test_a_missing_raw_file_quarantines_that_message_before_the_transaction(bob, transactions):
    from django.core.files.storage import default_storage

    messages = [store(plain(sender=bob.email, subject=s)) for s in ("Kept", "Lost", "Also kept")]
    default_storage.delete(messages[1].raw)
    assert execute_many(runs_of(messages)) == 3
    assert transactions == [2]
    assert states(messages) == [
        MessageState.PROCESSED,
        MessageState.QUARANTINED,
        MessageState.PROCESSED,
    ]


def test_the_transaction_ends_early_whenever_the_gateway_waits(bob, transactions, monkeypatch):
    asked: list[int] = []

    def gateway_waits() -> bool:
        asked.append(1)
        return len(asked) == 1  # waiting once, after the first message

    monkeypatch.setattr(process, "_urgent_writer_waiting", gateway_waits)
    messages = [store(plain(sender=bob.email, subject=f"Mail {n}")) for n in range(4)]
    assert execute_many(runs_of(messages)) == 4
    assert transactions == [4, 3]  # committed after the first; the three left together
    assert states(messages) == [MessageState.PROCESSED] * 4


def test_at_most_so_many_bytes_are_read_ahead(bob, transactions, monkeypatch):
    monkeypatch.setattr(process, "AHEAD_MAX_BYTES", 1)  # every message alone
    messages = [store(plain(sender=bob.email, subject=f"Mail {n}")) for n in range(3)]
    assert execute_many(runs_of(messages)) == 3
    assert transactions == [1, 1, 1]
    assert states(messages) == [MessageState.PROCESSED] * 3


def test_a_hidden_type_fails_its_message_and_not_the_others(bob, transactions):
    """A failure of the services (InvalidChange) as well as of the code."""
    messages = [store(plain(sender=bob.email, subject="Fine"))]
    messages.append(store(plain(sender=bob.email, subject="Urgent"), to="sysops"))
    TicketType.objects.filter(key="incident").update(is_hidden=True)
    assert execute_many(runs_of(messages)) == 2
    assert states(messages) == [MessageState.PROCESSED, MessageState.QUARANTINED]
    assert "InvalidChange" in messages[1].error
