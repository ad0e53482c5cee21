"""The directory for every kind of token and persona, files sent with a response, and
unknown paths answered as problems."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from supportdesk.accounts.services import create_token, deactivate_user, revoke_token
from supportdesk.events.models import Via
from supportdesk.tickets import services
from supportdesk.tickets.models import Attachment, Response
from tests.api.conftest import API, ApiClient, api_client
from tests.factories import make_app, make_ticket

DIRECTORY = ["/users/me", "/organizations", "/types", "/priorities", "/tags"]


def _problem(response, status):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert body["detail"]
    return body


def _org_names(client):
    return [
        (o["name"], [a["name"] for a in o["applications"]])
        for o in client.get("/organizations").json()
    ]


@pytest.fixture
def apps(acme, globex):
    make_app(acme, "Shop")
    make_app(globex, "Secret app")


@pytest.mark.usefixtures("apps")
def test_the_directory_answers_each_persona_what_it_may_see(bob, carol, alice, dave):
    seen = {}
    for user in (bob, carol, alice, dave):
        client = api_client(user)
        answers = {path: client.get(path) for path in DIRECTORY}
        assert {p: r.status_code for p, r in answers.items()} == dict.fromkeys(DIRECTORY, 200)
        me = answers["/users/me"].json()
        assert (me["id"], me["email"], me["role"]) == (user.pk, user.email, user.role)
        assert me["organization"] == user.organization_id
        seen[user.email] = _org_names(client)
    assert seen[bob.email] == [("Acme", ["Shop"])]
    assert seen[carol.email] == [("Globex", ["Secret app"])]
    everyone = [("Acme", ["Shop"]), ("Globex", ["Secret app"])]
    assert seen[alice.email] == seen[dave.email] == everyone


@pytest.mark.usefixtures("apps")
def test_a_read_only_token_reads_the_directory_and_writes_nothing(bob):
    _token, secret = create_token(bob, read_only=True)
    client = ApiClient(secret)
    for path in DIRECTORY:
        assert client.get(path).status_code == 200, path
    assert _org_names(client) == [("Acme", ["Shop"])]
    new = {"type": "question", "priority": "normal", "title": "Hi"}
    _problem(client.post("/tickets", new), 403)


@pytest.mark.usefixtures("apps")
def test_expired_revoked_and_deactivated_tokens_get_401_on_the_directory(bob, carol):
    _token, expiring = create_token(bob, expires_days=1)
    revoked, revoked_secret = create_token(bob)
    revoke_token(revoked)
    _token, carols = create_token(carol)
    deactivate_user(carol)
    later = timezone.now() + timedelta(days=2)
    for path in DIRECTORY:
        assert ApiClient(expiring).get(path).status_code == 200
        with time_machine.travel(later):
            _problem(ApiClient(expiring).get(path), 401)
        _problem(ApiClient(revoked_secret).get(path), 401)
        _problem(ApiClient(carols).get(path), 401)


def _files(*names):
    return [SimpleUploadedFile(name, f"content of {name}".encode()) for name in names]


def _respond(client, number, fields, files, **extra):
    return client.client.post(
        f"{API}/tickets/{number}/responses",
        {**fields, "files": files},
        **client.headers,
        **extra,
    )


def test_a_response_carries_its_files(as_bob, as_alice, as_carol, bob):
    ticket = make_ticket(requester=bob)
    sent = _respond(as_bob, ticket.number, {"body": "Logs attached."}, _files("a.log", "b.log"))
    assert sent.status_code == 201, sent.content
    body = sent.json()
    assert (body["body"], body["internal"]) == ("Logs attached.", False)
    assert [(a["filename"], a["response"]) for a in body["attachments"]] == [
        ("a.log", body["id"]),
        ("b.log", body["id"]),
    ]
    for client in (as_bob, as_alice):
        listed = client.get(f"/tickets/{ticket.number}/responses").json()
        assert [a["filename"] for a in listed[-1]["attachments"]] == ["a.log", "b.log"]
        download = client.client.get(body["attachments"][0]["url"], **client.headers)
        assert download.status_code == 200
        assert b"".join(download.streaming_content) == b"content of a.log"
    _problem(as_carol.client.get(body["attachments"][0]["url"], **as_carol.headers), 404)
    _problem(_respond(as_carol, ticket.number, {"body": "x"}, _files("c.log")), 404)
    assert Attachment.objects.filter(ticket=ticket).count() == 2
    history = as_bob.get(f"/tickets/{ticket.number}/events").json()
    assert history[-1]["changes"]["attachments"] == [None, ["a.log", "b.log"]]


def test_a_repeated_multipart_response_adds_one_response(as_bob, bob):
    ticket = make_ticket(requester=bob)
    key = {"HTTP_IDEMPOTENCY_KEY": "upload-1"}
    first = _respond(as_bob, ticket.number, {"body": "Log"}, _files("a.log"), **key)
    again = _respond(as_bob, ticket.number, {"body": "Log"}, _files("a.log"), **key)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    other_file = [SimpleUploadedFile("a.log", b"other bytes")]
    _problem(_respond(as_bob, ticket.number, {"body": "Log"}, other_file, **key), 422)
    assert Response.objects.filter(ticket=ticket).count() == 1
    assert Attachment.objects.filter(ticket=ticket).count() == 1


def test_refused_multipart_responses_store_nothing(as_bob, as_alice, bob, settings):
    ticket = make_ticket(requester=bob)
    path = f"/tickets/{ticket.number}/responses"
    _problem(_respond(as_bob, ticket.number, {"body": "x", "internal": "true"}, _files("a")), 403)
    _problem(_respond(as_bob, ticket.number, {"body": ""}, _files("a.log")), 422)
    _problem(_respond(as_bob, ticket.number, {"body": "x", "color": "red"}, _files("a")), 422)
    _problem(_respond(as_bob, ticket.number, {"body": "x\x00"}, _files("a.log")), 400)
    settings.UPLOAD_MAX_BYTES = 4
    _problem(_respond(as_bob, ticket.number, {"body": "x"}, _files("big.log")), 413)
    # A form is taken only where files are: creating a ticket stays JSON.
    form = {"type": "question", "priority": "normal", "title": "t"}
    _problem(as_bob.client.post(f"{API}/tickets", form, **as_bob.headers), 415)
    assert Response.objects.filter(ticket=ticket).count() == 0
    assert Attachment.objects.filter(ticket=ticket).count() == 0
    assert as_alice.get(path).json() == []


def test_an_agents_internal_note_keeps_its_files_from_the_customer(as_bob, as_alice, bob):
    ticket = make_ticket(requester=bob)
    fields = {"body": "db dump", "internal": "true"}
    note = _respond(as_alice, ticket.number, fields, _files("dump.sql"))
    assert note.status_code == 201, note.content
    url = note.json()["attachments"][0]["url"]
    assert as_alice.client.get(url, **as_alice.headers).status_code == 200
    _problem(as_bob.client.get(url, **as_bob.headers), 404)
    assert as_bob.get(f"/tickets/{ticket.number}/responses").json() == []


def test_an_agent_lists_and_downloads_a_customers_files(as_alice, as_carol, bob):
    ticket = make_ticket(requester=bob)
    services.add_attachments(ticket, _files("screen.png"), acting_user=bob, via=Via.WEB)
    listed = as_alice.get(f"/tickets/{ticket.number}/attachments")
    assert listed.status_code == 200
    assert [(a["filename"], a["response"]) for a in listed.json()] == [("screen.png", None)]
    download = as_alice.client.get(listed.json()[0]["url"], **as_alice.headers)
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == b"content of screen.png"
    _problem(as_carol.get(f"/tickets/{ticket.number}/attachments"), 404)


UNKNOWN = ["/", "/nope", "/tickets/", "/tickets/1/nope", "/users", "/users/me/extra", "/a/b/c"]


@pytest.mark.parametrize("method", ["get", "post", "put", "patch", "delete"])
def test_unknown_paths_are_404_problems_with_or_without_a_token(method, as_bob):
    for client in (Client(), as_bob.client):
        for path in UNKNOWN:
            response = getattr(client, method)(API + path, **as_bob.headers)
            assert _problem(response, 404)["title"] == "Not Found", path
        response = getattr(client, method)(API + "/nope")
        _problem(response, 404)


def test_the_catch_all_is_in_no_operation_list(as_bob):
    spec = Client().get(f"{API}/openapi.json").json()
    assert not [p for p in spec["paths"] if "rest" in p or p in ("/api/v1/", "/api/v1")]
    assert as_bob.get("/users/me").status_code == 200  # known paths still reach their route
