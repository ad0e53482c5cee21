"""Arbitrary and mutated messages: nothing raises out of processing, and every message ends in
a state that says what became of it."""

from __future__ import annotations

from email import message_from_bytes, policy
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supportdesk.intake import parse
from supportdesk.intake.models import MessageState
from supportdesk.intake.parse import parse_message
from tests.intake.mail import CORPUS, corpus, deliver
from tests.intake.test_parse import header_view

pytestmark = pytest.mark.django_db

FINAL = {
    MessageState.PROCESSED, MessageState.HELD, MessageState.REJECTED,
    MessageState.RECORDED, MessageState.DUPLICATE, MessageState.QUARANTINED,
}  # fmt: skip
NAMES = sorted(p.name for p in CORPUS.glob("*.eml"))
FAST = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@st.composite
def mutated(draw):
    raw = corpus(draw(st.sampled_from(NAMES)), sender="bob@acme.test", number=1000)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(raw)))
        cut = draw(st.integers(0, 20))
        raw = raw[:at] + draw(st.binary(max_size=20)) + raw[at + cut :]
    return raw


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000) | mutated())
def test_the_parser_never_raises(raw):
    parsed = parse_message(raw)
    for text in (parsed.subject, parsed.text, parsed.html, parsed.from_address, parsed.message_id):
        assert "\x00" not in text
        text.encode("utf-8")


HEADER_NAMES = (
    "From", "To", "Cc", "Sender", "Reply-To", "Subject", "Message-ID", "In-Reply-To",
    "References", "Auto-Submitted", "Precedence", "X-Autoreply", "X-Auto-Response-Suppress",
    "Return-Path", "Content-Type", "Content-Disposition", "Content-Transfer-Encoding",
    "Content-ID", "MIME-Version", "Date",
)  # fmt: skip
HEADER_VALUES = (
    "Bob <bob@acme.test>", "=?utf-8?q?Caf=C3=A9?= <c@acme.test>", "a@x.test, b@x.test", "<>",
    "undisclosed-recipients:;", "<m1@x.test> <m2@x.test>", "text/plain; charset=utf-8",
    "text/html; charset=bogus", "multipart/mixed", 'attachment; filename="a.pdf"', "inline",
    "attachment; filename*=utf-8''caf%C3%A9.txt", 'attachment; filename="=?utf-8?b?w6k=?="',
    "base64", "quoted-printable", "8bit", "=?utf-8?b?w6k=?=", "=?bogus?q?x?=", "bulk",
    "auto-replied", "(a comment) x", '"unbalanced', "text/plain; charset*=utf-8''x", "1.0",
)  # fmt: skip
CONTENT_TYPES = (
    "text/plain", "text/html", "text/enriched", "image/png", "application/pdf",
    "message/rfc822", "message/delivery-status", "text/rfc822-headers", "multipart/mixed",
    "multipart/alternative", "multipart/related", "multipart/report", "multipart/digest",
)  # fmt: skip


@st.composite
def header_lines(draw):
    lines = []
    for name in draw(st.lists(st.sampled_from(HEADER_NAMES), max_size=6)):
        value = draw(st.sampled_from(HEADER_VALUES) | st.text(max_size=30))
        encoding = draw(st.sampled_from(["utf-8", "latin-1"]))
        lines.append(f"{name}: {value}\r\n".encode(encoding, "replace"))
    return lines


@st.composite
def mime_part(draw, depth=0):
    """A MIME entity with headers the parser reads, some twice, and a body of its type."""
    kind = draw(st.sampled_from(CONTENT_TYPES))
    params = draw(st.sampled_from(["", "; charset=utf-8", "; charset=latin-1", "; charset=x",
                                   '; name="n.bin"', "; report-type=delivery-status"]))  # fmt: skip
    disposition = draw(st.sampled_from(["", "inline", 'attachment; filename="f.txt"']))
    encoding = draw(st.sampled_from(["", "base64", "quoted-printable", "8bit"]))
    head = draw(header_lines())
    if kind.startswith("multipart/") and depth < 2:
        boundary = f"b{depth}".encode()
        children = draw(st.lists(mime_part(depth + 1), max_size=3))
        params += f'; boundary="{boundary.decode()}"'
        body = b"".join(b"--" + boundary + b"\r\n" + c + b"\r\n" for c in children)
        body += b"--" + boundary + b"--\r\n"
    elif kind == "message/rfc822" and depth < 2:
        body = draw(mime_part(depth + 1))
    else:
        body = draw(st.sampled_from([b"Hello.", b"<p>Hi</p>", b"Caf\xe9", b"SGk=", b"=C3=A9"]))
    head.append(f"Content-Type: {kind}{params}\r\n".encode())
    if disposition:
        head.append(f"Content-Disposition: {disposition}\r\n".encode())
    if encoding:
        head.append(f"Content-Transfer-Encoding: {encoding}\r\n".encode())
    return b"".join(draw(st.permutations(head))) + b"\r\n" + body


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000) | mutated() | mime_part())
def test_each_header_parsed_once_gives_what_the_stdlib_policy_gives(raw):
    ours = parse_message(raw)
    with mock.patch.object(parse, "POLICY", policy.default):
        assert ours == parse_message(raw)


@st.composite
def changes(draw):
    """Calls that change a message's headers: (index of the part, method, arguments)."""
    name = st.sampled_from(HEADER_NAMES)
    value = st.sampled_from(HEADER_VALUES) | st.text(max_size=20)
    param = st.sampled_from(["charset", "boundary", "name", "filename", "x"])
    header = st.sampled_from(["Content-Type", "Content-Disposition"])
    call = st.one_of(
        st.tuples(st.just("__setitem__"), st.tuples(name, value)),
        st.tuples(st.just("__delitem__"), st.tuples(name)),
        st.tuples(st.just("replace_header"), st.tuples(name, value)),
        st.tuples(st.just("add_header"), st.tuples(name, value)),
        st.tuples(st.just("set_raw"), st.tuples(name, value)),
        st.tuples(st.just("set_param"), st.tuples(param, value, header)),
        st.tuples(st.just("del_param"), st.tuples(param, header)),
        st.tuples(st.just("set_type"), st.tuples(st.sampled_from(CONTENT_TYPES))),
        st.tuples(st.just("set_boundary"), st.tuples(st.sampled_from(["b0", "new"]))),
        st.tuples(st.just("set_charset"), st.tuples(st.sampled_from(["utf-8", "latin-1"]))),
        st.tuples(
            st.sampled_from(["make_mixed", "make_alternative", "clear_content"]), st.just(())
        ),
    )
    return draw(st.lists(st.tuples(st.integers(0, 20), call), min_size=1, max_size=6))


def attempt(call, *args):
    try:
        call(*args)
    except Exception as error:  # noqa: BLE001  (the reference must fail alike)
        return type(error).__name__
    return None


@settings(max_examples=100, deadline=None)
@given(raw=mime_part(), steps=changes())
def test_headers_changed_after_reading_read_as_with_the_stdlib_policy(raw, steps):
    ours = message_from_bytes(raw, policy=parse.POLICY)
    reference = message_from_bytes(raw, policy=policy.default)
    assert header_view(ours) == header_view(reference)
    for index, (method, args) in steps:
        parts = [list(msg.walk()) for msg in (ours, reference)]
        results = [attempt(getattr(p[index % len(p)], method), *args) for p in parts]
        assert results[0] == results[1]
        assert header_view(ours) == header_view(reference)


def check(message):
    assert message.state in FINAL
    if message.state == MessageState.PROCESSED:
        assert message.ticket is not None
    if message.state == MessageState.QUARANTINED:
        assert message.error


@FAST
@given(raw=st.binary(max_size=1500))
def test_arbitrary_bytes_end_in_a_final_state(bob, raw):
    check(deliver(raw))


@FAST
@given(raw=mutated())
def test_mutated_corpus_messages_end_in_a_final_state(bob, raw):
    check(deliver(raw))
