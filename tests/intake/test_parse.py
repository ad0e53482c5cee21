"""The parser on the corpus, and the reply trimmer and loop guard it feeds."""

from __future__ import annotations

import copy
from email import message_from_bytes, policy

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from supportdesk.intake import parse
from supportdesk.intake.loop_guard import automatic_reason
from supportdesk.intake.parse import parse_message, trim_reply
from tests.intake.mail import CORPUS, corpus, plain


def test_a_multipart_alternative_gives_its_text_part_and_addresses():
    parsed = parse_message(corpus("alternative.eml"))
    assert parsed.text.strip() == "The primary database stopped answering at 09:58."
    assert parsed.html == ""
    assert (parsed.from_address, parsed.from_name) == ("bob@acme.test", "Bob Customer")
    assert parsed.cc == ("ops@acme.test", "support@support.localhost")
    assert parsed.attachments == ()  # the HTML rendering is not an attachment
    assert automatic_reason(parsed) == ""


def test_html_only_is_sanitized_and_rendered_as_text():
    parsed = parse_message(corpus("html_only.eml"))
    assert "<script" not in parsed.html
    assert "javascript:" not in parsed.html
    assert "onclick" not in parsed.html
    assert "<p>the invoice page is blank.</p>" in parsed.html
    assert parsed.text.splitlines() == ["Hello team,", "the invoice page is blank."]


def test_a_bounce_names_the_message_it_returns():
    parsed = parse_message(
        corpus("bounce.eml", in_reply_to="<e7.abc@x.test>", recipient="g@a.test")
    )
    assert parsed.report is not None
    assert parsed.report.message_ids == ("<e7.abc@x.test>",)
    assert (parsed.report.status, parsed.report.action) == ("5.1.1", "failed")
    assert automatic_reason(parsed) == "empty Return-Path"


@pytest.mark.parametrize(
    ("headers", "automatic"),
    [
        ({"Auto_Submitted": "auto-replied"}, True),
        ({"Auto_Submitted": "no"}, False),
        ({"Precedence": "bulk"}, True),
        ({"Precedence": "list"}, True),
        ({"X_Autoreply": "yes"}, True),
        ({"X_Auto_Response_Suppress": "All"}, True),
        ({"Return_Path": "<>"}, True),
        ({"Return_Path": "<bob@acme.test>"}, False),
        ({}, False),
    ],
)
def test_the_loop_guard_knows_machine_mail(headers, automatic):
    parsed = parse_message(plain(sender="bob@acme.test", **headers))
    assert bool(automatic_reason(parsed)) is automatic


def test_mail_from_our_own_domain_or_a_mailer_daemon_is_machine_mail():
    assert automatic_reason(parse_message(plain(sender="support@support.localhost")))
    assert automatic_reason(parse_message(plain(sender="MAILER-DAEMON@mx.test")))


def test_a_forwarded_message_the_generator_cannot_write_is_kept_as_it_came():
    """Found by tests/intake/test_fuzz.py: undecodable bytes after a CR in a header of the
    forwarded message made the generator raise, and the attachment held the repr of a list."""
    inner = (
        b"From: Bob <bob@acme.test>\r\nSubject: Outage\r\n"
        b'Content-Type: multipart/mixed; boundary="b1"\r\nFrom: \r\xc2\x80\r\n\r\n'
        b"--b1\r\nContent-Type: text/plain\r\n\r\nThe database is down.\r\n--b1--\r\n"
    )
    raw = b"Content-Type: message/rfc822\r\n\r\n" + inner
    (forwarded,) = parse_message(raw).attachments
    assert forwarded.content_type == "message/rfc822"
    assert b"object at" not in forwarded.content
    assert forwarded.content.startswith(b"From: Bob <bob@acme.test>\r\nSubject: Outage\r\n")
    assert b"\xc2\x80" in forwarded.content  # the bytes the generator could not write
    assert b"--b1\r\nContent-Type: text/plain\r\n\r\nThe database is down." in forwarded.content
    assert forwarded.content.endswith(b"--b1--\r\n")
    assert parse_message(forwarded.content).text.strip() == "The database is down."


def test_a_message_without_id_gets_one_from_its_bytes():
    first = parse_message(b"Subject: x\r\n\r\nbody")
    assert first.message_id.startswith("<sha256-")
    assert not first.has_message_id
    assert first.message_id == parse_message(b"Subject: x\r\n\r\nbody").message_id
    assert first.message_id != parse_message(b"Subject: y\r\n\r\nbody").message_id


def test_undecodable_headers_and_nul_bytes_come_out_storable():
    parsed = parse_message(b"From: b\xffad <x@y.test>\r\nSubject: caf\xe9\x00\r\n\r\nA\x00B \xff")
    for value in (parsed.subject, parsed.text, parsed.from_name):
        assert "\x00" not in value
        value.encode("utf-8")  # no lone surrogate
    assert parsed.from_address == "x@y.test"


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("Thanks!\n\n-----Original Message-----\nFrom: a\nold", "Thanks!"),
        ("Yes.\n\nFrom: Support <s@x>\nSent: Monday\nTo: b\n\nold", "Yes."),
        ("Fine.\n\nOn Mon, Nov 23, 2026 at 4:12 PM Support <s@x> wrote:\n> old", "Fine."),
        ("Fine.\n\nOn Mon, Nov 23, 2026 at 4:12 PM Support <s@x>\nwrote:\n> old", "Fine."),
        ("Fine.\n-- \nBob\nAcme", "Fine."),
        ("Inline answer\n> quoted\nmine\n\n> old\n> older", "Inline answer\n> quoted\nmine"),
        ("> all quote\n> nothing new", "> all quote\n> nothing new"),
        (
            "From: the start of a line in a story\nno header follows",
            "From: the start of a line in a story\nno header follows",
        ),
    ],
)
def test_quoted_history_and_signatures_are_trimmed(text, kept):
    assert trim_reply(text) == kept


@pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.glob("*.eml")))
def test_the_header_classes_made_once_parse_as_the_stdlib_policy_does(name, monkeypatch):
    assert parse.POLICY.header_factory["Subject"] is parse.POLICY.header_factory["subject"]
    assert all(isinstance(p, parse._HeaderOnceMessage) for p in _parsed(corpus(name)).walk())
    ours = parse_message(corpus(name))
    monkeypatch.setattr(parse, "POLICY", policy.default)
    assert ours == parse_message(corpus(name))


# Headers a test reads on every part besides the part's own, present or not.
READ = ("content-type", "content-disposition", "content-transfer-encoding", "subject", "x-new",
        "mime-version", "from", "to")  # fmt: skip


def _parsed(raw: bytes, with_policy=None):
    return message_from_bytes(raw, policy=with_policy or parse.POLICY)


def _attempt(read):
    try:
        return read()
    except Exception as error:  # noqa: BLE001  (the reference must raise the same)
        return type(error).__name__


def header_view(msg):
    """What reading the message tells, part by part: every header as get(), [] and get_all()
    give it, and what the content-type helpers and get_body() make of them."""
    parts = list(msg.walk())
    view = []
    for part in parts:
        names = sorted({k.lower() for k in part} | set(READ))
        headers = {
            name: (
                _attempt(lambda p=part, n=name: (str(p.get(n)), type(p.get(n)).__name__)),
                _attempt(lambda p=part, n=name: str(p[n])),
                _attempt(lambda p=part, n=name: [str(h) for h in p.get_all(n, [])]),
                name in part,
            )
            for name in names
        }
        body = _attempt(lambda p=part: p.get_body())
        view.append(
            (
                headers,
                [(k, str(v)) for k, v in part.raw_items()],
                _attempt(part.get_content_type),
                _attempt(part.get_params),
                _attempt(part.get_filename),
                _attempt(part.get_content_charset),
                _attempt(part.get_boundary),
                _attempt(part.is_attachment),
                next((i for i, p in enumerate(parts) if p is body), body),
            )
        )
    return view


@pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.glob("*.eml")))
def test_every_header_of_every_part_reads_as_with_the_stdlib_policy(name):
    ours = _parsed(corpus(name))
    reference = header_view(_parsed(corpus(name), policy.default))
    assert header_view(ours) == reference
    assert header_view(ours) == reference  # read again, from what the first reading kept


MULTIPART = b"""From: Bob <bob@acme.test>
Subject: =?utf-8?q?Caf=C3=A9?=
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

--outer
Content-Type: text/plain; charset=utf-8

Hello.
--outer
Content-Type: application/pdf; name="a.pdf"
Content-Disposition: attachment; filename="a.pdf"
Content-Transfer-Encoding: base64

JVBERi0=
--outer--
"""

# Every way to change a message's headers, public or not; each on a message whose every
# header was read first, so a kept header that is not read anew shows.
CHANGES = {
    "setitem": lambda m: m.__setitem__("X-New", "added"),
    "delitem": lambda m: m.__delitem__("Content-Type"),
    "delitem and setitem": lambda m: (m.__delitem__("Subject"), m.__setitem__("Subject", "b")),
    "add_header": lambda m: m.add_header("Content-Disposition", "inline", filename="b.txt"),
    "replace_header": lambda m: m.replace_header("Content-Type", "text/html; charset=latin-1"),
    "set_raw after del": lambda m: (
        m.__delitem__("Content-Type"),
        m.set_raw("Content-Type", "a/b"),
    ),
    "set_param": lambda m: m.set_param("charset", "iso-8859-1"),
    "set_param disposition": lambda m: m.set_param("filename", "c.pdf", "Content-Disposition"),
    "del_param": lambda m: m.del_param("boundary"),
    "set_type": lambda m: m.set_type("multipart/alternative"),
    "set_boundary": lambda m: m.set_boundary("changed"),
    "set_payload with a charset": lambda m: m.set_payload("caf\xe9", "iso-8859-1"),
    "set_charset": lambda m: m.set_charset("utf-8"),
    "set_default_type": lambda m: (m.__delitem__("Content-Type"), m.set_default_type("a/b")),
    "make_mixed": lambda m: m.get_payload(0).make_mixed(),
    "make_alternative": lambda m: m.get_payload(0).make_alternative(),
    "make_related": lambda m: m.get_payload(0).make_related(),
    "add_attachment": lambda m: m.add_attachment(b"x", "application", "zip", filename="z.zip"),
    "add_related": lambda m: m.get_payload(0).add_related("<p>x</p>", "html"),
    "add_alternative": lambda m: m.get_payload(0).add_alternative("<p>x</p>", "html"),
    "set_content": lambda m: m.get_payload(0).set_content("new text", subtype="html"),
    "clear": lambda m: m.clear(),
    "clear_content": lambda m: m.clear_content(),
    "headers rewritten directly": lambda m: setattr(m, "_headers", m._headers[::-1]),
    "another policy": lambda m: setattr(m, "policy", policy.compat32),
}


@pytest.mark.parametrize("change", CHANGES.values(), ids=CHANGES.keys())
def test_a_changed_message_reads_its_changed_headers(change):
    ours, reference = _parsed(MULTIPART), _parsed(MULTIPART, policy.default)
    assert header_view(ours) == header_view(reference)
    assert _attempt(lambda: change(ours)) == _attempt(lambda: change(reference))
    assert header_view(ours) == header_view(reference)


def test_a_replaced_header_is_read_anew_not_from_what_was_kept():
    msg = _parsed(MULTIPART)
    assert msg.get_content_type() == "multipart/mixed"
    assert msg["content-type"] is msg.get("Content-Type")  # kept, not parsed twice
    msg.replace_header("Content-Type", "text/plain")
    assert msg.get_content_type() == "text/plain"
    msg.set_param("charset", "latin-1")
    assert msg.get_content_charset() == "latin-1"
    assert msg["Content-Type"].params == {"charset": "latin-1"}
    del msg["Content-Type"]
    assert msg.get("content-type") is None
    assert msg.get_content_type() == "text/plain"  # the default type
    msg.set_raw("Content-Type", "image/png")
    assert msg.get_content_type() == "image/png"
    del msg["Subject"]
    msg["Subject"] = "Plain"
    assert str(msg["subject"]) == "Plain"
    assert [str(h) for h in msg.get_all("subject")] == ["Plain"]


def test_copies_and_their_originals_read_their_own_headers():
    """A shallow copy shares the header list with its original (so a change in place shows in
    both), a deep copy does not: both as with the stdlib policy."""
    ours, reference = _parsed(MULTIPART), _parsed(MULTIPART, policy.default)
    views = []
    for msg in (ours, reference):
        assert str(msg["Subject"]) == "Café"
        shallow, deep = copy.copy(msg), copy.deepcopy(msg)
        shallow.replace_header("Subject", "shallow")
        shallow["X-New"] = "shallow"
        deep.replace_header("Subject", "deep")
        deep.get_payload(1).set_param("filename", "b.pdf", "Content-Disposition")
        del deep["Content-Type"]
        views.append([header_view(m) for m in (msg, shallow, deep)])
    assert views[0] == views[1]
    assert str(ours["Subject"]) == "shallow"
    assert ours.get_payload(1).get_filename() == "a.pdf"


def test_a_part_the_generator_copies_and_changes_is_written_with_its_changed_headers():
    """To write an 8-bit body as 7-bit text the generator deep-copies the part, sets a new
    Content-Transfer-Encoding and Content-Type on the copy and reads them back."""
    raw = (
        b"From: a@acme.test\nSubject: inner\nContent-Type: text/plain; charset=latin-1\n"
        b"Content-Transfer-Encoding: 8bit\n\nCaf\xe9 cr\xe8me\n"
    )
    ours, reference = _parsed(raw), _parsed(raw, policy.default)
    assert ours.get_content_charset() == "latin-1"  # read, and kept, before writing
    written = ours.as_string()
    assert "Content-Transfer-Encoding: quoted-printable" in written
    assert written == reference.as_string()
    assert header_view(ours) == header_view(reference)  # the original is unchanged


# ---------------------------------------------------------------- plain addresses

_ATEXT = "abcXYZ019!#$%&'*+/=?^_`{|}~-"
_ADDRESS_VALUES = st.one_of(
    st.text(alphabet=_ATEXT + ' .@<>",()\t', max_size=40),
    st.builds(
        "{}{}{}<{}@{}>{}".format,
        st.sampled_from(["", " ", "\r\n "]),
        st.text(alphabet=_ATEXT + ' .\t"', max_size=15),
        st.sampled_from(["", " ", "\t", "\r\n\t"]),
        st.text(alphabet=_ATEXT + ".", min_size=1, max_size=12),
        st.text(alphabet=_ATEXT + ".[]", min_size=1, max_size=12),
        st.sampled_from(["", " ", " (comment)", ", other@example.org", "\r\n "]),
    ),
    st.builds(
        "{}@{}{}".format,
        st.text(alphabet=_ATEXT + ".", min_size=1, max_size=12),
        st.text(alphabet=_ATEXT + ".", min_size=1, max_size=12),
        st.sampled_from(["", " ", ",", " <x@y>"]),
    ),
)


@given(value=_ADDRESS_VALUES, name=st.sampled_from(["From", "To", "Cc"]))
@example(value="Bob Customer <Bob@Acme.TEST>", name="From")
@example(value="=?utf-8?q?J=C3=B6rg?= <j@example.de>", name="From")
@example(value="J. Smith <j@x.org>", name="To")
@example(value="a@b, c@d", name="To")
@example(value="Bob\r\n Customer <b@x.org>", name="From")
def test_a_plain_address_reads_as_policy_default_reads_it(value, name):
    raw = f"{name}: {value}\r\nSubject: s\r\n\r\nbody\r\n".encode()
    msg = message_from_bytes(raw, policy=parse.POLICY)
    assert parse._address_pairs(msg, name) == parse._parsed_address_pairs(msg, name)


def test_plain_addresses_skip_the_header_parser_and_others_do_not(monkeypatch):
    parsed: list[str] = []
    real = parse._parsed_address_pairs
    monkeypatch.setattr(
        parse, "_parsed_address_pairs", lambda msg, name: parsed.append(name) or real(msg, name)
    )
    message = parse_message(
        b"From: Bob Customer <Bob@Acme.test>\r\nTo: support@example.org\r\n"
        b'Cc: "Smith, Jo" <jo@acme.test>, ann@acme.test\r\nSubject: s\r\n\r\nbody\r\n'
    )
    assert (message.from_name, message.from_address) == ("Bob Customer", "bob@acme.test")
    assert message.to == ("support@example.org",)
    assert message.cc == ("jo@acme.test", "ann@acme.test")
    assert parsed == ["Cc"]
