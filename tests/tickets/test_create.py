"""Opening a ticket: requester and organization, channels, application scope, CCs, Markdown."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile

from supportdesk.accounts.services import deactivate_user
from supportdesk.errors import Forbidden, InvalidChange
from supportdesk.events.models import EventKind, Via
from supportdesk.tickets import services
from supportdesk.tickets.models import Channel, Status, Ticket
from supportdesk.tickets.text import render_markdown
from tests.factories import make_app, make_user
from tests.tickets.html_safety import active_parts, links


def open_ticket(acting_user, **fields):
    values = {"via": Via.WEB, "type": "incident", "priority": "normal", "title": "Shop is down"}
    return services.create_ticket(acting_user=acting_user, **{**values, **fields})


def test_a_customers_ticket_is_their_own_and_their_organizations(bob):
    ticket = open_ticket(bob, description="Since 9:00.")
    assert ticket.requester == bob
    assert ticket.organization == bob.organization
    assert ticket.created_by == bob
    assert ticket.last_updated_by == bob
    assert ticket.status == Status.OPEN
    assert ticket.channel == Channel.WEB
    assert ticket.version == 1
    event = ticket.events.get()
    assert event.kind == EventKind.CREATED
    assert event.actor == bob
    assert event.changes["title"] == [None, "Shop is down"]


def test_an_agent_opens_a_ticket_for_a_customer(alice, bob):
    ticket = open_ticket(alice, requester=bob)
    assert ticket.requester == bob
    assert ticket.organization == bob.organization
    assert ticket.created_by == alice


def test_an_agent_must_name_the_customer(alice):
    with pytest.raises(InvalidChange) as refused:
        open_ticket(alice)
    assert refused.value.field == "requester"
    assert not Ticket.objects.exists()


@pytest.mark.parametrize("requester", ["alice", "dave", "deactivated"])
def test_the_requester_must_be_an_active_customer(alice, dave, bob, requester):
    if requester == "deactivated":
        deactivate_user(bob)
    chosen = {"alice": alice, "dave": dave, "deactivated": bob}[requester]
    with pytest.raises(InvalidChange) as refused:
        open_ticket(alice, requester=chosen)
    assert refused.value.field == "requester"
    assert not Ticket.objects.exists()


def test_a_customer_cannot_open_a_ticket_for_someone_else(bob, carol):
    colleague = make_user("eve@acme.test", org=bob.organization)
    for other in (carol, colleague):
        with pytest.raises(Forbidden) as refused:
            open_ticket(bob, requester=other)
        assert refused.value.field == "requester"
    assert not Ticket.objects.exists()


def test_a_deactivated_user_cannot_open_tickets(bob):
    deactivate_user(bob)
    with pytest.raises(Forbidden):
        open_ticket(bob)
    assert not Ticket.objects.exists()


@pytest.mark.parametrize("channel", [Channel.PHONE, Channel.CHAT])
def test_an_agent_logs_a_call_or_chat_as_a_ticket(alice, bob, channel):
    ticket = open_ticket(alice, requester=bob, channel=channel)
    assert ticket.channel == channel
    assert ticket.requester == bob


@pytest.mark.parametrize("channel", [Channel.PHONE, Channel.CHAT, Channel.EMAIL])
def test_a_customer_may_not_set_the_channel(bob, channel):
    with pytest.raises(Forbidden) as refused:
        open_ticket(bob, channel=channel)
    assert refused.value.field == "channel"
    assert not Ticket.objects.exists()


def test_an_unknown_channel_is_refused(alice, bob):
    with pytest.raises(InvalidChange) as refused:
        open_ticket(alice, requester=bob, channel="pigeon")
    assert refused.value.field == "channel"


@pytest.mark.parametrize(("via", "channel"), [(Via.API, Channel.API), (Via.EMAIL, Channel.EMAIL)])
def test_the_channel_defaults_to_the_adapters(bob, via, channel):
    assert open_ticket(bob, via=via).channel == channel


def test_the_application_and_environments_are_of_the_organization(bob, shop):
    production = shop.environments.get(name="Production")
    ticket = open_ticket(bob, application=shop.pk, environments=[production.pk])
    assert ticket.application == shop
    assert list(ticket.environments.all()) == [production]


def test_no_application_means_all(bob, shop):
    ticket = open_ticket(bob)
    assert ticket.application is None
    assert not ticket.environments.exists()


def test_another_organizations_application_is_refused(bob, globex_app):
    with pytest.raises(InvalidChange) as refused:
        open_ticket(bob, application=globex_app.pk)
    assert refused.value.field == "application"
    assert not Ticket.objects.exists()


def test_another_organizations_environment_is_refused_and_nothing_created(bob, shop, globex_app):
    foreign = globex_app.environments.get()
    with pytest.raises(InvalidChange) as refused:
        open_ticket(bob, application=shop.pk, environments=[foreign.pk])
    assert refused.value.field == "environments"
    assert not Ticket.objects.exists()


def test_an_environment_of_another_application_is_refused(bob, shop):
    other = make_app(bob.organization, "Warehouse", environments=("Test",))
    with pytest.raises(InvalidChange) as refused:
        open_ticket(bob, application=shop.pk, environments=[other.environments.get().pk])
    assert refused.value.field == "environments"


def test_environments_need_their_application(bob, shop):
    with pytest.raises(InvalidChange) as refused:
        open_ticket(bob, environments=[shop.environments.first().pk])
    assert refused.value.field == "environments"


def test_ccs_are_users_or_plain_addresses(bob):
    colleague = make_user("eve@acme.test", org=bob.organization)
    ticket = open_ticket(bob, ccs=["EVE@acme.test", "ops@example.org", "Ops@Example.org"])
    ccs = {cc.email.lower(): cc.user for cc in ticket.ccs.all()}
    assert ccs == {"eve@acme.test": colleague, "ops@example.org": None}


def test_a_bad_cc_address_is_refused(bob):
    with pytest.raises(InvalidChange) as refused:
        open_ticket(bob, ccs=["not an address"])
    assert refused.value.field == "ccs"
    assert not Ticket.objects.exists()


def test_files_attached_at_creation_are_stored_with_the_ticket(bob):
    ticket = open_ticket(bob, attachments=[ContentFile(b"trace", name="../../etc/trace.txt")])
    attachment = ticket.attachments.get()
    assert attachment.filename == "trace.txt"
    assert attachment.size == 5
    assert attachment.response is None
    assert attachment.file.read() == b"trace"
    assert ticket.events.get().changes["attachments"] == [None, ["trace.txt"]]


def test_the_description_is_kept_as_typed_and_rendered_sanitized(bob):
    typed = "Click [here](https://example.org) <script>alert(1)</script> [x](javascript:alert(1))"
    ticket = open_ticket(bob, description=typed)
    ticket.refresh_from_db()
    assert ticket.description == typed
    html = render_markdown(ticket.description)
    assert active_parts(html) == []
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # shown as typed, inert
    assert links(html) == [
        {"href": "https://example.org", "rel": "noopener noreferrer nofollow"},
    ]
