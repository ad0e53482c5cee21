"""Ticket numbers, and the admin-managed types, priorities and tags."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError

from supportdesk.errors import InvalidChange
from supportdesk.events.models import Via
from supportdesk.tickets import services
from supportdesk.tickets.models import Counter, Priority, Tag, Ticket, TicketType
from tests.factories import make_ticket


class SimulatedCrashError(Exception):
    pass


def create_then_crash(requester) -> None:
    with transaction.atomic():
        make_ticket(requester=requester, title="Never saved")
        raise SimulatedCrashError


def test_the_first_ticket_is_number_1000_and_each_next_one_counts_up(bob):
    numbers = [make_ticket(requester=bob).number for _ in range(3)]
    assert numbers == [1000, 1001, 1002]


def test_a_rolled_back_create_leaves_no_ticket_and_numbers_keep_increasing(bob):
    first = make_ticket(requester=bob)
    with pytest.raises(SimulatedCrashError):
        create_then_crash(bob)
    assert not Ticket.objects.filter(title="Never saved").exists()
    later = make_ticket(requester=bob)
    assert later.number > first.number
    assert Ticket.objects.filter(number=later.number).count() == 1


def test_a_refused_create_takes_no_number(bob):
    make_ticket(requester=bob)
    with pytest.raises(InvalidChange):
        make_ticket(requester=bob, type="no-such-type")
    assert make_ticket(requester=bob).number == 1001


def test_the_number_column_refuses_a_duplicate(bob):
    ticket = make_ticket(requester=bob)
    clone = Ticket.objects.get(pk=ticket.pk)
    clone.pk = None
    with pytest.raises(IntegrityError), transaction.atomic():
        clone.save()


def test_a_missing_counter_starts_after_the_highest_stored_number(bob):
    ticket = make_ticket(requester=bob)
    Ticket.objects.filter(pk=ticket.pk).update(number=5000)  # as a bulk import would leave it
    Counter.objects.all().delete()
    assert make_ticket(requester=bob).number == 5001


def test_the_built_in_types_and_priorities_have_fixed_keys_in_rank_order(db):
    assert list(TicketType.objects.values_list("key", flat=True)) == [
        "incident",
        "problem",
        "task",
        "question",
    ]
    assert list(Priority.objects.values_list("key", flat=True)) == [
        "urgent",
        "high",
        "normal",
        "low",
    ]
    assert all(TicketType.objects.values_list("is_builtin", flat=True))
    assert all(Priority.objects.values_list("is_builtin", flat=True))


def test_the_default_tags_exist(db):
    assert set(Tag.objects.values_list("name", flat=True)) >= {
        "Bug",
        "Installation",
        "Feature Request",
        "Help Wanted",
        "Question",
    }


@pytest.mark.parametrize(("model", "key"), [(TicketType, "incident"), (Priority, "urgent")])
def test_a_built_in_entry_cannot_be_deleted(model, key, db):
    entry = model.objects.get(key=key)
    with pytest.raises(ProtectedError):
        entry.delete()
    assert model.objects.filter(key=key).exists()


@pytest.mark.parametrize("model", [TicketType, Priority])
def test_an_added_entry_can_be_deleted(model, db):
    entry = model.objects.create(key="extra", name="Extra", rank=99)
    entry.delete()
    assert not model.objects.filter(key="extra").exists()


def test_a_renamed_built_in_keeps_working_by_its_key(bob):
    TicketType.objects.filter(key="incident").update(name="Outage", rank=1)
    ticket = make_ticket(requester=bob, type="incident")
    assert ticket.type.name == "Outage"
    assert ticket.events.get().changes["type"] == [None, "Outage"]


@pytest.mark.parametrize(
    ("field", "model", "key"), [("type", TicketType, "task"), ("priority", Priority, "low")]
)
def test_a_hidden_entry_is_refused_for_new_tickets(bob, field, model, key):
    model.objects.filter(key=key).update(is_hidden=True)
    with pytest.raises(InvalidChange) as refused:
        make_ticket(requester=bob, **{field: key})
    assert refused.value.field == field
    assert not Ticket.objects.exists()


def test_a_ticket_keeps_a_type_hidden_after_it_was_chosen(bob, alice):
    ticket = make_ticket(requester=bob, type="task")
    TicketType.objects.filter(key="task").update(is_hidden=True)
    # A form re-submits every field: the unchanged hidden type must not block the edit.
    edited = services.update_ticket(
        ticket, acting_user=bob, via=Via.WEB, changes={"type": "task", "title": "Renamed"}
    )
    assert edited.type.key == "task"
    assert edited.title == "Renamed"
    question = make_ticket(requester=bob, type="question")
    with pytest.raises(InvalidChange) as refused:
        services.update_ticket(question, acting_user=alice, via=Via.WEB, changes={"type": "task"})
    assert refused.value.field == "type"


def test_a_ticket_has_many_tags(bob):
    ticket = make_ticket(requester=bob, tags=["Bug", "Installation", "Help Wanted"])
    assert sorted(ticket.tags.values_list("name", flat=True)) == [
        "Bug",
        "Help Wanted",
        "Installation",
    ]


def test_tag_names_match_regardless_of_case(bob):
    ticket = make_ticket(requester=bob, tags=["bug", "FEATURE REQUEST", "Bug"])
    assert sorted(ticket.tags.values_list("name", flat=True)) == ["Bug", "Feature Request"]


def test_a_tag_differing_only_in_case_cannot_be_added(db):
    with pytest.raises(IntegrityError), transaction.atomic():
        Tag.objects.create(name="bug")


def test_customers_cannot_invent_tags_only_admins_add_them(bob):
    with pytest.raises(InvalidChange) as refused:
        make_ticket(requester=bob, tags=["Urgent please"])
    assert refused.value.field == "tags"
    Tag.objects.create(name="Urgent please")
    assert make_ticket(requester=bob, tags=["urgent PLEASE"]).tags.get().name == "Urgent please"


def test_the_admin_offers_no_delete_for_a_built_in_type(dave, client):
    client.force_login(dave)
    builtin = TicketType.objects.get(key="incident")
    added = TicketType.objects.create(key="extra", name="Extra")
    assert client.get(f"/admin/tickets/tickettype/{builtin.pk}/delete/").status_code == 403
    assert client.get(f"/admin/tickets/tickettype/{added.pk}/delete/").status_code == 200
    response = client.get("/admin/tickets/tickettype/")
    assert response.status_code == 200
    assert b"delete_selected" not in response.content
