from __future__ import annotations

import pytest
from django.test import Client

from supportdesk.accounts.models import LoginFailure
from tests.factories import PASSWORD


def login(client: Client, email: str, password: str, address: str = "203.0.113.7"):
    return client.post("/login/", {"email": email, "password": password}, REMOTE_ADDR=address)


def test_login_page_has_labelled_fields(client, db):
    response = client.get("/login/")
    assert response.status_code == 200
    html = response.content.decode()
    assert '<label for="id_email">' in html
    assert '<label for="id_password">' in html


def test_a_customer_logs_in_by_email_in_any_case_and_lands_on_the_panel(client, bob):
    response = login(client, "BOB@acme.test", PASSWORD)
    assert response.status_code == 302
    assert client.get("/").url == "/tickets/"


def test_an_agent_lands_on_the_unassigned_queue(client, alice):
    login(client, alice.email, PASSWORD)
    assert client.get("/").url == "/agent/unassigned/"


def test_login_follows_a_local_next_but_never_another_site(client, bob):
    assert login_next(client, bob, "/profile/").url == "/profile/"
    client.post("/logout/")
    assert login_next(client, bob, "https://evil.example/").url == "/"


def login_next(client, user, next_url):
    return client.post("/login/", {"email": user.email, "password": PASSWORD, "next": next_url})


def test_a_wrong_password_is_refused_and_counted_in_the_database(client, bob):
    response = login(client, bob.email, "wrong")
    assert response.status_code == 200
    assert "The email or the password is wrong." in response.content.decode()
    assert "_auth_user_id" not in client.session
    assert LoginFailure.objects.filter(email=bob.email).count() == 1


def test_five_failures_for_an_email_lock_it_out_even_with_the_right_password(client, bob):
    for _ in range(5):
        assert login(client, bob.email, "wrong").status_code == 200
    assert LoginFailure.objects.filter(email=bob.email).count() == 5
    response = login(client, bob.email, PASSWORD)
    assert response.status_code == 429
    assert "wait 15 minutes" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_the_lockout_counts_failures_from_any_address_for_that_email(client, bob):
    for number in range(5):
        login(client, bob.email, "wrong", address=f"198.51.100.{number}")
    assert login(client, bob.email, PASSWORD, address="192.0.2.1").status_code == 429


def test_twenty_failures_from_one_address_lock_it_out(client, bob):
    for number in range(20):
        login(client, f"nobody{number}@example.test", "wrong")
    assert login(client, bob.email, PASSWORD).status_code == 429
    assert login(client, bob.email, PASSWORD, address="192.0.2.99").status_code == 302


def test_logout_needs_a_post_and_ends_the_session(as_bob):
    assert as_bob.get("/logout/").status_code == 405
    response = as_bob.post("/logout/")
    assert response.status_code == 302
    assert response.url == "/login/"
    assert as_bob.get("/tickets/").status_code == 302


@pytest.mark.parametrize(
    "url", ["/", "/tickets/", "/tickets/new/", "/tickets/1000/", "/profile/", "/agent/mine/"]
)
def test_anonymous_visitors_are_sent_to_login(client, db, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response.url.startswith("/login/?next=")


def test_pages_carry_the_content_security_policy(client, as_bob):
    for response in (client.get("/login/"), as_bob.get("/tickets/")):
        policy = response["Content-Security-Policy"]
        assert "script-src 'self'" in policy
        assert "unsafe-inline" not in policy
        assert "unsafe-eval" not in policy


def test_pages_load_htmx_from_this_site_without_inline_script_or_style(as_bob):
    html = as_bob.get("/tickets/").content.decode()
    assert '<script src="/static/django_htmx/htmx-2.min.js"' in html
    assert '"includeIndicatorStyles": false' in html
    assert "<script>" not in html
    assert " style=" not in html
    assert " onclick=" not in html


def test_the_lockout_lasts_fifteen_minutes_from_the_fifth_failure(client, bob, time_machine):
    time_machine.move_to("2026-03-02 09:00:00+00:00", tick=False)
    for minute in (0, 4, 8, 12):
        time_machine.move_to(f"2026-03-02 09:{minute:02d}:00+00:00", tick=False)
        assert login(client, bob.email, "wrong").status_code == 200
    time_machine.move_to("2026-03-02 09:14:00+00:00", tick=False)
    assert login(client, bob.email, "wrong").status_code == 200  # the fifth, 14 minutes on
    time_machine.move_to("2026-03-02 09:28:59+00:00", tick=False)
    assert login(client, bob.email, PASSWORD).status_code == 429  # 14:59 after the fifth
    time_machine.move_to("2026-03-02 09:29:01+00:00", tick=False)
    assert login(client, bob.email, PASSWORD).status_code == 302


def test_five_failures_spread_over_more_than_fifteen_minutes_lock_nothing(
    client, bob, time_machine
):
    for minute in (0, 5, 10, 15, 20):
        time_machine.move_to(f"2026-03-02 09:{minute:02d}:30+00:00", tick=False)
        assert login(client, bob.email, "wrong").status_code == 200
    assert login(client, bob.email, PASSWORD).status_code == 302


def test_refused_attempts_while_locked_do_not_extend_the_lock(client, bob, time_machine):
    time_machine.move_to("2026-03-02 09:00:00+00:00", tick=False)
    for _ in range(5):
        login(client, bob.email, "wrong")
    for minute in (5, 10, 14):
        time_machine.move_to(f"2026-03-02 09:{minute:02d}:00+00:00", tick=False)
        assert login(client, bob.email, "wrong").status_code == 429
    time_machine.move_to("2026-03-02 09:15:01+00:00", tick=False)
    assert login(client, bob.email, PASSWORD).status_code == 302
    assert LoginFailure.objects.filter(email=bob.email).count() == 5


def test_old_failures_are_pruned_when_a_new_one_is_recorded(client, bob, time_machine):
    time_machine.move_to("2026-03-02 09:00:00+00:00", tick=False)
    login(client, bob.email, "wrong")
    time_machine.move_to("2026-03-02 10:00:00+00:00", tick=False)
    login(client, "other@example.test", "wrong")
    assert list(LoginFailure.objects.values_list("email", flat=True)) == ["other@example.test"]
