"""Deactivating a user ends their sessions and tokens at once; tokens are stored as digests."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth import get_user
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.test import Client, RequestFactory
from django.utils import timezone

from supportdesk.accounts import services
from supportdesk.accounts.models import ApiToken, User
from supportdesk.errors import InvalidChange
from tests.factories import PASSWORD


def logged_in(user) -> Client:
    client = Client()
    assert client.login(username=user.email, password=PASSWORD)
    return client


def user_of_next_request(client: Client):
    """Who the next request from this browser would be, as the auth middleware decides."""
    request = RequestFactory().get("/")
    request.session = SessionStore(session_key=client.cookies["sessionid"].value)
    return get_user(request)


def test_deactivating_a_user_ends_their_sessions_at_once(bob, alice):
    bobs, alices = logged_in(bob), logged_in(alice)
    assert user_of_next_request(bobs) == bob
    services.deactivate_user(bob)
    assert user_of_next_request(bobs).is_anonymous
    assert not Session.objects.filter(session_key=bobs.cookies["sessionid"].value).exists()
    assert user_of_next_request(alices) == alice  # nobody else is logged out


def test_a_session_that_survives_deactivation_still_gets_nobody_in(bob):
    """A user switched off without the service (a database edit) is refused by the backend."""
    bobs = logged_in(bob)
    User.objects.filter(pk=bob.pk).update(is_active=False)
    assert user_of_next_request(bobs).is_anonymous


def test_a_deactivated_admin_is_shown_the_login_page_on_the_next_request(dave):
    client = logged_in(dave)
    assert client.get("/admin/").status_code == 200
    services.deactivate_user(dave)
    response = client.get("/admin/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_deactivating_a_user_ends_their_tokens(bob):
    token, secret = services.create_token(bob)
    assert services.authenticate_token(secret) == token
    services.deactivate_user(bob)
    assert services.authenticate_token(secret) is None
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_deactivating_in_the_admin_also_ends_tokens_and_sessions(dave, bob):
    _, secret = services.create_token(bob)
    bobs = logged_in(bob)
    admin = logged_in(dave)
    response = admin.post(
        f"/admin/accounts/user/{bob.pk}/change/",
        {
            "email": bob.email,
            "name": bob.name,
            "role": "customer",
            "organization": bob.organization_id,
            "time_zone": "UTC",
        },  # is_active left unticked
    )
    assert response.status_code == 302
    bob.refresh_from_db()
    assert not bob.is_active
    assert services.authenticate_token(secret) is None
    assert user_of_next_request(bobs).is_anonymous


def test_an_expired_token_is_refused(bob):
    _, secret = services.create_token(bob, expires_days=1)
    assert services.authenticate_token(secret) is not None
    with time_machine.travel(timezone.now() + timedelta(days=1, seconds=1)):
        assert services.authenticate_token(secret) is None


def test_a_revoked_token_is_refused(bob):
    token, secret = services.create_token(bob)
    services.revoke_token(token)
    assert services.authenticate_token(secret) is None


def test_an_unknown_secret_is_refused(bob):
    services.create_token(bob)
    assert services.authenticate_token("sd_not-a-token") is None
    assert services.authenticate_token("") is None


def test_a_token_is_stored_as_its_sha256_digest_only(bob):
    token, secret = services.create_token(bob, read_only=True, name="CI")
    row = ApiToken.objects.filter(pk=token.pk).values().get()
    assert row["digest"] == hashlib.sha256(secret.encode()).hexdigest()
    assert not any(secret in str(value) for value in row.values())
    assert row["read_only"] is True


def test_tokens_are_refused_for_deactivated_users_and_bad_expiry(bob):
    with pytest.raises(InvalidChange) as refused:
        services.create_token(bob, expires_days=0)
    assert refused.value.field == "expires"
    with pytest.raises(InvalidChange) as refused:
        services.create_token(bob, name="CI\x00")
    assert refused.value.field == "name"
    services.deactivate_user(bob)
    with pytest.raises(InvalidChange):
        services.create_token(bob)
    assert not ApiToken.objects.exists()
