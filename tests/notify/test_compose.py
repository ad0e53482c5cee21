"""The bytes of our mails, written by compose.py, read back as Django's own would."""

from __future__ import annotations

import email.charset
import email.generator
import email.policy
import re
from datetime import UTC, datetime
from email import message_from_bytes
from email.header import Header
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime

import pytest
import time_machine
from django.core.mail import EmailMessage, EmailMultiAlternatives
from hypothesis import given, settings
from hypothesis import strategies as st

from supportdesk.events.models import Event
from supportdesk.notify import compose, deliveries, messages
from tests.factories import make_ticket

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


# What compose.py writes by hand must be, byte for byte, what compat32's message objects and
# generator write (as compose.py did before): the reference below is that earlier writer.

COMPAT32_SMTP = email.policy.compat32.clone(linesep="\r\n")


def utf8_quoted_printable() -> email.charset.Charset:
    charset = email.charset.Charset("utf-8")
    charset.body_encoding = charset.header_encoding = email.charset.QP
    return charset


def compat32_part(content: str, subtype: str) -> MIMENonMultipart:
    content = content if content.endswith("\n") else content + "\n"
    if content.isascii() and all(len(line) <= 998 for line in content.splitlines()):
        return MIMEText(content, subtype, "us-ascii")
    part = MIMENonMultipart("text", subtype, charset="utf-8")
    part.set_payload(content, utf8_quoted_printable())
    return part


def compat32_bytes(message: EmailMessage, boundary: str | None) -> bytes:
    text = compat32_part(str(message.body), "plain")
    mime: MIMEBase = text
    if getattr(message, "alternatives", []):
        mime = MIMEMultipart("alternative", boundary=boundary)
        mime.attach(text)
        mime.attach(compat32_part(str(message.alternatives[0][0]), "html"))
    subject = str(message.subject)
    mime["Subject"] = (
        " ".join(subject.splitlines())  # as compose writes it: no line break in a header
        if subject.isascii()
        else Header(subject, utf8_quoted_printable(), header_name="Subject").encode()
    )
    mime["From"] = str(message.from_email)
    for name, addresses in (("To", message.to), ("Cc", message.cc), ("Reply-To", message.reply_to)):
        if addresses:
            mime[name] = ", ".join(addresses)
    if "date" not in {name.lower() for name in message.extra_headers}:
        mime["Date"] = format_datetime(datetime.now(UTC))  # our mails all have a Message-ID
    for name, value in message.extra_headers.items():
        mime[name] = str(value)
    return mime.as_bytes(policy=COMPAT32_SMTP)


def boundary_of(data: bytes) -> str | None:
    found = re.search(rb'boundary="([^"]+)"', data.split(b"\r\n\r\n")[0])
    return found.group(1).decode() if found else None


def assert_written_as_compat32_writes(message: EmailMessage) -> None:
    ours = compose.as_bytes(message)
    assert ours == compat32_bytes(message, boundary_of(ours))


def with_header(message: EmailMessage, name: str, value: str) -> EmailMessage:
    message.extra_headers = {**HEADERS, name: value}
    return message


MORE_SHAPES = {
    "long ascii subject": mail("[#11] " + "a fairly long subject, " * 8, "Text\n"),
    "long header": with_header(mail("[#12] Long header", "Text\n"), "X-Long", "v " * 100),
    # "X-Edge: " and the value: 78 characters fit on the line, 79 are folded at a space.
    "a line of 78": with_header(mail("[#19] Edge", "Text\n"), "X-Edge", "a " * 34 + "bc"),
    "a line of 79": with_header(mail("[#20] Edge", "Text\n"), "X-Edge", "a " * 35 + "b"),
    "several addresses": mail("[#13] Many", "Text\n", cc=["a@x.test", "b@x.test"] * 20),
    "every line end": mail("[#14] Ends", "one\r\ntwo\rthree\nfour", "<p>a\r\nb\rc</p>"),
    "no line end": mail("[#15] None", "no line end", "<p>no line end</p>"),
    "separators in subject": mail("[#16] a\x1cb\x1dc\x1ed \u2028 ü", "Text\n"),
    "separator in ascii subject": mail("[#17] a\x1eb", "Text\n"),
}


def test_a_line_break_of_any_kind_in_a_header_value_never_starts_a_header():
    """compat32 folds at \\x1c-\\x1e, \\v and \\f as at a line end; written so, the rest of
    the subject would be a header of its own (Python 3.12.5 and later refuse to write it)."""
    message = mail("[#17] a\x1eb\x0cBcc: someone@example.test\x1c", "Text\n")
    data = compose.as_bytes(message)
    lines = data.split(b"\r\n\r\n")[0].split(b"\r\n")
    assert b"Subject: [#17] a b Bcc: someone@example.test" in lines
    assert not any(line.lower().startswith(b"bcc") for line in lines)
    assert read(data)["Subject"] == "[#17] a b Bcc: someone@example.test"


@pytest.mark.parametrize("shape", [*SHAPES, *MORE_SHAPES])
def test_our_mails_are_the_bytes_compat32_writes(shape):
    message = {**SHAPES, **MORE_SHAPES}[shape]
    assert compose._plain_shape(message)
    assert_written_as_compat32_writes(message)


TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=400)
MIXED = st.text(st.sampled_from([*"abc xyz\t\r\n=?:;,.\"'<>", "ä", "\u2013", "🙁", "中"]))


@settings(max_examples=150, deadline=None)
@given(
    subject=st.one_of(TEXT, MIXED).filter(lambda value: "\n" not in value and "\r" not in value),
    body=st.one_of(TEXT, MIXED, st.builds(lambda a, b: a + "x" * 1000 + b, MIXED, MIXED)),
    html=st.one_of(st.none(), TEXT, MIXED),
    header=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=150),
)
def test_any_plain_mail_is_the_bytes_compat32_writes(subject, body, html, header):
    assert_written_as_compat32_writes(with_header(mail(subject, body, html), "X-Any", header))


@settings(max_examples=300, deadline=None)
@given(
    text=st.one_of(TEXT, MIXED),
    lengths=st.lists(st.integers(0, 80), min_size=1, max_size=5),
)
def test_the_subjects_encoded_words_split_where_the_stdlibs_do(text, lengths):
    def maxlengths():
        yield from lengths
        while True:
            yield lengths[-1]

    stdlib = utf8_quoted_printable().header_encode_lines(text, maxlengths())
    assert compose._UTF8_QP.header_encode_lines(text, maxlengths()) == stdlib


def test_a_boundary_found_in_a_part_is_drawn_again(monkeypatch):
    drawn = iter(["===============1111111111111111111==", "===============2222222222222222222=="])
    monkeypatch.setattr(
        email.generator.Generator, "_make_boundary", classmethod(lambda cls, text=None: next(drawn))
    )
    message = mail("[#18] Trick", "--===============1111111111111111111==\n")
    data = compose.as_bytes(message)
    assert boundary_of(data) == "===============2222222222222222222=="
    assert [part.get_content_type() for part in read(data).iter_parts()] == [
        "text/plain",
        "text/html",
    ]
    assert data == compat32_bytes(message, "===============2222222222222222222==")


@time_machine.travel("2026-11-26 01:00:00Z", tick=False)
def test_an_acknowledgement_is_the_bytes_compat32_writes(bob):
    """The real mail, its Date written here (time stands still), from both templates."""
    make_ticket(
        requester=bob, title="Drucker im 3. Stock \u2013 geht nicht", ccs=["ops@example.org"]
    )
    event = deliveries._loaded(Event.objects.latest("id"))
    for row in deliveries.planned(event):
        message = messages.build(row, event)
        ours = compose.as_bytes(message)
        assert b"\r\nDate: Thu, 26 Nov 2026 01:00:00 +0000\r\n" in ours
        assert ours == compat32_bytes(message, boundary_of(ours))
