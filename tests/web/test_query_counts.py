"""List pages and the ticket page cost the same number of queries for 3 rows as for 30."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.db import connection
from django.test.utils import CaptureQueriesContext

from supportdesk.events.models import Via
from supportdesk.tickets import services
from tests.factories import make_ticket


def queries_for(client, url: str) -> int:
    with CaptureQueriesContext(connection) as context:
        response = client.get(url)
    assert response.status_code == 200
    return len(context.captured_queries)


def add_tickets(count: int, *, requester, shop, agent) -> None:
    for number in range(count):
        ticket = make_ticket(
            requester=requester,
            title=f"Ticket {number}",
            tags=["Bug", "Question"],
            application=shop.pk,
            environments=[shop.environments.first().pk],
            ccs=["ops@example.org"],
        )
        services.update_ticket(
            ticket, acting_user=agent, via=Via.WEB, changes={"assignee": agent.pk}
        )


@pytest.mark.parametrize("url", ["/tickets/", "/tickets/?view=all&q=Ticket&tag=Bug"])
def test_the_customer_panel(as_bob, bob, alice, shop, url):
    add_tickets(3, requester=bob, shop=shop, agent=alice)
    few = queries_for(as_bob, url)
    add_tickets(27, requester=bob, shop=shop, agent=alice)
    assert queries_for(as_bob, url) == few


@pytest.mark.parametrize("queue", ["unassigned", "mine", "urgent", "open", "all"])
def test_each_agent_queue(as_alice, alice, bob, shop, queue):
    url = f"/agent/{queue}/"
    add_tickets(3, requester=bob, shop=shop, agent=alice)
    make_ticket(requester=bob, priority="urgent")
    few = queries_for(as_alice, url)
    add_tickets(27, requester=bob, shop=shop, agent=alice)
    for _ in range(27):
        make_ticket(requester=bob, priority="urgent")
    assert queries_for(as_alice, url) == few


def add_conversation(ticket, count: int, *, customer, agent) -> None:
    for number in range(count):
        author = agent if number % 2 else customer
        services.add_response(
            ticket,
            acting_user=author,
            via=Via.WEB,
            body=f"Message {number}",
            internal=author is agent and number % 4 == 1,
            attachments=[ContentFile(b"log", name=f"log{number}.txt")],
        )
        services.update_ticket(
            ticket, acting_user=agent, via=Via.WEB, changes={"tags": ["Bug"] if number % 2 else []}
        )


@pytest.mark.parametrize("persona", ["bob", "alice"])
def test_the_ticket_page(request, bob, alice, persona):
    client = request.getfixturevalue(f"as_{persona}")
    problem = make_ticket(requester=bob, type="problem")
    ticket = make_ticket(
        requester=bob, type="incident", attachments=[ContentFile(b"x", name="a.txt")]
    )
    services.update_ticket(
        ticket, acting_user=alice, via=Via.WEB, changes={"problem": problem.number}
    )
    add_conversation(ticket, 3, customer=bob, agent=alice)
    url = f"/tickets/{ticket.number}/"
    few = queries_for(client, url)
    add_conversation(ticket, 27, customer=bob, agent=alice)
    assert queries_for(client, url) == few
