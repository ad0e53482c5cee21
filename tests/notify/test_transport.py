"""Mail out through a real SMTP server (aiosmtpd on 127.0.0.1): what arrives, and how every
kind of failure is classified for the outbox (retry, or fail at once)."""

from __future__ import annotations

import socket
import threading
import time
from email import message_from_bytes
from email.policy import default as default_policy
from urllib.parse import quote

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage, EmailMultiAlternatives

from supportdesk.errors import DeliveryError
from supportdesk.notify import transport
from supportdesk.notify.ids import message_id
from supportdesk.notify.transport import EmailTarget, eml_path, parse_email_url

SECRET = "s3cretpw"


def mail(to=("bob@acme.test",), *, mid="<e1.abc@support.test>", body="Hello", **kwargs):
    return EmailMessage(
        subject="[#1] Printer on fire",
        body=body,
        from_email="Support <support@support.test>",
        to=list(to),
        headers={"Message-ID": mid},
        **kwargs,
    )


def send_failure(message) -> DeliveryError:
    with pytest.raises(DeliveryError) as caught:
        transport.send(message)
    return caught.value


# What arrives.


def test_a_mail_arrives_with_its_headers_and_both_parts_intact(smtp_sink, settings):
    settings.MAIL_DOMAIN = "support.test"
    mid = message_id(41, "bob@acme.test")
    message = EmailMultiAlternatives(
        subject="[#42] Überweisung fehlgeschlagen: bitte prüfen ✓",
        body="Grüße aus Zürich: Ihre Anfrage #42 ist eingegangen.",
        from_email="Support Desk <support@support.test>",
        to=["Bob Customer <bob@acme.test>"],
        cc=["ops@example.org"],
        bcc=["audit@example.org"],
        headers={
            "Message-ID": mid,
            "In-Reply-To": "<ticket-42@support.test>",
            "References": "<ticket-42@support.test>",
            "Auto-Submitted": "auto-generated",
        },
    )
    message.attach_alternative("<p>Grüße aus <b>Zürich</b></p>", "text/html")

    transport.send(message)

    assert smtp_sink.wait_for(1)
    [delivery] = smtp_sink.deliveries
    arrived = delivery.message
    assert arrived["Message-ID"] == mid
    assert arrived["Subject"] == "[#42] Überweisung fehlgeschlagen: bitte prüfen ✓"
    assert arrived["In-Reply-To"] == "<ticket-42@support.test>"
    assert arrived["Auto-Submitted"] == "auto-generated"
    assert arrived["To"] == "Bob Customer <bob@acme.test>"
    assert "Bcc" not in arrived  # a blind copy stays blind
    assert arrived.get_body(("plain",)).get_content().strip() == (
        "Grüße aus Zürich: Ihre Anfrage #42 ist eingegangen."
    )
    assert arrived.get_body(("html",)).get_content().strip() == "<p>Grüße aus <b>Zürich</b></p>"
    assert delivery.mail_from == "support@support.test"
    assert delivery.rcpt_tos == ("bob@acme.test", "ops@example.org", "audit@example.org")
    assert smtp_sink.message_ids() == [mid]


def test_the_envelope_sender_is_the_default_from_address_unless_the_mail_names_one(
    smtp_sink, settings
):
    settings.DEFAULT_FROM_EMAIL = "Desk <desk@support.test>"
    transport.send(EmailMessage("Hi", "Body", to=["bob@acme.test"]))
    transport.send(mail(mid="<e2.x@support.test>"))

    assert smtp_sink.wait_for(2)
    assert [d.mail_from for d in smtp_sink.deliveries] == [
        "desk@support.test",
        "support@support.test",
    ]


def test_the_same_message_id_sent_twice_arrives_twice(smtp_sink):
    """At least once: the transport does not dedupe; the stable Message-ID lets a receiver."""
    transport.send(mail(mid="<e5.aa@support.test>"))
    transport.send(mail(mid="<e5.aa@support.test>"))

    assert smtp_sink.wait_for(2)
    assert smtp_sink.message_ids() == ["<e5.aa@support.test>", "<e5.aa@support.test>"]


def test_credentials_reach_the_server_percent_decoded(smtp_sink, settings):
    user, password = "ops@example.com", "p@ss:w/rd?#% x"
    smtp_sink.require_auth(user, password)
    settings.EMAIL_URL = (
        f"smtp://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:{smtp_sink.port}"
    )

    transport.send(mail())

    assert smtp_sink.wait_for(1)
    assert smtp_sink.logins == [(user, password)]


# EMAIL_URL.


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example.com", EmailTarget("smtp", "mail.example.com", 25)),
        ("smtp://mail.example.com:2525/", EmailTarget("smtp", "mail.example.com", 2525)),
        ("SMTP+TLS://Mail.Example.com", EmailTarget("smtp+tls", "mail.example.com", 587)),
        ("smtps://mail.example.com", EmailTarget("smtps", "mail.example.com", 465)),
        ("smtp://[::1]:25", EmailTarget("smtp", "::1", 25)),
        (
            "  smtp+tls://apikey:abc@smtp.example.com:2587?timeout=2.5 ",
            EmailTarget("smtp+tls", "smtp.example.com", 2587, "apikey", "abc", 2.5),
        ),
        (
            # @ : / ? # % and a space in the password, @ in the user name, all encoded
            "smtps://ops%40example.com:p%40ss%3Aw%2Frd%3F%23%25%20x@relay.example.com",
            EmailTarget("smtps", "relay.example.com", 465, "ops@example.com", "p@ss:w/rd?#% x"),
        ),
        (
            # an unencoded @ or : in the password is still read right: the host follows the last @
            "smtp://me:pa:ss@word@relay.example.com",
            EmailTarget("smtp", "relay.example.com", 25, "me", "pa:ss@word"),
        ),
    ],
)
def test_every_form_of_email_url_is_read(url, expected):
    target = parse_email_url(url)

    assert target == expected
    assert target.password == expected.password  # excluded from repr, not from equality


def test_a_target_never_shows_its_password():
    target = parse_email_url(f"smtp+tls://me:{SECRET}@relay.example.com")

    assert SECRET not in repr(target)
    assert SECRET not in str(target)
    assert target.starttls
    assert not target.implicit_tls


@pytest.mark.parametrize(
    "url",
    [
        f"http://me:{SECRET}@relay.example.com",
        f"smtpx://me:{SECRET}@relay.example.com",
        f"me:{SECRET}@relay.example.com",
        f"//me:{SECRET}@relay.example.com",
        f"relay.example.com {SECRET}",
        "smtp://",
        f"smtp://me:{SECRET}@",
        f"smtp://me:{SECRET}@relay.example.com:notaport",
        f"smtp://me:{SECRET}@relay.example.com:99999",
        f"smtp://me:{SECRET}/x@relay.example.com",  # unencoded / in the password
        f"smtp://me:{SECRET}#x@relay.example.com",  # unencoded # in the password
        f"smtp://me:25?{SECRET}@relay.example.com",  # unencoded ? in the password
        f"smtp://me:{SECRET}@relay.example.com/path",
        f"smtp://me:{SECRET}@relay.example.com?tls=yes",
        f"smtp://me:{SECRET}@relay.example.com?timeout=soon",
        f"smtp://me:{SECRET}@relay.example.com?timeout=0",
        f"smtp://me:{SECRET}@[::1",
        f"smtp://me:{SECRET}%C3%BC@relay.example.com",  # non-ASCII: SMTP AUTH cannot send it
    ],
)
def test_a_bad_email_url_is_a_clear_error_that_hides_the_password(url):
    with pytest.raises(ImproperlyConfigured) as caught:
        parse_email_url(url)

    text = str(caught.value)
    assert "SUPPORTDESK_EMAIL_URL" in text
    assert SECRET not in text
    # and no chained parser error prints a piece of the URL in a traceback
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None or caught.value.__suppress_context__


def test_sending_with_a_bad_email_url_raises_the_configuration_error(settings):
    settings.EMAIL_URL = f"smtpz://me:{SECRET}@relay.example.com"

    with pytest.raises(ImproperlyConfigured, match="SUPPORTDESK_EMAIL_URL") as caught:
        transport.send(mail())
    assert "smtpz" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_a_bad_email_url_raises_on_every_mail_and_a_fixed_one_is_used_at_once(smtp_sink, settings):
    """The parsed URL is kept per URL: a bad one is not kept, a new one is read anew."""
    good = settings.EMAIL_URL
    settings.EMAIL_URL = "smtpz://relay.example.com"
    for _ in range(2):
        with pytest.raises(ImproperlyConfigured):
            transport.send(mail())
    settings.EMAIL_URL = good
    transport.send(mail())
    assert smtp_sink.wait_for(1)


def test_a_change_of_email_url_sends_the_next_mail_to_the_new_server(smtp_sink, settings):
    from tests.smtp_sink import SmtpSink

    transport.send(mail())
    other = SmtpSink()
    try:
        settings.EMAIL_URL = other.url
        transport.send(mail(mid="<e2.abc@support.test>"))
        assert other.wait_for(1)
        assert other.message_ids() == ["<e2.abc@support.test>"]
    finally:
        other.stop()
    assert smtp_sink.message_ids() == ["<e1.abc@support.test>"]


# File mode.


@pytest.fixture
def mail_out(settings, tmp_path):
    settings.EMAIL_URL = ""
    settings.MAIL_OUT_DIR = tmp_path / "mail-out"
    return settings.MAIL_OUT_DIR


def test_without_an_email_url_each_mail_is_a_file_named_by_its_message_id(mail_out):
    transport.send(mail(mid="<e1.aaa@support.test>", body="first"))
    transport.send(mail(mid="<e2.bbb@support.test>", body="second"))

    assert sorted(p.name for p in mail_out.iterdir()) == [
        "e1.aaa@support.test.eml",
        "e2.bbb@support.test.eml",
    ]
    written = message_from_bytes(
        eml_path("<e2.bbb@support.test>").read_bytes(), policy=default_policy
    )
    assert written["Message-ID"] == "<e2.bbb@support.test>"
    assert written.get_content().strip() == "second"


def test_a_repeat_in_file_mode_overwrites_the_first_copy(mail_out):
    transport.send(mail(mid="<e3.ccc@support.test>", body="attempt one"))
    transport.send(mail(mid="<e3.ccc@support.test>", body="attempt two"))

    assert [p.name for p in mail_out.iterdir()] == ["e3.ccc@support.test.eml"]  # no temp left
    assert b"attempt two" in eml_path("<e3.ccc@support.test>").read_bytes()


def test_an_odd_message_id_still_names_a_file_inside_the_directory(mail_out):
    transport.send(mail(mid="<../../etc/x@y>"))
    transport.send(mail(mid="<.._.._etc_x@y>"))  # would clean to the same name as the first

    files = list(mail_out.iterdir())
    assert len(files) == 2
    assert all(p.parent == mail_out and not p.name.startswith(".") for p in files)


# Failures: the outbox retries what may pass, and fails at once what cannot.


def test_a_refused_connection_is_retryable_and_the_mail_goes_once_the_server_is_back(smtp_sink):
    smtp_sink.refuse_connections()

    error = send_failure(mail())
    assert not error.permanent
    assert "refused" in error.message.lower()

    smtp_sink.resume()
    transport.send(mail())
    assert smtp_sink.wait_for(1)
    assert smtp_sink.message_ids() == ["<e1.abc@support.test>"]


def test_a_421_is_retryable_and_nothing_is_delivered(smtp_sink):
    smtp_sink.answer_all(421, "4.3.2 Service shutting down")

    error = send_failure(mail())

    assert not error.permanent
    assert "421 4.3.2 Service shutting down" in error.message
    assert smtp_sink.messages == []


def test_a_451_then_acceptance_delivers_on_the_second_attempt(smtp_sink):
    smtp_sink.answer_all(451, "4.7.1 Greylisted, try again")
    assert not send_failure(mail()).permanent

    smtp_sink.accept()
    transport.send(mail())

    assert smtp_sink.wait_for(1)
    assert smtp_sink.recipients() == ["bob@acme.test"]


def test_a_550_for_one_recipient_fails_that_mail_alone_and_for_good(smtp_sink):
    smtp_sink.reject_recipient("gone@acme.test", 550, "5.1.1 no such user")

    error = send_failure(mail(["gone@acme.test"], mid="<e9.gone@support.test>"))
    transport.send(mail(["bob@acme.test"], mid="<e9.bob@support.test>"))

    assert error.permanent
    assert "550 5.1.1 no such user" in error.message
    assert "gone@acme.test" in error.message
    assert smtp_sink.wait_for(1)
    assert smtp_sink.message_ids() == ["<e9.bob@support.test>"]


def test_a_refused_recipient_stops_the_whole_message_so_a_retry_doubles_nothing(smtp_sink):
    smtp_sink.reject_recipient("gone@acme.test", 550)

    error = send_failure(mail(["bob@acme.test", "gone@acme.test"]))

    assert error.permanent
    time.sleep(0.1)  # the server had its chance to store something
    assert smtp_sink.messages == []


def test_refusals_are_permanent_only_when_every_one_is_permanent(smtp_sink):
    smtp_sink.reject_recipient("gone@acme.test", 550)
    smtp_sink.reject_recipient("full@acme.test", 452, "4.2.2 mailbox full")

    error = send_failure(mail(["gone@acme.test", "full@acme.test"]))

    assert not error.permanent
    assert "550" in error.message
    assert "452 4.2.2 mailbox full" in error.message


def test_a_wrong_password_is_permanent_and_not_repeated_in_the_error(smtp_sink, settings):
    smtp_sink.require_auth("ops", "right-password")
    settings.EMAIL_URL = f"smtp://ops:{SECRET}@127.0.0.1:{smtp_sink.port}"

    error = send_failure(mail())

    assert error.permanent
    assert "535" in error.message
    assert SECRET not in error.message
    assert smtp_sink.messages == []


def test_a_mail_without_login_to_a_server_that_requires_one_is_permanent(smtp_sink):
    smtp_sink.require_auth("ops", "right-password")

    error = send_failure(mail())

    assert error.permanent
    assert "530" in error.message


def test_starttls_against_a_server_without_it_is_retryable_and_sends_no_password(
    smtp_sink, settings
):
    """Retryable: the server or the path to it (a relay restarted with a wrong configuration,
    a middlebox stripping STARTTLS) is at fault, not the mail, which can go once it is fixed;
    the plain connection is never used instead, and the outbox marks the run failed after its
    last attempt, so an operator sees it."""
    settings.EMAIL_URL = f"smtp+tls://ops:{SECRET}@127.0.0.1:{smtp_sink.port}"

    error = send_failure(mail())

    assert not error.permanent
    assert "STARTTLS" in error.message
    assert smtp_sink.logins == []
    assert smtp_sink.messages == []


def test_implicit_tls_against_a_plain_server_is_retryable(smtp_sink, settings):
    settings.EMAIL_URL = f"smtps://127.0.0.1:{smtp_sink.port}?timeout=2"

    error = send_failure(mail())

    assert not error.permanent
    assert smtp_sink.messages == []


@pytest.fixture
def mute_server():
    """Accepts connections (the kernel completes the handshake) and never says a word."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


def test_a_server_that_never_answers_times_out_as_retryable(mute_server, settings):
    settings.EMAIL_URL = f"smtp://127.0.0.1:{mute_server}?timeout=0.3"

    started = time.monotonic()
    error = send_failure(mail())

    assert not error.permanent
    assert "timed out" in error.message.lower()
    assert time.monotonic() - started < 3


@pytest.fixture
def hanging_up_server():
    """Accepts each connection and closes it at once."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.05)  # a blocked accept() would not notice the close at teardown
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(timeout=2)
    server.close()


def test_a_server_that_hangs_up_is_retryable(hanging_up_server, settings):
    settings.EMAIL_URL = f"smtp://127.0.0.1:{hanging_up_server}?timeout=2"

    error = send_failure(mail())

    assert not error.permanent
    assert "connect" in error.message


# Mails that no server could deliver.


def test_a_mail_without_recipients_fails_for_good(smtp_sink):
    assert send_failure(mail(to=())).permanent


@pytest.mark.parametrize(
    "address", ["not-an-address", "bob@acme.test\r\nRCPT TO:<x@y>", "jösé@x.test"]
)
def test_an_address_no_server_can_take_fails_for_good_before_connecting(smtp_sink, address):
    smtp_sink.refuse_connections()  # a retryable error would show the check came too late

    assert send_failure(mail(to=[address])).permanent
    assert send_failure(mail(to=[address])).permanent  # the parsed addresses keep no refusal


def test_an_international_domain_is_sent_in_its_ascii_form(smtp_sink):
    transport.send(mail(to=["bob@bücher.example"]))

    assert smtp_sink.wait_for(1)
    assert smtp_sink.recipients() == ["bob@xn--bcher-kva.example"]


def test_a_session_sends_its_mails_on_one_connection_and_without_one_each_connects(smtp_sink):
    with transport.session():
        for n in range(3):
            transport.send(mail(mid=f"<e{n}.s@support.test>"))
    assert smtp_sink.wait_for(3)
    assert len({d.peer for d in smtp_sink.deliveries}) == 1
    smtp_sink.clear()
    for n in range(3):
        transport.send(mail(mid=f"<e{n}.t@support.test>"))
    assert smtp_sink.wait_for(3)
    assert len({d.peer for d in smtp_sink.deliveries}) == 3


def test_in_a_session_a_refused_mail_fails_alone_and_the_next_one_goes(smtp_sink):
    smtp_sink.reject_recipient("gone@acme.test", code=550)
    with transport.session():
        transport.send(mail(mid="<e1.a@support.test>"))
        failure = send_failure(mail(to=("gone@acme.test",), mid="<e2.a@support.test>"))
        transport.send(mail(mid="<e3.a@support.test>"))
    assert failure.permanent
    assert "550" in failure.message
    assert smtp_sink.wait_for(2)
    assert smtp_sink.message_ids() == ["<e1.a@support.test>", "<e3.a@support.test>"]


def test_in_a_session_a_connection_dropped_while_idle_is_replaced(smtp_sink):
    with transport.session():
        transport.send(mail(mid="<e1.d@support.test>"))
        smtp_sink.refuse_connections()  # the server goes away, and with it the open session
        smtp_sink.resume()
        transport.send(mail(mid="<e2.d@support.test>"))
    assert smtp_sink.wait_for(2)
    assert smtp_sink.message_ids() == ["<e1.d@support.test>", "<e2.d@support.test>"]
