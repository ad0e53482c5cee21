"""Every change writes its event in the change's own transaction, and only then."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.db import transaction

from supportdesk.events.models import Event, EventKind, Via
from supportdesk.events.record import record
from supportdesk.tickets import services
from supportdesk.tickets.models import Response, Status, Ticket
from tests.factories import make_ticket


class SimulatedCrashError(Exception):
    pass


def test_an_edit_records_who_how_what_from_what_to_and_the_version(alice, bob):
    ticket = make_ticket(requester=bob)
    services.update_ticket(
        ticket, acting_user=alice, via=Via.API, changes={"priority": "urgent", "title": "Down"}
    )
    event = Event.objects.latest("id")
    assert event.ticket_id == ticket.pk
    assert (event.actor, event.via, event.version) == (alice, Via.API, 2)
    assert event.changes == {"priority": ["Normal", "Urgent"], "title": ["Cannot log in", "Down"]}
    assert event.created_at is not None
    assert event.field_changes() == [
        ("priority", "Normal", "Urgent"),
        ("title", "Cannot log in", "Down"),
    ]


def create(ticket, alice):
    services.create_ticket(
        acting_user=alice,
        requester=ticket.requester,
        via=Via.CLI,
        type="task",
        priority="low",
        title="Rotate keys",
    )


def update(ticket, alice):
    services.update_ticket(ticket, acting_user=alice, via=Via.CLI, changes={"title": "New"})


def close(ticket, alice):
    services.update_ticket(ticket, acting_user=alice, via=Via.CLI, changes={"status": "closed"})


def respond(ticket, alice):
    services.add_response(ticket, acting_user=alice, via=Via.CLI, body="Hello")


def note(ticket, alice):
    services.add_response(ticket, acting_user=alice, via=Via.CLI, body="Hm", internal=True)


def attach(ticket, alice):
    services.add_attachments(
        ticket, [ContentFile(b"1", name="a.txt")], acting_user=alice, via=Via.CLI
    )


@pytest.mark.parametrize(
    ("change", "kind"),
    [
        (create, EventKind.CREATED),
        (update, EventKind.UPDATED),
        (close, EventKind.STATUS_CHANGED),
        (respond, EventKind.RESPONSE_ADDED),
        (note, EventKind.NOTE_ADDED),
        (attach, EventKind.ATTACHMENT_ADDED),
    ],
)
def test_every_change_writes_one_event(alice, bob, change, kind):
    ticket = make_ticket(requester=bob)
    before = Event.objects.count()
    change(ticket, alice)
    assert Event.objects.count() == before + 1
    event = Event.objects.latest("id")
    assert (event.kind, event.actor, event.via) == (kind, alice, Via.CLI)


def test_a_reopen_is_recorded_every_time(alice, bob):
    ticket = make_ticket(requester=bob, status=Status.CLOSED, agent=alice)
    for _ in range(2):
        services.reopen_ticket(ticket, acting_user=bob, via=Via.WEB)
        services.update_ticket(ticket, acting_user=alice, via=Via.WEB, changes={"status": "closed"})
    assert ticket.events.filter(kind=EventKind.REOPENED).count() == 2


def failing_after_the_write(monkeypatch):
    """Make the services' record() write its row, then fail, as a crash after it would."""

    def record_then_fail(*args, **kwargs):
        record(*args, **kwargs)
        raise SimulatedCrashError

    monkeypatch.setattr(services, "record", record_then_fail)


def test_a_failing_edit_rolls_back_its_event_and_its_change(alice, bob, monkeypatch):
    ticket = make_ticket(requester=bob, tags=["Bug"])
    events = Event.objects.count()
    failing_after_the_write(monkeypatch)
    with pytest.raises(SimulatedCrashError):
        services.update_ticket(
            ticket, acting_user=alice, via=Via.WEB, changes={"title": "Lost", "tags": ["Question"]}
        )
    saved = Ticket.objects.get(pk=ticket.pk)
    assert (saved.title, saved.version) == ("Cannot log in", 1)
    assert list(saved.tags.values_list("name", flat=True)) == ["Bug"]
    assert Event.objects.count() == events


def test_a_failing_response_rolls_back_its_event_and_the_response(alice, bob, monkeypatch):
    ticket = make_ticket(requester=bob, status=Status.PENDING, agent=alice)
    events = Event.objects.count()
    failing_after_the_write(monkeypatch)
    with pytest.raises(SimulatedCrashError):
        services.add_response(ticket, acting_user=bob, via=Via.WEB, body="Lost")
    assert not Response.objects.exists()
    assert Ticket.objects.get(pk=ticket.pk).status == Status.PENDING
    assert Event.objects.count() == events


def test_a_failing_create_leaves_neither_ticket_nor_event(bob, monkeypatch):
    failing_after_the_write(monkeypatch)
    with pytest.raises(SimulatedCrashError):
        make_ticket(requester=bob)
    assert not Ticket.objects.exists()
    assert not Event.objects.exists()


def test_an_enclosing_rollback_takes_the_event_with_it(alice, bob):
    ticket = make_ticket(requester=bob)

    def edit_then_crash() -> None:
        with transaction.atomic():
            update(ticket, alice)
            raise SimulatedCrashError

    with pytest.raises(SimulatedCrashError):
        edit_then_crash()
    assert ticket.events.count() == 1
    assert Ticket.objects.get(pk=ticket.pk).title == "Cannot log in"


@pytest.mark.django_db(transaction=True)
def test_record_outside_a_transaction_raises_and_writes_nothing(bob):
    ticket = make_ticket(requester=bob)
    with pytest.raises(RuntimeError, match="inside the change's transaction"):
        record(ticket, EventKind.UPDATED, acting_user=bob, via=Via.SYSTEM, version=1)
    assert ticket.events.count() == 1  # the creation's own


@pytest.mark.django_db(transaction=True)
def test_record_many_writes_each_event_with_a_run_per_handler_and_one_wake_up():
    from django_tasks_db.models import DBTaskResult

    from supportdesk.events.models import HandlerRun
    from supportdesk.events.record import record_many
    from supportdesk.events.registry import handlers_for

    handlers = handlers_for(EventKind.MAIL_RECEIVED)
    assert handlers  # intake's processing at least
    changes = [{"message": [None, n]} for n in (7, 8, 9)]
    with pytest.raises(RuntimeError, match="inside the changes' transaction"):
        record_many(EventKind.MAIL_RECEIVED, changes, via=Via.EMAIL, version=1)
    assert not Event.objects.exists()
    with transaction.atomic():
        events = record_many(EventKind.MAIL_RECEIVED, changes, via=Via.EMAIL, version=1)
    stored = list(Event.objects.order_by("pk"))
    assert [event.pk for event in stored] == [event.pk for event in events]
    assert [event.changes for event in stored] == changes
    assert {(event.kind, event.via, event.ticket_id, event.actor_id) for event in stored} == {
        (EventKind.MAIL_RECEIVED, Via.EMAIL, None, None)
    }
    runs = HandlerRun.objects.order_by("pk").values_list("event_id", "handler")
    assert list(runs) == [(event.pk, name) for event in events for name in handlers]
    assert DBTaskResult.objects.count() == 1  # one wake-up for every run
