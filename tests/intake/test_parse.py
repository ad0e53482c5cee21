"""The parser on the corpus, and the reply trimmer and loop guard it feeds."""

from __future__ import annotations

import pytest

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
    from email import policy

    from supportdesk.intake import parse

    assert parse.POLICY.header_factory["Subject"] is parse.POLICY.header_factory["subject"]
    ours = parse_message(corpus(name))
    monkeypatch.setattr(parse, "POLICY", policy.default)
    assert ours == parse_message(corpus(name))
