from __future__ import annotations

import pytest

from supportdesk.tickets.models import Status
from tests.factories import make_app, make_ticket, make_user
from tests.web.pages import edit_form_data, logged_in


def numbers(response) -> set[int]:
    return {ticket.number for ticket in response.context["rows"]}


@pytest.fixture
def bobs_tickets(bob, alice):
    return {
        "open": make_ticket(requester=bob, title="Printer on fire"),
        "pending": make_ticket(requester=bob, status=Status.PENDING, title="Disk full"),
        "resolved": make_ticket(requester=bob, status=Status.RESOLVED, title="Old outage"),
        "closed": make_ticket(requester=bob, status=Status.CLOSED, title="Ancient question"),
    }


def test_open_is_the_default_view_and_holds_open_and_pending(as_bob, bobs_tickets):
    response = as_bob.get("/tickets/")
    assert numbers(response) == {bobs_tickets["open"].number, bobs_tickets["pending"].number}


def test_closed_holds_resolved_and_closed_and_all_holds_everything(as_bob, bobs_tickets):
    closed = as_bob.get("/tickets/?view=closed")
    assert numbers(closed) == {bobs_tickets["resolved"].number, bobs_tickets["closed"].number}
    assert numbers(as_bob.get("/tickets/?view=all")) == {t.number for t in bobs_tickets.values()}


def test_a_customer_never_sees_another_organizations_tickets(as_carol, bobs_tickets):
    response = as_carol.get("/tickets/?view=all")
    assert numbers(response) == set()
    assert "Printer on fire" not in response.content.decode()


def test_words_match_title_description_or_number(as_bob, bob, bobs_tickets):
    make_ticket(requester=bob, title="Other", description="the printer jammed")
    assert len(numbers(as_bob.get("/tickets/?view=all&q=printer"))) == 2
    number = bobs_tickets["closed"].number
    assert numbers(as_bob.get(f"/tickets/?view=all&q=%23{number}")) == {number}
    assert numbers(as_bob.get("/tickets/?view=all&q=printer+fire")) == {bobs_tickets["open"].number}


def test_filters_by_type_priority_tag_status_and_application(as_bob, bob, acme):
    shop = make_app(acme, "Shop")
    incident = make_ticket(requester=bob, type="incident")
    urgent = make_ticket(requester=bob, priority="urgent")
    tagged = make_ticket(requester=bob, tags=["Bug"])
    on_shop = make_ticket(requester=bob, application=shop.pk)
    pending = make_ticket(requester=bob, status=Status.PENDING)
    assert numbers(as_bob.get("/tickets/?type=incident")) == {incident.number}
    assert numbers(as_bob.get("/tickets/?priority=urgent")) == {urgent.number}
    assert numbers(as_bob.get("/tickets/?tag=Bug")) == {tagged.number}
    assert numbers(as_bob.get(f"/tickets/?application={shop.pk}")) == {on_shop.number}
    assert numbers(as_bob.get("/tickets/?status=pending")) == {pending.number}


def test_an_invalid_filter_value_is_ignored_not_an_error(as_bob, bobs_tickets):
    response = as_bob.get("/tickets/?type=nonsense&application=abc&page=zzz")
    assert response.status_code == 200
    assert len(numbers(response)) == 2


def test_the_panel_pages_by_25_and_keeps_the_query_in_page_links(as_bob, bob):
    for number in range(27):
        make_ticket(requester=bob, title=f"Ticket {number}")
    first = as_bob.get("/tickets/?q=Ticket")
    assert len(first.context["rows"]) == 25
    html = first.content.decode()
    assert "Page 1 of 2" in html
    assert 'href="?q=Ticket&amp;page=2"' in html
    second = as_bob.get("/tickets/?q=Ticket&page=2")
    assert len(second.context["rows"]) == 2
    assert numbers(first).isdisjoint(numbers(second))


def test_an_empty_panel_says_so_and_offers_to_create_a_ticket(as_bob):
    html = as_bob.get("/tickets/").content.decode()
    assert "No open tickets." in html
    assert 'href="/tickets/new/">Create New Ticket</a>' in html
    assert "<table" not in html


def test_an_empty_search_says_nothing_matches(as_bob, bobs_tickets):
    html = as_bob.get("/tickets/?q=zebra").content.decode()
    assert "No tickets match this search." in html


class TestAgentQueues:
    def test_each_queue_holds_what_its_name_says(self, as_alice, alice, bob):
        unassigned = make_ticket(requester=bob)
        mine = make_ticket(requester=bob)
        as_alice.post(f"/tickets/{mine.number}/edit/", edit_form_data(mine, assignee=alice.pk))
        urgent = make_ticket(requester=bob, priority="urgent")
        closed = make_ticket(requester=bob, status=Status.CLOSED)
        assert numbers(as_alice.get("/agent/unassigned/")) == {unassigned.number, urgent.number}
        assert numbers(as_alice.get("/agent/mine/")) == {mine.number}
        assert numbers(as_alice.get("/agent/urgent/")) == {urgent.number}
        assert numbers(as_alice.get("/agent/open/")) == {
            unassigned.number,
            mine.number,
            urgent.number,
        }
        assert closed.number in numbers(as_alice.get("/agent/all/"))

    def test_agents_see_every_organization(self, as_alice, bob, carol):
        tickets = {make_ticket(requester=bob).number, make_ticket(requester=carol).number}
        assert numbers(as_alice.get("/agent/open/")) == tickets

    def test_an_empty_queue_says_so(self, as_alice):
        assert "No tickets in this queue." in as_alice.get("/agent/mine/").content.decode()

    def test_customers_and_unknown_queues_get_404(self, as_bob, as_alice):
        assert as_bob.get("/agent/unassigned/").status_code == 404
        assert as_alice.get("/agent/nonsense/").status_code == 404

    def test_agents_see_the_queues_in_the_navigation_and_customers_do_not(self, as_alice, as_bob):
        assert 'href="/agent/urgent/"' in as_alice.get("/tickets/").content.decode()
        assert 'href="/agent/urgent/"' not in as_bob.get("/tickets/").content.decode()

    def test_admins_get_an_admin_link(self, dave):
        assert 'href="/admin/"' in logged_in(dave).get("/tickets/").content.decode()
        assert (
            'href="/admin/"'
            not in logged_in(make_user(role="agent")).get("/tickets/").content.decode()
        )
