"""Tickets through the API: create, read, edit, re-open, list, history."""

from __future__ import annotations

import pytest

from supportdesk.events.models import EventKind, Via
from supportdesk.tickets import services
from supportdesk.tickets.models import Status, Ticket
from tests.api.conftest import api_client
from tests.factories import make_ticket

NEW = {"type": "incident", "priority": "high", "title": "Checkout down", "description": "500s"}


def test_a_customer_creates_a_ticket_and_reads_it_back(as_bob, bob):
    created = as_bob.post("/tickets", NEW)
    assert created.status_code == 201, created.content
    number = created.json()["number"]
    assert created["Location"].endswith(f"/tickets/{number}")
    ticket = Ticket.objects.get(number=number)
    assert (ticket.requester, ticket.channel) == (bob, "api")
    assert ticket.events.get().via == Via.API
    got = as_bob.get(f"/tickets/{number}")
    assert got.status_code == 200
    assert got.json()["title"] == "Checkout down"
    assert got["ETag"] == f'"{number}-1"'


def test_the_create_answer_is_exactly_what_a_read_returns(as_bob, bob, shop):
    """The create answer is built from the service's ticket, not read back: it must agree."""
    production = shop.environments.get(name="Production")
    body = {
        **NEW, "application": shop.pk, "environments": [production.pk], "tags": ["Bug"],
        "ccs": ["ops@example.org", bob.email],
    }  # fmt: skip
    created = as_bob.post("/tickets", body)
    assert created.status_code == 201, created.content
    got = as_bob.get(f"/tickets/{created.json()['number']}")
    assert created.json() == got.json()


def test_an_agent_opens_a_ticket_for_a_customer_by_email(as_alice, bob):
    created = as_alice.post("/tickets", {**NEW, "requester": bob.email})
    assert created.status_code == 201, created.content
    assert created.json()["requester"]["email"] == bob.email


def test_an_agent_must_name_an_existing_customer(as_alice):
    created = as_alice.post("/tickets", {**NEW, "requester": "nobody@example.test"})
    assert created.status_code == 422
    assert created.json()["errors"][0]["field"] == "requester"


def test_a_customer_cannot_open_a_ticket_for_someone_else(as_bob, carol):
    for email in (carol.email, "nobody@example.test"):
        response = as_bob.post("/tickets", {**NEW, "requester": email})
        assert response.status_code == 403
        assert response["Content-Type"] == "application/problem+json"


def test_another_organizations_ticket_is_404_on_every_endpoint(bob, as_carol):
    ticket = make_ticket(requester=bob)
    n = ticket.number
    assert as_carol.get(f"/tickets/{n}").status_code == 404
    assert as_carol.patch(f"/tickets/{n}", {"title": "mine"}).status_code == 404
    assert as_carol.post(f"/tickets/{n}/reopen").status_code == 404
    assert as_carol.get(f"/tickets/{n}/events").status_code == 404
    assert as_carol.get(f"/tickets/{n}/responses").status_code == 404
    assert as_carol.post(f"/tickets/{n}/responses", {"body": "hi"}).status_code == 404
    assert as_carol.get(f"/tickets/{n}/attachments").status_code == 404
    listed = as_carol.get("/tickets", {"view": "all", "q": str(n)}).json()["items"]
    assert listed == []
    ticket.refresh_from_db()
    assert (ticket.title, ticket.version, ticket.responses.count()) == ("Cannot log in", 1, 0)


@pytest.mark.parametrize("number", [1, 999, 99999999, 2**40])
def test_numbers_that_do_not_exist_are_404(as_alice, number):
    response = as_alice.get(f"/tickets/{number}")
    assert response.status_code == 404
    assert response.json()["status"] == 404


def test_patch_changes_only_the_fields_sent(as_bob, bob):
    ticket = make_ticket(requester=bob, description="keep me")
    response = as_bob.patch(f"/tickets/{ticket.number}", {"title": "New title"})
    assert response.status_code == 200, response.content
    ticket.refresh_from_db()
    assert (ticket.title, ticket.description, ticket.version) == ("New title", "keep me", 2)
    assert response["ETag"] == f'"{ticket.number}-2"'


def test_a_customer_cannot_change_the_status_but_an_agent_can(as_bob, as_alice, bob, alice):
    ticket = make_ticket(requester=bob)
    refused = as_bob.patch(f"/tickets/{ticket.number}", {"status": "closed"})
    assert refused.status_code == 403
    assert refused.json()["errors"] == [{"field": "status", "detail": refused.json()["detail"]}]
    changed = as_alice.patch(
        f"/tickets/{ticket.number}", {"status": "pending", "assignee": alice.pk}
    )
    assert changed.status_code == 200, changed.content
    ticket.refresh_from_db()
    assert (ticket.status, ticket.assignee) == (Status.PENDING, alice)


def test_a_stale_if_match_gets_412_and_changes_nothing(as_bob, bob):
    ticket = make_ticket(requester=bob)
    etag = as_bob.get(f"/tickets/{ticket.number}")["ETag"]
    assert (
        as_bob.patch(f"/tickets/{ticket.number}", {"title": "one"}, HTTP_IF_MATCH=etag).status_code
        == 200
    )
    stale = as_bob.patch(f"/tickets/{ticket.number}", {"title": "two"}, HTTP_IF_MATCH=etag)
    assert stale.status_code == 412
    assert stale["Content-Type"] == "application/problem+json"
    assert stale.json()["changed"] == ["title"]
    ticket.refresh_from_db()
    assert (ticket.title, ticket.version) == ("one", 2)
    other = as_bob.patch(f"/tickets/{ticket.number}", {"title": "x"}, HTTP_IF_MATCH='"1-2"')
    assert other.status_code == 412


def test_reopen_is_the_one_status_change_a_customer_makes(as_bob, bob, alice):
    ticket = make_ticket(requester=bob, status=Status.RESOLVED, agent=alice)
    response = as_bob.post(f"/tickets/{ticket.number}/reopen")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "open"
    assert as_bob.post(f"/tickets/{ticket.number}/reopen").status_code == 422
    assert ticket.events.latest("id").kind == EventKind.REOPENED


def test_history_hides_internal_events_from_customers(as_bob, as_alice, bob, alice):
    ticket = make_ticket(requester=bob)
    services.add_response(ticket, acting_user=alice, via=Via.WEB, body="secret", internal=True)
    customer = [e["kind"] for e in as_bob.get(f"/tickets/{ticket.number}/events").json()]
    agent = [e["kind"] for e in as_alice.get(f"/tickets/{ticket.number}/events").json()]
    assert customer == ["created"]
    assert agent == ["created", "note_added"]


def test_read_only_tokens_read_but_never_write(bob):
    ticket = make_ticket(requester=bob)
    client = api_client(bob, read_only=True)
    assert client.get(f"/tickets/{ticket.number}").status_code == 200
    assert client.post("/tickets", NEW).status_code == 403
    assert client.patch(f"/tickets/{ticket.number}", {"title": "x"}).status_code == 403
    assert Ticket.objects.count() == 1
