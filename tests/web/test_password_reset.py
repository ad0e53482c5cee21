"""Password reset: asked on a page, mailed by the outbox worker, used once through a link.

The mail goes through the real outbox (a HandlerRun executed as the worker does) and the
real transport into an SMTP server started by the test.
"""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import time_machine
from django.contrib.auth.tokens import default_token_generator
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from supportdesk.accounts.services import deactivate_user
from supportdesk.events import tasks
from supportdesk.events.models import Event, EventKind, HandlerRun, RunState
from supportdesk.notify import ids
from supportdesk.notify.password_reset import mail_on_password_reset_requested
from tests.factories import PASSWORD, make_user

HANDLER = "mail_on_password_reset_requested"
NEW_PASSWORD = "violet kettle drums 4815"
LINK = re.compile(r"https?://\S+/password-reset/[^/\s]+/[^/\s]+/")


def ask(client: Client, email: str, address: str = "203.0.113.9"):
    return client.post("/password-reset/", {"email": email}, REMOTE_ADDR=address)


def deliver() -> list[HandlerRun]:
    """Run every reset mail run, as the worker would."""
    runs = list(HandlerRun.objects.filter(handler=HANDLER, state=RunState.PENDING))
    for run in runs:
        assert tasks.execute(run.pk) == 1
        run.refresh_from_db()
    return runs


def reset_events(user=None):
    events = Event.objects.filter(kind=EventKind.PASSWORD_RESET_REQUESTED)
    return events.filter(actor=user) if user is not None else events


def link_in(message) -> str:
    text = message.get_body(preferencelist=("plain",)).get_content()
    found = LINK.findall(text)
    assert len(found) == 1, text
    return found[0]


def path_of(link: str) -> str:
    return urlsplit(link).path


def set_password(client: Client, link: str, password: str = NEW_PASSWORD, again: str | None = None):
    """Open the link as a browser does (it redirects to a URL without the token), then post."""
    opened = client.get(path_of(link))
    assert opened.status_code == 302, opened.content.decode()
    form_url = opened["Location"]
    assert client.get(form_url).status_code == 200
    return client.post(
        form_url, {"new_password1": password, "new_password2": again or password}
    ), form_url


def can_log_in(user, password: str) -> bool:
    return Client().login(email=user.email, password=password)


def test_a_reset_goes_from_the_page_through_the_outbox_to_a_new_password(client, bob, smtp_sink):
    response = ask(client, "BOB@ACME.test")
    assert (response.status_code, response["Location"]) == (302, "/password-reset/sent/")
    assert "If an account exists" in client.get("/password-reset/sent/").content.decode()
    event = reset_events(bob).get()
    assert event.ticket is None
    assert smtp_sink.messages == []  # nothing is sent inside the request

    (run,) = deliver()
    assert run.state == RunState.DONE
    assert smtp_sink.wait_for(1, timeout=5)
    (mail,) = smtp_sink.messages
    assert mail["Subject"] == "Reset your supportdesk password"
    assert mail["To"] == bob.email
    assert mail["From"] == "support@support.localhost"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail["Message-ID"] == ids.message_id(event.pk, bob.email)
    assert "within 1 hour" in mail.get_body(preferencelist=("plain",)).get_content()
    link = link_in(mail)
    assert link.startswith("http://127.0.0.1:8000/password-reset/")
    assert f'href="{link}"' in mail.get_body(preferencelist=("html",)).get_content()

    browser = Client()
    posted, _form_url = set_password(browser, link)
    assert (posted.status_code, posted["Location"]) == (302, "/password-reset/done/")
    assert "Log in with your new password" in browser.get("/password-reset/done/").content.decode()
    assert can_log_in(bob, NEW_PASSWORD)
    assert not can_log_in(bob, PASSWORD)


def test_a_link_works_once(client, bob, smtp_sink):
    ask(client, bob.email)
    deliver()
    assert smtp_sink.wait_for(1, timeout=5)
    link = link_in(smtp_sink.messages[0])
    set_password(Client(), link)

    again = Client().get(path_of(link))
    assert again.status_code == 200
    html = again.content.decode()
    assert "This link does not work" in html
    assert 'href="/password-reset/"' in html  # a way to ask for a new one
    # The token is no use through the set-password URL either, nor with a second password.
    browser = Client()
    session = browser.session
    session["_password_reset_token"] = urlsplit(link).path.rstrip("/").rsplit("/", 1)[1]
    session.save()
    uid = path_of(link).split("/")[2]
    refused = browser.post(
        f"/password-reset/{uid}/set-password/",
        {"new_password1": "second pass word 99", "new_password2": "second pass word 99"},
    )
    assert "This link does not work" in refused.content.decode()
    assert can_log_in(bob, NEW_PASSWORD)


def test_a_reset_ends_every_other_session_of_the_user(client, bob, carol, as_bob, as_carol):
    assert as_bob.get("/tickets/").status_code == 200
    token = default_token_generator.make_token(bob)
    uid = urlsafe_base64_encode(force_bytes(bob.pk))
    posted, _ = set_password(client, f"http://testserver/password-reset/{uid}/{token}/")
    assert posted.status_code == 302
    # Their stored sessions are deleted, not only refused for a stale password hash.
    assert sessions_of(bob) == 0
    assert sessions_of(carol) == 1  # nobody else's
    assert as_bob.get("/tickets/")["Location"].startswith("/login/")
    assert as_carol.get("/tickets/").status_code == 200


def sessions_of(user) -> int:
    return sum(s.get_decoded().get("_auth_user_id") == str(user.pk) for s in Session.objects.all())


def test_a_deactivated_users_link_does_not_open(client, bob):
    token = default_token_generator.make_token(bob)
    uid = urlsafe_base64_encode(force_bytes(bob.pk))
    deactivate_user(bob)
    response = client.get(f"/password-reset/{uid}/{token}/")
    assert "This link does not work" in response.content.decode()


def test_an_unknown_or_deactivated_email_answers_the_same_and_sends_nothing(
    client, bob, carol, smtp_sink
):
    deactivate_user(carol)
    known = ask(client, bob.email)
    for email in ("nobody@acme.test", carol.email):
        response = ask(client, email)
        assert (response.status_code, response["Location"]) == (302, known["Location"])
    assert [e.actor for e in reset_events()] == [bob]
    assert len(deliver()) == 1
    assert smtp_sink.wait_for(1, timeout=5)
    assert [m["To"] for m in smtp_sink.messages] == [bob.email]


def test_a_user_deactivated_before_the_mail_leaves_gets_none(client, bob, smtp_sink):
    ask(client, bob.email)
    deactivate_user(bob)
    (run,) = deliver()
    assert run.state == RunState.DONE
    assert not smtp_sink.wait_for(1, timeout=0.5)


def test_a_retried_mail_keeps_its_message_id(client, bob, smtp_sink):
    ask(client, bob.email)
    event = reset_events(bob).get()
    mail_on_password_reset_requested(event)
    mail_on_password_reset_requested(event)
    assert smtp_sink.wait_for(2, timeout=5)
    assert smtp_sink.message_ids() == [ids.message_id(event.pk, bob.email)] * 2


def test_at_most_three_reset_mails_an_hour_per_user_silently(client, bob):
    for number in range(5):
        response = ask(client, bob.email, address=f"198.51.100.{number}")
        assert response["Location"] == "/password-reset/sent/"
    assert reset_events(bob).count() == 3
    with time_machine.travel(timezone.now() + timedelta(minutes=61)):
        ask(client, bob.email)
    assert reset_events(bob).count() == 4


def test_at_most_twenty_reset_mails_an_hour_from_one_address(client, db):
    users = [make_user() for _ in range(22)]
    for user in users[:21]:
        assert ask(client, user.email, address="192.0.2.50")["Location"] == "/password-reset/sent/"
    assert reset_events().count() == 20
    ask(client, users[21].email, address="192.0.2.51")  # another address is not held back
    assert reset_events().count() == 21


@pytest.mark.parametrize(
    ("email", "error"),
    [
        ("bob@acme.test\x00", "Null characters are not allowed."),
        ("a" * 10_000 + "@acme.test", "at most 254 characters"),
        ("not an email", "is not an email address"),
        ("", "This field is required."),
    ],
)
def test_hostile_input_gets_a_form_error_and_records_nothing(client, bob, email, error):
    response = ask(client, email)
    assert response.status_code == 200
    assert error in response.content.decode()
    assert 'role="alert"' in response.content.decode()
    assert not reset_events().exists()


def test_bytes_that_are_not_utf8_are_an_unknown_address_not_an_error(client, bob):
    """Django decodes them to U+FFFD: a well-formed address of nobody."""
    response = client.post(
        "/password-reset/",
        "email=bob%40acme.test%ED%A0%80%FF",
        content_type="application/x-www-form-urlencoded",
    )
    assert response["Location"] == "/password-reset/sent/"
    assert not reset_events().exists()


@pytest.mark.parametrize(
    "path",
    [
        "/password-reset/%00/abc/",
        "/password-reset/" + "A" * 10_000 + "/abc/",
        "/password-reset/OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5/set-password/",  # 999...9, no such user
        "/password-reset/%F0%9F%92%A9/%00%00/",
        "/password-reset/MQ/set-password/",  # no token in the session
    ],
)
def test_a_broken_link_shows_the_ask_again_page_never_an_error(client, bob, path):
    response = client.get(path)
    assert response.status_code == 200
    assert "This link does not work" in response.content.decode()


def test_one_users_token_does_not_open_another_users_account(client, bob, carol):
    bob_uid = urlsafe_base64_encode(force_bytes(bob.pk))
    carol_uid = urlsafe_base64_encode(force_bytes(carol.pk))
    bob_token = default_token_generator.make_token(bob)
    carol_token = default_token_generator.make_token(carol)
    for uid, token in ((bob_uid, carol_token), (carol_uid, bob_token)):
        response = client.get(f"/password-reset/{uid}/{token}/")
        assert response.status_code == 200
        assert "This link does not work" in response.content.decode()
    # A token of bob's in the session does not open carol's form either.
    client.get(f"/password-reset/{bob_uid}/{bob_token}/")
    refused = client.post(
        f"/password-reset/{carol_uid}/set-password/",
        {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert "This link does not work" in refused.content.decode()
    assert can_log_in(carol, PASSWORD)


@pytest.mark.parametrize(
    ("password", "again", "error"),
    [
        (NEW_PASSWORD, "something else entirely", "fields didn\u2019t match"),
        ("short1", "short1", "too short"),
        ("password123", "password123", "too common"),
        ("bob@acme.test1", "bob@acme.test1", "too similar"),
        ("x" * 2000, "x" * 2000, "at most 1024 characters"),
    ],
)
def test_a_refused_password_is_explained_and_the_link_still_works(
    client, bob, password, again, error
):
    token = default_token_generator.make_token(bob)
    uid = urlsafe_base64_encode(force_bytes(bob.pk))
    refused, form_url = set_password(
        client, f"http://testserver/password-reset/{uid}/{token}/", password, again
    )
    assert refused.status_code == 200
    assert error in refused.content.decode()
    bob.refresh_from_db()
    assert bob.check_password(PASSWORD)  # not by logging in: a login ends the link's validity
    accepted = client.post(form_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert accepted["Location"] == "/password-reset/done/"


def test_a_link_expires_after_the_reset_timeout(client, bob, settings):
    token = default_token_generator.make_token(bob)
    uid = urlsafe_base64_encode(force_bytes(bob.pk))
    with time_machine.travel(
        timezone.now() + timedelta(seconds=settings.PASSWORD_RESET_TIMEOUT + 5)
    ):
        response = client.get(f"/password-reset/{uid}/{token}/")
    assert "This link does not work" in response.content.decode()


def test_the_pages_have_labelled_fields_and_the_login_page_links_to_them(client, db):
    assert 'href="/password-reset/"' in client.get("/login/").content.decode()
    html = client.get("/password-reset/").content.decode()
    assert '<label for="id_email">' in html
    assert "<script" not in html.replace('<script src="/static/', "")
    assert " style=" not in html
