"""The delivery rows as `planned` writes them: the rows bulk_create wrote, once per event,
all of them or none."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection
from django.test.utils import CaptureQueriesContext

from supportdesk import rows
from supportdesk.events.models import Event
from supportdesk.notify import deliveries
from supportdesk.notify.deliveries import planned
from supportdesk.notify.models import DeliveryState, MailDelivery
from supportdesk.notify.recipients import recipients_for
from tests.factories import make_ticket

CCS = ["ops@example.org", "desk@example.org", "ann@example.org"]
WRITTEN_BY_THE_DATABASE = {"id", "created_at", "updated_at"}


def field_values(instance, leave_out=frozenset()):
    return {
        f.attname: getattr(instance, f.attname)
        for f in type(instance)._meta.concrete_fields
        if f.attname not in leave_out
    }


def new_rows(event: Event) -> list[MailDelivery]:
    """The rows `planned` makes of the recipients, not yet written."""
    return deliveries.new_rows(event, recipients_for(event))


def inserts(context: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in context.captured_queries if q["sql"].startswith("INSERT")]


@pytest.fixture
def event(bob, alice):
    """Bob's new ticket with three CCs: five mails (bob, the CCs, alice as an opted-in agent)."""
    make_ticket(requester=bob, ccs=CCS)
    return deliveries._loaded(Event.objects.latest("id"))


def test_the_rows_are_written_in_one_statement_as_bulk_create_wrote_them(event):
    with CaptureQueriesContext(connection) as context:
        written = planned(event)
    assert len(inserts(context)) == 1
    assert len(written) == 5
    assert [row.recipient for row in written] == [r.email for r in recipients_for(event)]
    stored = {row.pk: row for row in MailDelivery.objects.filter(event=event)}
    assert sorted(stored) == sorted(row.pk for row in written)
    for row in written:
        assert field_values(stored[row.pk]) == field_values(row)  # the id is that row's
        assert row._state.adding is False
        assert row.state == DeliveryState.PENDING
        assert row.attempts == 0
        assert row.created_at is not None
    # The same values as the ORM's bulk_create writes for the same recipients.
    MailDelivery.objects.filter(event=event).delete()
    reference = MailDelivery.objects.bulk_create(new_rows(event))
    assert [field_values(row, WRITTEN_BY_THE_DATABASE) for row in written] == [
        field_values(row, WRITTEN_BY_THE_DATABASE)
        for row in MailDelivery.objects.filter(pk__in=[row.pk for row in reference]).order_by("id")
    ]


def test_the_rows_keep_the_users_and_tickets_they_were_planned_with(event, bob):
    written = {row.recipient: row for row in planned(event)}
    with CaptureQueriesContext(connection) as context:
        assert written[bob.email].user.display_name == bob.display_name
        assert written[bob.email].ticket.number == event.ticket.number
    assert context.captured_queries == []


def test_a_retried_run_reads_the_rows_and_writes_none(event):
    first = planned(event)
    with CaptureQueriesContext(connection) as context:
        again = planned(event)
    assert inserts(context) == []
    assert [(row.pk, row.recipient, row.message_id) for row in again] == [
        (row.pk, row.recipient, row.message_id) for row in first
    ]
    assert MailDelivery.objects.filter(event=event).count() == len(first)


def test_a_run_sent_twice_mails_once_and_keeps_one_row_a_recipient(event, smtp_sink):
    deliveries.deliver(event, handler="mail_on_created")
    deliveries.deliver(deliveries._loaded(event), handler="mail_on_created")
    stored = MailDelivery.objects.filter(event=event)
    assert stored.count() == 5
    assert {row.state for row in stored} == {DeliveryState.SENT}
    assert sorted(smtp_sink.message_ids()) == sorted(row.message_id for row in stored)


def test_the_ids_are_matched_by_address_whatever_order_they_come_back_in(event, monkeypatch):
    """Neither SQLite nor PostgreSQL promises RETURNING in the order of VALUES."""
    fetch_all = rows.fetch_all
    monkeypatch.setattr(rows, "fetch_all", lambda sql, params: fetch_all(sql, params)[::-1])
    written = planned(event)
    monkeypatch.undo()
    stored = {row.pk: row.recipient for row in MailDelivery.objects.filter(event=event)}
    assert {row.pk: row.recipient for row in written} == stored


def test_more_rows_than_one_statement_takes_go_as_bulk_create_batches_them(event, monkeypatch):
    monkeypatch.setattr(connection.ops, "bulk_batch_size", lambda fields, objs: 2)
    with CaptureQueriesContext(connection) as context:
        written = planned(event)
    assert len(inserts(context)) == 3  # 2 + 2 + 1, in one transaction
    stored = {row.pk: field_values(row) for row in MailDelivery.objects.filter(event=event)}
    assert {row.pk: field_values(row) for row in written} == stored


@pytest.mark.django_db(transaction=True)
def test_a_conflict_writes_none_of_the_rows(bob, alice):
    """In autocommit, as the outbox runs it: one row in conflict fails the statement and
    leaves none of the others, so the retry never takes part of the set for the whole."""
    make_ticket(requester=bob, ccs=CCS)
    event = deliveries._loaded(Event.objects.latest("id"))
    new = new_rows(event)
    taken = new_rows(event)[2]
    taken.save()
    with pytest.raises(IntegrityError):
        deliveries._inserted(new)
    assert list(MailDelivery.objects.filter(event=event).values_list("pk", flat=True)) == [taken.pk]


def test_rows_of_several_events_are_matched_by_event_and_address_in_any_order(
    event, bob, monkeypatch
):
    """The same people on two tickets: one statement, each row its own id."""
    make_ticket(requester=bob, ccs=CCS)
    second = deliveries._loaded(Event.objects.latest("id"))
    fetch_all = rows.fetch_all
    monkeypatch.setattr(rows, "fetch_all", lambda sql, params: fetch_all(sql, params)[::-1])
    with CaptureQueriesContext(connection) as context:
        plans = deliveries.planned_many([event, second])
    monkeypatch.undo()
    assert len(inserts(context)) == 1
    for planned_event in (event, second):
        written = {row.pk: (row.event_id, row.recipient) for row in plans[planned_event.pk]}
        stored = MailDelivery.objects.filter(event=planned_event)
        assert written == {row.pk: (row.event_id, row.recipient) for row in stored}
        assert len(written) == 5
    again = deliveries.planned_many([event, second])  # planned before: read, not written
    assert {e: [row.pk for row in r] for e, r in again.items()} == {
        e: [row.pk for row in sorted(r, key=lambda row: row.pk)] for e, r in plans.items()
    }
