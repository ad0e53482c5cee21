from __future__ import annotations

from datetime import UTC, datetime

import time_machine

from tests.factories import PASSWORD, make_ticket


def test_the_profile_shows_name_and_time_zone(as_bob):
    html = as_bob.get("/profile/").content.decode()
    assert 'value="Bob Customer"' in html
    assert '<option value="UTC" selected>' in html


def test_changing_the_time_zone_changes_how_times_render(as_bob, bob):
    with time_machine.travel(datetime(2030, 1, 15, 12, 30, tzinfo=UTC), tick=False):
        ticket = make_ticket(requester=bob)
    page = as_bob.get(f"/tickets/{ticket.number}/").content.decode()
    assert '<time datetime="2030-01-15T12:30:00+00:00">15 Jan 2030, 12:30</time>' in page

    response = as_bob.post(
        "/profile/", {"form": "profile", "name": "Bob", "time_zone": "Asia/Tokyo"}
    )
    assert response.status_code == 302
    bob.refresh_from_db()
    assert (bob.name, bob.time_zone) == ("Bob", "Asia/Tokyo")
    page = as_bob.get(f"/tickets/{ticket.number}/").content.decode()
    assert '<time datetime="2030-01-15T21:30:00+09:00">15 Jan 2030, 21:30</time>' in page


def test_an_unknown_time_zone_is_a_form_error(as_bob, bob):
    response = as_bob.post(
        "/profile/", {"form": "profile", "name": "", "time_zone": "Mars/Olympus"}
    )
    assert response.status_code == 400
    assert "time_zone" in response.context["profile_form"].errors
    bob.refresh_from_db()
    assert bob.time_zone == "UTC"


def test_a_nul_byte_in_the_name_is_a_form_error(as_bob, bob):
    response = as_bob.post("/profile/", {"form": "profile", "name": "B\x00b", "time_zone": "UTC"})
    assert response.status_code == 400
    assert "name" in response.context["profile_form"].errors
    bob.refresh_from_db()
    assert bob.name == "Bob Customer"


def test_a_password_change_keeps_the_session_and_the_new_password_works(as_bob, bob, client):
    new = "a much longer new passphrase 42"
    response = as_bob.post(
        "/profile/",
        {"form": "password", "old_password": PASSWORD, "new_password1": new, "new_password2": new},
    )
    assert response.status_code == 302
    assert as_bob.get("/tickets/").status_code == 200  # still logged in
    bob.refresh_from_db()
    assert bob.check_password(new)
    assert client.post("/login/", {"email": bob.email, "password": new}).status_code == 302


def test_a_wrong_old_password_changes_nothing(as_bob, bob):
    response = as_bob.post(
        "/profile/",
        {
            "form": "password",
            "old_password": "wrong",
            "new_password1": "x" * 20,
            "new_password2": "x" * 20,
        },
    )
    assert response.status_code == 400
    assert "old_password" in response.context["password_form"].errors
    bob.refresh_from_db()
    assert bob.check_password(PASSWORD)
