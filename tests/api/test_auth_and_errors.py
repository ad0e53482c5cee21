"""Bearer tokens only, limits, and every error as problem+json."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.utils import timezone

from supportdesk.accounts.models import ApiToken
from supportdesk.accounts.services import create_token, deactivate_user, revoke_token
from supportdesk.tickets.models import Ticket
from tests.api.conftest import ApiClient, api_client
from tests.factories import make_ticket

NEW = {"type": "question", "priority": "normal", "title": "Hello"}


def _is_401(response):
    assert response.status_code == 401, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert response["WWW-Authenticate"].startswith("Bearer")
    body = response.json()
    assert {"type", "title", "status", "detail"} <= set(body)


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer nope", "Basic YTpi", "Token x"])
def test_every_method_without_a_valid_token_is_401_never_a_csrf_403(bob, header):
    ticket = make_ticket(requester=bob)
    client = ApiClient(None)
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    _is_401(client.get("/tickets", **extra))
    _is_401(client.post("/tickets", NEW, **extra))
    _is_401(client.patch(f"/tickets/{ticket.number}", {"title": "x"}, **extra))
    _is_401(client.post(f"/tickets/{ticket.number}/reopen", **extra))
    assert Ticket.objects.count() == 1


def test_expired_revoked_and_deactivated_users_tokens_are_401(bob):
    _token, secret = create_token(bob, expires_days=1)
    client = ApiClient(secret)
    assert client.get("/users/me").status_code == 200
    with time_machine.travel(timezone.now() + timedelta(days=2)):
        _is_401(client.get("/users/me"))
    revoked, revoked_secret = create_token(bob)
    revoke_token(revoked)
    _is_401(ApiClient(revoked_secret).get("/users/me"))
    deactivate_user(bob)
    _is_401(client.get("/users/me"))


def test_last_used_is_written_at_most_once_a_minute(bob):
    token, secret = create_token(bob)
    client = ApiClient(secret)
    client.get("/users/me")
    first = ApiToken.objects.get(pk=token.pk).last_used_at
    assert first is not None
    client.get("/users/me")
    assert ApiToken.objects.get(pk=token.pk).last_used_at == first
    with time_machine.travel(timezone.now() + timedelta(minutes=2)):
        client.get("/users/me")
    assert ApiToken.objects.get(pk=token.pk).last_used_at > first


def test_a_token_over_its_rate_limit_gets_429_with_retry_after(bob, settings):
    settings.API_RATE_LIMIT = 3
    client = api_client(bob)
    # Counts are per clock minute: the requests must not straddle one (a slow run did).
    with time_machine.travel(datetime(2026, 1, 5, 12, 0, 30, tzinfo=UTC), tick=False):
        assert [client.get("/users/me").status_code for _ in range(3)] == [200, 200, 200]
        limited = client.get("/users/me")
    assert limited.status_code == 429
    assert int(limited["Retry-After"]) == 31  # the rest of that minute, rounded up
    assert limited["Content-Type"] == "application/problem+json"
    assert api_client(bob).get("/users/me").status_code == 200  # per token
    settings.API_RATE_LIMIT = 0
    assert client.get("/users/me").status_code == 200


def test_malformed_json_invalid_utf8_and_nul_bytes_are_400(as_bob):
    for body, expected in [
        (b"{not json", "not valid JSON"),
        (b'{"title": "\xff\xfe"}', "UTF-8"),
        (json.dumps({**NEW, "title": "a\u0000b"}).encode(), "NUL"),
        (b'{"title": "a\x00b"}', "JSON"),
    ]:
        response = as_bob.raw("POST", "/tickets", body, "application/json")
        assert response.status_code == 400, body
        assert response["Content-Type"] == "application/problem+json"
        assert expected in response.json()["detail"]
    nul_query = as_bob.get("/tickets", {"q": "a\x00b"})
    assert nul_query.status_code == 400
    assert Ticket.objects.count() == 0


def test_a_wrong_content_type_is_415(as_bob):
    response = as_bob.raw("POST", "/tickets", "title=x", "application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert response["Content-Type"] == "application/problem+json"


def test_a_huge_body_is_413(as_bob):
    body = json.dumps({**NEW, "description": "x" * (3 * 1024 * 1024)})
    response = as_bob.raw("POST", "/tickets", body, "application/json")
    assert response.status_code == 413
    assert Ticket.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**NEW, "colour": "red"}, "colour"),
        ({**NEW, "title": 5}, "title"),
        ({**NEW, "environments": "all"}, "environments"),
        ({"priority": "normal", "title": "x"}, "type"),
        ({**NEW, "type": "nonsense"}, "type"),
        ({**NEW, "title": "   "}, "title"),
        ({**NEW, "tags": ["no-such-tag"]}, "tags"),
    ],
)
def test_invalid_fields_are_422_naming_the_field(as_bob, body, field):
    response = as_bob.post("/tickets", body)
    assert response.status_code == 422, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert field in [e["field"] for e in response.json()["errors"]]
    assert Ticket.objects.count() == 0


def test_wrong_query_types_are_422(as_alice):
    assert as_alice.get("/tickets", {"limit": "many"}).status_code == 422
    assert as_alice.get("/tickets", {"limit": 101}).status_code == 422
    assert as_alice.get("/tickets", {"sort": "title"}).status_code == 422


def test_forged_cursors_are_400(as_alice):
    for cursor in ("garbage", "eyJ0Ijoi:forged:sig", "a" * 300):
        response = as_alice.get("/tickets", {"cursor": cursor})
        assert response.status_code == 400
        assert "cursor" in response.json()["detail"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/tickets/{number}", {"GET", "PATCH"}),
        ("PUT", "/tickets", {"GET", "POST"}),
        ("DELETE", "/tickets/{number}/responses", {"GET", "POST"}),
    ],
)
def test_a_method_a_path_does_not_take_is_405_problem_json_with_allow(
    as_bob, bob, method, path, allowed
):
    ticket = make_ticket(requester=bob)
    response = as_bob.raw(method, path.format(number=ticket.number), "", "application/json")
    assert response.status_code == 405
    assert response["Content-Type"] == "application/problem+json"
    assert {m.strip() for m in response["Allow"].split(",")} == allowed
    assert response.json()["status"] == 405
    assert method in response.json()["detail"]


def test_web_pages_keep_their_own_405(client):
    response = client.get("/logout/")
    assert response.status_code == 405
    assert response["Content-Type"] != "application/problem+json"
