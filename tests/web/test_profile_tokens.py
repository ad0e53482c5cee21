"""API tokens on the profile page: created with the secret shown once, listed, revoked."""

from __future__ import annotations

import re
from datetime import timedelta

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from supportdesk.accounts.models import ApiToken
from supportdesk.accounts.services import authenticate_token, create_token, revoke_token

SECRET_FIELD = re.compile(r'<input type="text" id="new-token" value="([^"]+)"')


def _create(client: Client, **data) -> tuple[int, str, str]:
    """POST the token form; (status, page, the secret shown or "")."""
    response = client.post("/profile/", {"form": "token", **data})
    html = response.content.decode()
    match = SECRET_FIELD.search(html)
    return response.status_code, html, match.group(1) if match else ""


def test_without_tokens_the_page_says_so(as_bob):
    html = as_bob.get("/profile/").content.decode()
    assert "No API tokens yet" in html
    assert "new-token" not in html


def test_a_new_token_is_shown_once_and_works(as_bob, bob):
    status, html, secret = _create(as_bob, name="monitoring", read_only="on", expires_days="30")
    assert status == 200
    assert "it will not be shown again" in html
    token = authenticate_token(secret)
    assert token is not None
    assert token.user == bob
    assert (token.name, token.read_only) == ("monitoring", True)
    expected_expiry = timezone.now() + timedelta(days=30)
    assert abs(token.expires_at - expected_expiry) < timedelta(minutes=1)

    again = as_bob.get("/profile/")
    page = again.content.decode()
    assert secret not in page
    assert "new-token" not in page
    assert "monitoring" in page
    assert token.prefix in page
    assert "read-only" in page
    assert secret not in str(dict(as_bob.session.items()))


def test_the_answer_with_the_secret_may_not_be_cached(as_bob):
    response = as_bob.post("/profile/", {"form": "token", "name": "ci"})
    assert "no-store" in response["Cache-Control"]
    assert "no-store" not in as_bob.get("/profile/").get("Cache-Control", "")


def test_a_token_is_read_write_and_never_expires_by_default(as_bob, bob):
    status, html, secret = _create(as_bob, name="ci")
    assert status == 200
    token = authenticate_token(secret)
    assert token is not None
    assert (token.read_only, token.expires_at) == (False, None)
    row = re.search(rf'<tr id="token-{token.pk}">(.*?)</tr>', html, re.S).group(1)
    assert "read-write" in row
    assert row.count("never") == 2  # expires, last used


def test_every_token_control_has_a_label(as_bob):
    html = as_bob.get("/profile/").content.decode()
    form = html[html.index('value="token"') :]
    form = form[: form.index("</form>")]
    ids = re.findall(r'<input(?![^>]*type="hidden")[^>]+id="([^"]+)"', form)  # hidden: no label
    assert {"id_name", "id_read_only", "id_expires_days"} <= set(ids)
    for control in ids:
        assert f'<label for="{control}">' in html, control


def test_the_page_has_no_inline_script_or_style(as_bob, bob):
    create_token(bob, name="x")
    _status, html, _secret = _create(as_bob, name="y")
    assert " style=" not in html
    assert "<style" not in html
    assert all("src=" in tag for tag in re.findall(r"<script[^>]*>", html))


def test_invalid_input_creates_nothing(as_bob, bob):
    for data in (
        {"name": "ok", "expires_days": "0"},
        {"name": "ok", "expires_days": "soon"},
        {"name": ""},
        {"name": "a\x00b"},
        {"name": "x" * 101},
    ):
        status, html, secret = _create(as_bob, **data)
        assert (status, secret) == (400, ""), data
        assert "Please correct the fields marked below." in html
    assert not bob.api_tokens.exists()


def test_the_list_shows_only_the_users_own_tokens(as_bob, bob, carol):
    create_token(carol, name="globex secret integration")
    revoked, _ = create_token(bob, name="old script")
    revoke_token(revoked)
    html = as_bob.get("/profile/").content.decode()
    assert "globex secret integration" not in html
    assert "old script" in html
    assert reverse("profile_token_revoke", args=[revoked.pk]) not in html  # nothing to revoke


def test_revoking_a_token_stops_it(as_bob, bob):
    token, secret = create_token(bob, name="ci")
    url = reverse("profile_token_revoke", args=[token.pk])
    assert url in as_bob.get("/profile/").content.decode()
    response = as_bob.post(url)
    assert response.status_code == 302
    assert response["Location"] == reverse("profile")
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert authenticate_token(secret) is None
    page = as_bob.get("/profile/").content.decode()
    assert "is revoked" in page
    assert url not in page


def test_revoking_twice_keeps_the_first_time(as_bob, bob):
    token, _ = create_token(bob, name="ci")
    url = reverse("profile_token_revoke", args=[token.pk])
    as_bob.post(url)
    token.refresh_from_db()
    first = token.revoked_at
    assert as_bob.post(url).status_code == 302
    token.refresh_from_db()
    assert token.revoked_at == first


def test_another_users_token_is_not_found_and_stays_usable(as_carol, bob):
    token, secret = create_token(bob, name="acme")
    response = as_carol.post(reverse("profile_token_revoke", args=[token.pk]))
    assert response.status_code == 404
    assert authenticate_token(secret) is not None
    assert as_carol.post(reverse("profile_token_revoke", args=[token.pk + 1000])).status_code == 404


def test_revoking_needs_a_post_and_a_login(as_bob, bob):
    token, secret = create_token(bob, name="ci")
    url = reverse("profile_token_revoke", args=[token.pk])
    assert as_bob.get(url).status_code == 405
    anonymous = Client().post(url)
    assert anonymous.status_code == 302
    assert "login" in anonymous["Location"]
    assert authenticate_token(secret) is not None


def test_the_page_costs_the_same_queries_for_one_token_and_for_many(
    as_bob, bob, django_assert_max_num_queries
):
    create_token(bob, name="first")
    with CaptureQueriesContext(connection) as one:
        as_bob.get("/profile/")
    for index in range(8):
        create_token(bob, name=f"token {index}")
    with django_assert_max_num_queries(len(one.captured_queries)):
        html = as_bob.get("/profile/").content.decode()
    assert ApiToken.objects.filter(user=bob).count() == 9
    assert html.count('<tr id="token-') == 9


ONCE_FIELD = re.compile(r'<input type="hidden" name="once" value="([^"]+)"')


def test_a_refresh_that_sends_the_form_again_creates_no_second_token(as_bob, bob):
    page = as_bob.get("/profile/").content.decode()
    once = ONCE_FIELD.search(page).group(1)
    status, html, secret = _create(as_bob, name="monitoring", once=once)
    assert status == 200
    assert secret
    fresh = ONCE_FIELD.search(html).group(1)
    assert fresh != once  # the next token's form is a new one

    again = as_bob.post("/profile/", {"form": "token", "name": "monitoring", "once": once})
    assert again.status_code == 302
    assert ApiToken.objects.filter(user=bob).count() == 1
    followed = as_bob.get(again["Location"]).content.decode()
    assert "sent before" in followed
    assert secret not in followed

    status, _, second = _create(as_bob, name="second", once=fresh)
    assert status == 200
    assert second
    assert second != secret
    assert ApiToken.objects.filter(user=bob).count() == 2
    assert secret not in str(dict(as_bob.session.items()))
