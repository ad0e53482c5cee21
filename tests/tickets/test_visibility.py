"""A customer sees their organization's tickets only; every service answers NotFound otherwise."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile

from supportdesk.accounts.services import deactivate_user
from supportdesk.errors import NotFound
from supportdesk.events.models import Event, EventKind, Via
from supportdesk.tickets import queries, services
from supportdesk.tickets.access import access_attachment, access_ticket, visible_tickets
from supportdesk.tickets.models import Attachment, Response, Status
from tests.factories import make_ticket, make_user


def test_a_customer_sees_their_organizations_tickets_only(bob, carol):
    own = make_ticket(requester=bob)
    colleagues = make_ticket(requester=make_user("eve@acme.test", org=bob.organization))
    others = make_ticket(requester=carol)
    assert set(visible_tickets(bob)) == {own, colleagues}
    assert set(visible_tickets(carol)) == {others}


def test_agents_and_admins_see_every_ticket(alice, dave, bob, carol):
    tickets = {make_ticket(requester=bob), make_ticket(requester=carol)}
    assert set(visible_tickets(alice)) == tickets
    assert set(visible_tickets(dave)) == tickets


def test_a_deactivated_user_sees_nothing(alice, bob):
    make_ticket(requester=bob)
    deactivate_user(alice)
    assert not visible_tickets(alice).exists()


def test_another_organizations_ticket_is_not_found_like_a_missing_one(bob, carol, ticket):
    with pytest.raises(NotFound) as other:
        access_ticket(carol, ticket.number)
    with pytest.raises(NotFound) as missing:
        access_ticket(carol, 999_999)
    assert str(other.value) == f"No ticket #{ticket.number}."
    assert str(missing.value) == "No ticket #999999."


@pytest.mark.parametrize("number", ["abc", "1000\x00", None, 10**30])
def test_a_malformed_number_is_not_found(alice, ticket, number):
    with pytest.raises(NotFound):
        access_ticket(alice, number)


def test_closed_and_resolved_tickets_stay_visible(bob, alice):
    closed = make_ticket(requester=bob, status=Status.CLOSED, agent=alice)
    resolved = make_ticket(requester=bob, status=Status.RESOLVED, agent=alice)
    assert set(visible_tickets(bob)) == {closed, resolved}
    assert access_ticket(bob, closed.number) == closed
    assert set(queries.customer_panel(bob, "closed")) == {closed, resolved}


def update(ticket, user):
    services.update_ticket(ticket, acting_user=user, via=Via.WEB, changes={"title": "Mine now"})


def reopen(ticket, user):
    services.reopen_ticket(ticket, acting_user=user, via=Via.WEB)


def respond(ticket, user):
    services.add_response(ticket, acting_user=user, via=Via.WEB, body="Me too")


def attach(ticket, user):
    services.add_attachments(
        ticket, [ContentFile(b"x", name="x.txt")], acting_user=user, via=Via.WEB
    )


def download(ticket, user):
    access_attachment(user, ticket.number, ticket.attachments.get().pk)


@pytest.mark.parametrize("action", [update, reopen, respond, attach, download])
def test_every_service_answers_not_found_to_another_organization(action, bob, carol, alice):
    ticket = make_ticket(
        requester=bob,
        status=Status.CLOSED,
        agent=alice,
        attachments=[ContentFile(b"a", name="a.txt")],
    )
    events = Event.objects.count()
    with pytest.raises(NotFound):
        action(ticket, carol)
    ticket.refresh_from_db()
    assert ticket.title == "Cannot log in"
    assert ticket.status == Status.CLOSED
    assert Event.objects.count() == events
    assert not Response.objects.exists()
    assert Attachment.objects.count() == 1


@pytest.mark.parametrize("action", [update, reopen, respond, attach, download])
def test_every_service_serves_the_same_organization(action, bob, alice):
    ticket = make_ticket(
        requester=bob,
        status=Status.CLOSED,
        agent=alice,
        attachments=[ContentFile(b"a", name="a.txt")],
    )
    action(ticket, make_user("eve@acme.test", org=bob.organization))


def test_internal_notes_are_hidden_from_customers(bob, alice, ticket):
    public = services.add_response(ticket, acting_user=alice, via=Via.WEB, body="Try again")
    note = services.add_response(
        ticket, acting_user=alice, via=Via.WEB, body="Their SSO is broken", internal=True
    )
    assert list(queries.conversation(bob, ticket)) == [public]
    assert list(queries.conversation(alice, ticket)) == [public, note]


def test_internal_history_events_are_hidden_from_customers(bob, alice, ticket):
    services.add_response(ticket, acting_user=alice, via=Via.WEB, body="Note", internal=True)
    assert EventKind.NOTE_ADDED not in {e.kind for e in queries.history(bob, ticket)}
    assert EventKind.NOTE_ADDED in {e.kind for e in queries.history(alice, ticket)}


def test_an_internal_notes_files_are_agents_only(bob, alice, ticket):
    note = services.add_response(
        ticket,
        acting_user=alice,
        via=Via.WEB,
        body="Dump attached",
        internal=True,
        attachments=[ContentFile(b"core", name="core.txt")],
    )
    attachment = note.attachments.get()
    assert access_attachment(alice, ticket.number, attachment.pk) == attachment
    with pytest.raises(NotFound):
        access_attachment(bob, ticket.number, attachment.pk)


def test_an_attachment_is_found_only_through_its_own_ticket(bob, alice):
    first = make_ticket(requester=bob, attachments=[ContentFile(b"a", name="a.txt")])
    second = make_ticket(requester=bob)
    with pytest.raises(NotFound):
        access_attachment(bob, second.number, first.attachments.get().pk)
