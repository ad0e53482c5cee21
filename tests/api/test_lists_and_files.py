"""Lists (cursor pages, query counts), responses, attachments and the directory."""

from __future__ import annotations

from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext

from supportdesk.events.models import Via
from supportdesk.tickets import services
from tests.factories import make_app, make_ticket


def _all_pages(client, **params):
    numbers, cursor = [], None
    while True:
        page = client.get("/tickets", {**params, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.content
        body = page.json()
        numbers += [t["number"] for t in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return numbers


def test_cursor_pages_are_stable_under_inserts(as_alice, bob):
    tickets = [make_ticket(requester=bob, title=f"T{i}") for i in range(7)]
    first = as_alice.get("/tickets", {"limit": 3, "sort": "created"}).json()
    make_ticket(requester=bob, title="inserted meanwhile")
    rest = _all_pages(as_alice, limit=3, sort="created")  # from the start, for the total
    later = as_alice.get(
        "/tickets", {"limit": 3, "sort": "created", "cursor": first["next_cursor"]}
    )
    seen = [t["number"] for t in first["items"]] + [t["number"] for t in later.json()["items"]]
    expected = [t.number for t in reversed(tickets)]
    assert seen == expected[:6]
    assert len(rest) == 8
    assert len(set(rest)) == 8


def test_a_cursor_of_another_sort_is_refused(as_alice, bob):
    for i in range(3):
        make_ticket(requester=bob, title=f"T{i}")
    cursor = as_alice.get("/tickets", {"limit": 1}).json()["next_cursor"]
    assert as_alice.get("/tickets", {"cursor": cursor, "sort": "created"}).status_code == 400


def test_lists_take_the_panels_filters_and_words(as_bob, as_alice, bob, alice):
    make_ticket(requester=bob, title="Printer jam")
    make_ticket(requester=bob, title="VPN down", status="closed", agent=alice)
    assert [t["title"] for t in as_bob.get("/tickets").json()["items"]] == ["Printer jam"]
    closed = as_bob.get("/tickets", {"view": "closed"}).json()["items"]
    assert [t["title"] for t in closed] == ["VPN down"]
    found = as_alice.get("/tickets", {"queue": "all", "q": "vpn"}).json()["items"]
    assert [t["title"] for t in found] == ["VPN down"]


def _list_queries(client):
    client.get("/users/me")  # this minute's rate counter and last-used time are written once
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/tickets", {"limit": 100, "view": "all"}).status_code == 200
    return len(queries)


def test_the_list_costs_the_same_queries_for_3_and_30_tickets(as_bob, bob, alice):
    for _ in range(3):
        make_ticket(requester=bob, tags=[], agent=alice)
    few = _list_queries(as_bob)
    for _ in range(27):
        make_ticket(requester=bob)
    assert _list_queries(as_bob) == few


def test_internal_notes_are_listed_to_agents_only(as_bob, as_alice, bob, alice):
    ticket = make_ticket(requester=bob)
    path = f"/tickets/{ticket.number}/responses"
    assert as_bob.post(path, {"body": "Any news?"}).status_code == 201
    note = as_alice.post(path, {"body": "check db", "internal": True})
    assert note.status_code == 201, note.content
    assert as_bob.post(path, {"body": "sneaky", "internal": True}).status_code == 403
    assert [r["body"] for r in as_bob.get(path).json()] == ["Any news?"]
    assert [r["body"] for r in as_alice.get(path).json()] == ["Any news?", "check db"]


def test_attachments_upload_and_download_with_the_same_access_as_the_page(
    as_bob, as_carol, as_alice, bob, alice, settings
):
    ticket = make_ticket(requester=bob)
    path = f"/tickets/{ticket.number}/attachments"
    uploaded = as_bob.upload(path, [SimpleUploadedFile("log.txt", b"hello log")])
    assert uploaded.status_code == 201, uploaded.content
    url = uploaded.json()[0]["url"]
    download = as_bob.client.get(url, **as_bob.headers)
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == b"hello log"
    assert "attachment" in download["Content-Disposition"]
    assert as_carol.client.get(url, **as_carol.headers).status_code == 404
    note = services.add_response(
        ticket,
        acting_user=alice,
        via=Via.WEB,
        body="n",
        internal=True,
        attachments=[SimpleUploadedFile("secret.txt", b"s")],
    )
    note_url = f"/api/v1/tickets/{ticket.number}/attachments/{note.attachments.get().pk}"
    assert as_bob.client.get(note_url, **as_bob.headers).status_code == 404
    assert as_alice.client.get(note_url, **as_alice.headers).status_code == 200
    settings.UPLOAD_MAX_BYTES = 4
    too_big = as_bob.upload(path, [SimpleUploadedFile("big.txt", b"12345")])
    assert too_big.status_code == 413
    assert ticket.attachments.count() == 2


def test_the_directory_shows_what_the_caller_may_see(as_bob, as_alice, bob, acme, globex):
    make_app(acme, "Shop")
    make_app(globex, "Secret app")
    orgs = as_bob.get("/organizations").json()
    assert [(o["name"], [a["name"] for a in o["applications"]]) for o in orgs] == [
        ("Acme", ["Shop"])
    ]
    assert len(as_alice.get("/organizations").json()) == 2
    me = as_bob.get("/users/me").json()
    assert (me["email"], me["role"], me["organization"]) == (bob.email, "customer", acme.pk)
    assert "question" in [t["key"] for t in as_bob.get("/types").json()]
    assert "normal" in [p["key"] for p in as_bob.get("/priorities").json()]
    assert as_bob.get("/tags").status_code == 200
