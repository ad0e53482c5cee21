"""Responses and internal notes; calls and chats logged by agents for customers."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile

from supportdesk.errors import Forbidden, InvalidChange
from supportdesk.events.models import EventKind, Via
from supportdesk.tickets import services
from supportdesk.tickets.models import Channel, Response, Status, Ticket
from tests.factories import make_user


def respond(ticket, user, body="Any news?", **fields):
    return services.add_response(ticket, acting_user=user, via=Via.WEB, body=body, **fields)


def test_a_requesters_response_moves_a_pending_ticket_to_open(bob, pending_ticket):
    version = pending_ticket.version
    respond(pending_ticket, bob)
    ticket = Ticket.objects.get(pk=pending_ticket.pk)
    assert ticket.status == Status.OPEN
    assert ticket.version == version + 1
    event = ticket.events.latest("id")
    assert event.kind == EventKind.RESPONSE_ADDED
    assert event.changes["status"] == ["Pending", "Open"]
    assert event.version == ticket.version


def test_a_colleagues_response_also_moves_it_to_open(bob, pending_ticket):
    respond(pending_ticket, make_user("eve@acme.test", org=bob.organization))
    assert Ticket.objects.get(pk=pending_ticket.pk).status == Status.OPEN


@pytest.mark.parametrize("internal", [False, True])
def test_an_agents_response_leaves_a_pending_ticket_pending(alice, pending_ticket, internal):
    respond(pending_ticket, alice, body="We are on it", internal=internal)
    ticket = Ticket.objects.get(pk=pending_ticket.pk)
    assert ticket.status == Status.PENDING
    assert ticket.version == pending_ticket.version
    assert "status" not in ticket.events.latest("id").changes


def test_a_response_on_an_open_ticket_changes_no_status(bob, ticket):
    respond(ticket, bob)
    saved = Ticket.objects.get(pk=ticket.pk)
    assert (saved.status, saved.version) == (Status.OPEN, 1)
    assert saved.last_updated_by == bob


def test_a_customer_cannot_write_an_internal_note(bob, ticket):
    with pytest.raises(Forbidden) as refused:
        respond(ticket, bob, internal=True)
    assert refused.value.field == "internal"
    assert not Response.objects.exists()


def test_an_internal_note_is_recorded_as_internal(alice, ticket):
    note = respond(ticket, alice, body="Check the SSO logs", internal=True)
    event = ticket.events.latest("id")
    assert note.is_internal
    assert (event.kind, event.is_internal, event.response) == (EventKind.NOTE_ADDED, True, note)


@pytest.mark.parametrize("channel", [Channel.PHONE, Channel.CHAT])
def test_an_agent_logs_a_call_or_chat_for_the_customer(alice, bob, pending_ticket, channel):
    response = respond(
        pending_ticket, alice, body="Customer called", channel=channel, on_behalf_of=bob
    )
    assert (response.author, response.logged_by, response.channel) == (bob, alice, channel)
    assert Ticket.objects.get(pk=pending_ticket.pk).status == Status.OPEN  # the customer spoke


def test_a_customer_cannot_log_for_someone_else_or_set_a_channel(bob, ticket):
    colleague = make_user("eve@acme.test", org=bob.organization)
    with pytest.raises(Forbidden) as refused:
        respond(ticket, bob, on_behalf_of=colleague)
    assert refused.value.field == "on_behalf_of"
    with pytest.raises(Forbidden) as refused:
        respond(ticket, bob, channel=Channel.PHONE)
    assert refused.value.field == "channel"
    assert not Response.objects.exists()


def test_calls_are_logged_for_customers_of_the_tickets_organization_only(alice, carol, ticket):
    with pytest.raises(InvalidChange) as refused:
        respond(ticket, alice, on_behalf_of=carol, channel=Channel.PHONE)
    assert refused.value.field == "on_behalf_of"


def test_an_internal_note_cannot_be_logged_for_a_customer(alice, bob, ticket):
    with pytest.raises(InvalidChange) as refused:
        respond(ticket, alice, internal=True, on_behalf_of=bob)
    assert refused.value.field == "on_behalf_of"


def test_a_response_carries_its_attachments(bob, ticket):
    response = respond(ticket, bob, attachments=[ContentFile(b"png", name="screen.png")])
    attachment = response.attachments.get()
    assert (attachment.filename, attachment.content_type) == ("screen.png", "image/png")
    assert ticket.events.latest("id").changes["attachments"] == [None, ["screen.png"]]


def test_attachments_are_added_to_the_ticket_itself(bob, ticket):
    stored = services.add_attachments(
        ticket,
        [ContentFile(b"1", name="a.txt"), ContentFile(b"2", name="b.txt")],
        acting_user=bob,
        via=Via.WEB,
    )
    assert [a.filename for a in stored] == ["a.txt", "b.txt"]
    assert all(a.response is None for a in stored)
    assert ticket.events.latest("id").kind == EventKind.ATTACHMENT_ADDED


def test_adding_no_attachment_is_refused(bob, ticket):
    with pytest.raises(InvalidChange) as refused:
        services.add_attachments(ticket, [], acting_user=bob, via=Via.WEB)
    assert refused.value.field == "attachments"
