"""Retries and races: Idempotency-Key and If-Match hold when requests arrive at once."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from supportdesk.api.models import IdempotencyKey
from supportdesk.tickets.models import Response, Ticket
from tests.api.conftest import api_client
from tests.conftest import require
from tests.factories import make_ticket

NEW = {"type": "question", "priority": "normal", "title": "Disk full"}


def test_a_repeated_post_with_the_same_key_returns_the_first_answer(as_bob):
    first = as_bob.post("/tickets", NEW, HTTP_IDEMPOTENCY_KEY="k1")
    again = as_bob.post("/tickets", dict(reversed(NEW.items())), HTTP_IDEMPOTENCY_KEY="k1")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Ticket.objects.count() == 1


def test_the_same_key_with_another_body_is_422(as_bob):
    assert as_bob.post("/tickets", NEW, HTTP_IDEMPOTENCY_KEY="k1").status_code == 201
    other = as_bob.post("/tickets", {**NEW, "title": "Other"}, HTTP_IDEMPOTENCY_KEY="k1")
    assert other.status_code == 422
    assert other["Content-Type"] == "application/problem+json"
    assert Ticket.objects.count() == 1


def test_keys_are_per_user(as_bob, bob, carol):
    as_carol = api_client(carol)
    assert as_bob.post("/tickets", NEW, HTTP_IDEMPOTENCY_KEY="k").status_code == 201
    assert as_carol.post("/tickets", NEW, HTTP_IDEMPOTENCY_KEY="k").status_code == 201
    assert Ticket.objects.count() == 2


def test_a_failed_request_stores_no_key(as_bob):
    assert (
        as_bob.post("/tickets", {**NEW, "type": "x"}, HTTP_IDEMPOTENCY_KEY="k").status_code == 422
    )
    assert not IdempotencyKey.objects.exists()
    assert as_bob.post("/tickets", NEW, HTTP_IDEMPOTENCY_KEY="k").status_code == 201


def test_a_repeated_response_post_adds_one_response(as_bob, bob):
    ticket = make_ticket(requester=bob)
    path = f"/tickets/{ticket.number}/responses"
    first = as_bob.post(path, {"body": "Any news?"}, HTTP_IDEMPOTENCY_KEY="r1")
    again = as_bob.post(path, {"body": "Any news?"}, HTTP_IDEMPOTENCY_KEY="r1")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert Response.objects.count() == 1


def _concurrent_database():
    """Threads need a database that lets connections wait for each other's locks: SQLite's
    shared in-memory database answers "table is locked" at once, so tests/settings.py puts the
    SQLite test database in a file. With CI=true an in-memory one fails instead of skipping."""
    require(
        not (connection.vendor == "sqlite" and connection.is_in_memory_db()),
        "in-memory SQLite cannot serve concurrent connections",
    )


def _in_threads(count, target):
    results = [None] * count
    barrier = threading.Barrier(count)

    def run(i):
        try:
            barrier.wait()
            results[i] = target()
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.django_db(transaction=True)
def test_ten_racing_posts_with_one_key_make_exactly_one_ticket(bob):
    _concurrent_database()
    client = api_client(bob)
    responses = _in_threads(10, lambda: client.post("/tickets", NEW, HTTP_IDEMPOTENCY_KEY="race"))
    assert [r.status_code for r in responses] == [201] * 10
    assert len({r.json()["number"] for r in responses}) == 1
    assert Ticket.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_patches_with_one_etag_exactly_one_wins(bob):
    _concurrent_database()
    ticket = make_ticket(requester=bob)
    client = api_client(bob)
    etag = client.get(f"/tickets/{ticket.number}")["ETag"]
    titles = iter(["first", "second"])
    lock = threading.Lock()

    def patch():
        with lock:
            title = next(titles)
        return client.patch(f"/tickets/{ticket.number}", {"title": title}, HTTP_IF_MATCH=etag)

    responses = _in_threads(2, patch)
    assert sorted(r.status_code for r in responses) == [200, 412]
    winner = next(r for r in responses if r.status_code == 200).json()["title"]
    ticket.refresh_from_db()
    assert (ticket.title, ticket.version) == (winner, 2)
