"""The bytes of our mails, written by compose.py, read back as Django's own would."""

from __future__ import annotations

import email.policy
from email import message_from_bytes

import pytest
from django.core.mail import EmailMessage, EmailMultiAlternatives

from supportdesk.notify import compose

HEADERS = {
    "Message-ID": "<e42.0123456789abcdef@support.test>",
    "In-Reply-To": "<ticket-1042@support.test>",
    "References": "<ticket-1042@support.test>",
    "Auto-Submitted": "auto-generated",
    "X-Auto-Response-Suppress": "OOF, AutoReply",
    "List-Unsubscribe": "<https://support.test/profile/>",
    "Date": "Thu, 26 Nov 2026 01:00:00 +0000",
}


def mail(subject: str, text: str, html: str | None = "<p>Hello</p>", **kwargs) -> EmailMessage:
    message = EmailMultiAlternatives(
        subject=subject,
        body=text,
        from_email="Support desk <support@support.test>",
        to=["bob@acme.test"],
        reply_to=["support@support.test"],
        headers=HEADERS,
        **kwargs,
    )
    if html is not None:
        message.attach_alternative(html, "text/html")
    return message


def read(data: bytes):
    return message_from_bytes(data, policy=email.policy.default)


def summary(data: bytes) -> dict[str, object]:
    """What a mail client shows: the headers decoded, each part's type, charset and text."""
    parsed = read(data)
    names = ["Subject", "From", "To", "Reply-To", *HEADERS]
    parts = [
        (part.get_content_type(), part.get_content().replace("\r\n", "\n"))
        for part in parsed.walk()
        if not part.is_multipart()
    ]
    return {
        "headers": {name: str(parsed[name]) for name in names},
        "type": parsed.get_content_type(),
        "parts": parts,
    }


SHAPES = {
    "ascii": mail("[#1042] The printer is offline", "Hello Bob,\n\nWe have it.\n"),
    "unicode": mail(
        "[#1042] Drucker im 3. Stock geht nicht \u2013 ça ne marche pas 🙁" * 2,
        "Grüße,\n\n\u0434\u043e\u0431\u0440\u044b\u0439 \u0434\u0435\u043d\u044c ✓\n",
        "<p>Grüße ✓</p>",
    ),
    "long line": mail("[#7] Long", "x" * 2500 + "\nend\n", "<p>" + "y" * 3000 + "</p>"),
    "text only": mail("[#8] Plain", "Only text.\n", None),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_our_mails_read_back_as_djangos_do(shape):
    message = SHAPES[shape]
    assert compose._plain_shape(message)  # written here, not handed to Django
    ours = compose.as_bytes(message)
    djangos = message.message(policy=email.policy.SMTP).as_bytes()
    assert summary(ours) == summary(djangos)
    assert b"\r\n" in ours
    assert b"\n" not in ours.replace(b"\r\n", b"")  # every line ends in CRLF, as SMTP wants
    assert all(len(line) <= 998 for line in ours.split(b"\r\n"))


def test_a_non_ascii_subject_is_an_encoded_word_and_the_rest_of_the_header_is_ascii():
    data = compose.as_bytes(SHAPES["unicode"])
    head = data.split(b"\r\n\r\n")[0]
    assert head.isascii()
    assert b"=?utf-8?q?" in head.lower()


@pytest.mark.parametrize(
    "unusual",
    [
        pytest.param(lambda m: m.attach("report.txt", "numbers", "text/plain"), id="an attachment"),
        pytest.param(lambda m: setattr(m, "to", ["bob@bücher.example"]), id="an IDNA domain"),
        pytest.param(lambda m: setattr(m, "cc", ["Zoë <zoe@acme.test>"]), id="a non-ASCII name"),
    ],
)
def test_any_other_shape_is_written_by_django(unusual):
    message = mail("[#9] Other", "Text\n")
    unusual(message)
    assert not compose._plain_shape(message)
    data = compose.as_bytes(message)
    assert summary(data) == summary(message.message(policy=email.policy.SMTP).as_bytes())
    if message.attachments:
        assert any(part.get_filename() == "report.txt" for part in read(data).walk())


def test_a_line_break_in_a_header_is_refused_as_django_refuses_it():
    message = mail("[#10] Injected\r\nBcc: eve@evil.test", "Text\n")
    with pytest.raises(ValueError, match=r"linefeed|newline|line"):
        compose.as_bytes(message)


def test_a_plain_email_message_without_alternatives_is_written_too():
    message = EmailMessage(
        subject="Reset", body="Your link.\n", from_email="support@support.test", to=["a@b.test"]
    )
    parsed = read(compose.as_bytes(message))
    assert parsed.get_content_type() == "text/plain"
    assert parsed.get_content().replace("\r\n", "\n") == "Your link.\n"
    assert parsed["Message-ID"]
    assert parsed["Date"]
