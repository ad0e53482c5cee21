"""Demo data: made through the services, covering every kind of ticket, seeded only once."""

from __future__ import annotations

import pytest

from supportdesk.accounts.models import Application, Organization, User
from supportdesk.demo import demo_logins, seed_demo
from supportdesk.events.models import Event
from supportdesk.tickets.models import Priority, Response, Status, Ticket, TicketCC, TicketType
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def test_seed_demo_fills_an_empty_database_with_every_kind_of_ticket():
    logins = seed_demo()

    assert logins == demo_logins()
    assert {role for _email, _password, role in logins} == {"admin", "agent", "customer"}
    for email, password, role in logins:
        user = User.objects.get(email=email)
        assert user.check_password(password)
        assert user.role == role
    assert Organization.objects.count() >= 2
    assert Application.objects.filter(environments__isnull=False).exists()

    tickets = Ticket.objects.all()
    assert 24 <= tickets.count() <= 60
    assert set(tickets.values_list("type__key", flat=True)) == set(
        TicketType.objects.values_list("key", flat=True)
    )
    assert set(tickets.values_list("priority__key", flat=True)) == set(
        Priority.objects.values_list("key", flat=True)
    )
    assert set(tickets.values_list("status", flat=True)) == set(Status.values)
    assert tickets.filter(problem__isnull=False, type__key="incident").exists()
    assert tickets.filter(tags__isnull=False).exists()
    assert tickets.filter(channel="phone").exists()
    assert Response.objects.filter(is_internal=True).exists()
    assert Response.objects.filter(is_internal=False, author__role="customer").exists()
    assert TicketCC.objects.exists()
    # Made through the services: every ticket has its history.
    assert not tickets.filter(events__isnull=True).exists()
    assert Event.objects.filter(kind="reopened").exists()


def test_demo_addresses_use_reserved_domains_only():
    seed_demo()
    addresses = list(User.objects.values_list("email", flat=True))
    addresses += list(TicketCC.objects.values_list("email", flat=True))
    assert addresses
    for address in addresses:
        assert address.endswith((".test", "@example.com")), address


def test_incidents_link_to_a_problem_of_their_own_organization():
    seed_demo()
    linked = Ticket.objects.filter(problem__isnull=False).select_related("problem")
    assert linked
    for incident in linked:
        assert incident.problem.type.key == "problem"
        assert incident.problem.organization_id == incident.organization_id


def test_seeding_again_adds_nothing_and_still_returns_the_logins():
    seed_demo()
    counts = (User.objects.count(), Ticket.objects.count(), Response.objects.count())
    assert seed_demo() == demo_logins()
    assert (User.objects.count(), Ticket.objects.count(), Response.objects.count()) == counts


def test_a_database_with_other_data_is_left_alone():
    make_user("someone@example.com", role="agent")
    assert seed_demo() == []
    assert User.objects.count() == 1
    assert not Ticket.objects.exists()
