"""The admin's outbox page: failed and stuck runs first, filters, retry and discard."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from supportdesk.events.models import Event, EventKind, HandlerRun, RunState, Via
from tests.events.runs import make_run
from tests.factories import make_ticket

URL = "/admin/events/handlerrun/"


@pytest.fixture
def as_dave(dave):
    client = Client()
    client.force_login(dave)
    return client


@pytest.fixture
def runs(bob):
    """One run in each state a page must tell apart, on one of bob's tickets."""
    ticket = make_ticket(requester=bob)
    HandlerRun.objects.all().delete()  # the ticket's own (mail on create): not under test
    event = Event.objects.create(ticket=ticket, kind=EventKind.RESPONSE_ADDED, via=Via.WEB)
    now = timezone.now()
    return {
        "done": make_run(handler="mail_a", event=event, state=RunState.DONE, attempts=1),
        "waiting": make_run(handler="mail_b", event=event, due_at=now - timedelta(hours=1)),
        "failed": make_run(
            handler="mail_c",
            event=event,
            state=RunState.FAILED,
            attempts=10,
            last_error="550 5.1.1 <nobody@example.org>: Recipient address rejected " + "x" * 300,
        ),
        "stuck": make_run(
            handler="page_d",
            event=event,
            state=RunState.RUNNING,
            attempts=1,
            lease_until=now - timedelta(minutes=1),
        ),
        "running": make_run(
            handler="page_e",
            event=event,
            state=RunState.RUNNING,
            attempts=1,
            lease_until=now + timedelta(minutes=4),
        ),
    }


def listed(response) -> list[str]:
    """The handlers in the order the page lists them."""
    return [run.handler for run in response.context["cl"].result_list]


def test_the_list_puts_failed_then_stuck_runs_first_and_says_what_and_why(as_dave, runs):
    response = as_dave.get(URL)
    assert response.status_code == 200
    assert listed(response)[:2] == ["mail_c", "page_d"]
    assert set(listed(response)) == {run.handler for run in runs.values()}
    text = response.content.decode()
    ticket_number = runs["failed"].event.ticket.number
    assert f"#{ticket_number}" in text
    assert "Added a response" in text
    assert "Stuck (lease expired)" in text
    assert "550 5.1.1 &lt;nobody@example.org&gt;: Recipient address rejected" in text
    assert "x" * 100 not in text  # the error is cut short in the list


def test_the_list_costs_the_same_for_few_and_many_runs(
    as_dave, runs, django_assert_max_num_queries
):
    as_dave.get(URL)  # warm the session and the content types

    with CaptureQueriesContext(connection) as few:
        as_dave.get(URL)
    event = runs["done"].event
    for index in range(20):
        make_run(handler=f"more_{index}", event=event, state=RunState.FAILED)
    with CaptureQueriesContext(connection) as many:
        as_dave.get(URL)
    assert len(many) == len(few)


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("failed", ["mail_c"]),
        ("stuck", ["page_d"]),
        ("running", ["page_d", "page_e"]),
        ("pending", ["mail_b"]),
        ("done", ["mail_a"]),
    ],
)
def test_the_state_filter_includes_stuck(as_dave, runs, state, expected):
    response = as_dave.get(URL, {"state": state})
    assert sorted(listed(response)) == expected


def test_the_handler_filter(as_dave, runs):
    response = as_dave.get(URL, {"handler": "page_e"})
    assert listed(response) == ["page_e"]
    assert "mail_c" in response.content.decode()  # offered as a choice


def act(client, action: str, *selected: HandlerRun, follow: bool = True):
    return client.post(
        URL,
        {"action": action, "_selected_action": [run.pk for run in selected], "index": "0"},
        follow=follow,
    )


def test_retry_requeues_failed_runs_and_says_how_many(as_dave, runs):
    response = act(as_dave, "retry_runs", runs["failed"], runs["done"])
    failed, done = (HandlerRun.objects.get(pk=runs[name].pk) for name in ("failed", "done"))
    assert (failed.state, failed.attempts) == (RunState.PENDING, 0)
    assert done.state == RunState.DONE
    shown = [str(message) for message in response.context["messages"]]
    assert "1 run retried." in shown
    assert "1 run left as they were: only failed or discarded runs can be retried." in shown


def test_discard_gives_up_on_failed_and_waiting_runs(as_dave, runs):
    response = act(as_dave, "discard_runs", runs["failed"], runs["waiting"], runs["running"])
    states = {
        name: HandlerRun.objects.get(pk=runs[name].pk).state
        for name in ("failed", "waiting", "running")
    }
    assert states == {
        "failed": RunState.DISCARDED,
        "waiting": RunState.DISCARDED,
        "running": RunState.RUNNING,
    }
    assert "2 runs discarded." in [str(message) for message in response.context["messages"]]


def test_runs_cannot_be_added_edited_or_deleted_by_hand(as_dave, runs):
    run = runs["failed"]
    page = as_dave.get(f"{URL}{run.pk}/change/")
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    as_dave.post(f"{URL}{run.pk}/change/", {"state": RunState.DONE, "attempts": 0})
    assert as_dave.get(f"{URL}add/").status_code == 403
    assert as_dave.post(f"{URL}{run.pk}/delete/", {"post": "yes"}).status_code == 403
    run.refresh_from_db()
    assert (run.state, run.attempts) == (RunState.FAILED, 10)


@pytest.mark.parametrize("persona", ["alice", "bob", None])
def test_agents_customers_and_visitors_are_sent_to_the_admin_login(request, runs, persona):
    client = Client()
    if persona is not None:
        client.force_login(request.getfixturevalue(persona))
    for response in (client.get(URL), act(client, "retry_runs", runs["failed"], follow=False)):
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")
    assert HandlerRun.objects.get(pk=runs["failed"].pk).state == RunState.FAILED


@pytest.mark.parametrize("page", ["/admin/events/schedule/", "/admin/events/workerheartbeat/"])
def test_the_schedule_and_heartbeat_pages_are_read_only(as_dave, db, page):
    assert as_dave.get(page).status_code == 200
    assert as_dave.get(f"{page}add/").status_code == 403
