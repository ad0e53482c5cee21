"""Bad input from any channel: an error naming the field, and nothing changed."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile

from supportdesk.errors import InvalidChange
from supportdesk.events.models import Event, Via
from supportdesk.tickets import services
from supportdesk.tickets.models import Attachment, Response, Ticket
from supportdesk.tickets.validation import TITLE_MAX

NUL = "\x00"
SURROGATE = "\ud800"  # JSON can carry "\ud800"; no database stores it


def open_ticket(user, **fields):
    values = {"via": Via.API, "type": "question", "priority": "normal", "title": "Help"}
    return services.create_ticket(acting_user=user, **{**values, **fields})


def nothing_stored(tmp_path) -> bool:
    files = tmp_path / "files"
    return (
        not Ticket.objects.exists()
        and not Response.objects.exists()
        and not Attachment.objects.exists()
        and not (files.exists() and any(p.is_file() for p in files.rglob("*")))
    )


CREATE_FIELDS = {
    "title": lambda bad: f"Help {bad}",
    "description": lambda bad: f"It {bad} broke",
    "tags": lambda bad: [f"Bug{bad}"],
    "ccs": lambda bad: [f"ops{bad}@example.org"],
    "type": lambda bad: f"question{bad}",
    "priority": lambda bad: f"normal{bad}",
}


@pytest.mark.parametrize("bad", [NUL, SURROGATE], ids=["nul", "surrogate"])
@pytest.mark.parametrize("field", sorted(CREATE_FIELDS))
def test_unstorable_characters_in_a_new_tickets_text_are_refused(bob, tmp_path, field, bad):
    with pytest.raises(InvalidChange) as refused:
        open_ticket(bob, **{field: CREATE_FIELDS[field](bad)})
    assert refused.value.field == field
    assert nothing_stored(tmp_path)


@pytest.mark.parametrize("bad", [NUL, SURROGATE], ids=["nul", "surrogate"])
@pytest.mark.parametrize("field", ["title", "description", "tags", "ccs", "type", "priority"])
def test_unstorable_characters_in_an_edit_are_refused(bob, ticket, field, bad):
    with pytest.raises(InvalidChange) as refused:
        services.update_ticket(
            ticket, acting_user=bob, via=Via.API, changes={field: CREATE_FIELDS[field](bad)}
        )
    assert refused.value.field == field
    assert Ticket.objects.get(pk=ticket.pk).version == 1
    assert ticket.events.count() == 1


@pytest.mark.parametrize("bad", [NUL, SURROGATE], ids=["nul", "surrogate"])
def test_unstorable_characters_in_a_response_are_refused(bob, ticket, bad):
    with pytest.raises(InvalidChange) as refused:
        services.add_response(ticket, acting_user=bob, via=Via.API, body=f"Hi{bad}")
    assert refused.value.field == "body"
    assert not Response.objects.exists()


@pytest.mark.parametrize("title", ["", "   ", None, 42])
def test_a_missing_or_non_text_title_is_refused(bob, tmp_path, title):
    with pytest.raises(InvalidChange) as refused:
        open_ticket(bob, title=title)
    assert refused.value.field == "title"
    assert nothing_stored(tmp_path)


def test_a_too_long_title_is_refused(bob, tmp_path):
    assert open_ticket(bob, title="x" * TITLE_MAX).title == "x" * TITLE_MAX
    Ticket.objects.all().delete()
    with pytest.raises(InvalidChange) as refused:
        open_ticket(bob, title="x" * (TITLE_MAX + 1))
    assert refused.value.field == "title"
    assert nothing_stored(tmp_path)


def test_a_title_is_one_line_because_it_becomes_a_mail_subject(bob):
    assert open_ticket(bob, title="Help\r\nBcc: everyone@example.org").title == (
        "Help Bcc: everyone@example.org"
    )


def test_an_empty_body_is_refused(bob, ticket):
    with pytest.raises(InvalidChange) as refused:
        services.add_response(ticket, acting_user=bob, via=Via.API, body=" \n ")
    assert refused.value.field == "body"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"type": "bug-report"}, "type"),
        ({"priority": "critical"}, "priority"),
        ({"tags": ["No such tag"]}, "tags"),
        ({"tags": "Bug"}, "tags"),  # a bare string is not a list of tags
        ({"ccs": "ops@example.org"}, "ccs"),
        ({"application": 987654}, "application"),
        ({"application": "shop"}, "application"),
        ({"environments": ["prod"]}, "environments"),
    ],
)
def test_unknown_values_are_refused_on_create(bob, tmp_path, fields, field):
    with pytest.raises(InvalidChange) as refused:
        open_ticket(bob, **fields)
    assert refused.value.field == field
    assert nothing_stored(tmp_path)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"status": "done"}, "status"),
        ({"status": "open\x00"}, "status"),
        ({"assignee": 987654}, "assignee"),
        ({"assignee": "alice"}, "assignee"),
        ({"problem": 987654}, "problem"),
        ({"type": "bug-report"}, "type"),
        ({"tags": ["No such tag"]}, "tags"),
    ],
)
def test_unknown_values_are_refused_on_edit(alice, bob, changes, field):
    ticket = open_ticket(bob, type="incident")
    with pytest.raises(InvalidChange) as refused:
        services.update_ticket(ticket, acting_user=alice, via=Via.API, changes=changes)
    assert refused.value.field == field
    assert Event.objects.count() == 1


@pytest.mark.parametrize("content", [b"", b"x" * 11], ids=["empty", "oversized"])
def test_empty_and_oversized_uploads_are_refused_and_nothing_created(
    bob, settings, tmp_path, content
):
    settings.UPLOAD_MAX_BYTES = 10
    good = ContentFile(b"fine", name="fine.txt")
    bad = ContentFile(content, name="bad.txt")
    with pytest.raises(InvalidChange) as refused:
        open_ticket(bob, attachments=[good, bad])
    assert refused.value.field == "attachments"
    assert "bad.txt" in str(refused.value)
    assert nothing_stored(tmp_path)


@pytest.mark.parametrize("content", [b"", b"x" * 11], ids=["empty", "oversized"])
def test_bad_uploads_on_a_response_or_ticket_store_nothing(
    bob, ticket, settings, tmp_path, content
):
    settings.UPLOAD_MAX_BYTES = 10
    with pytest.raises(InvalidChange):
        services.add_response(
            ticket,
            acting_user=bob,
            via=Via.API,
            body="See file",
            attachments=[ContentFile(content, name="bad.txt")],
        )
    with pytest.raises(InvalidChange):
        services.add_attachments(
            ticket, [ContentFile(content, name="bad.txt")], acting_user=bob, via=Via.API
        )
    assert not Response.objects.exists()
    assert not Attachment.objects.exists()
    assert ticket.events.count() == 1


def test_an_upload_at_the_limit_is_accepted(bob, settings):
    settings.UPLOAD_MAX_BYTES = 10
    ticket = open_ticket(bob, attachments=[ContentFile(b"x" * 10, name="ok.txt")])
    assert ticket.attachments.get().size == 10


def test_script_and_html_are_kept_as_typed(bob, alice):
    typed = '<script>alert("xss")</script><img src=x onerror=alert(1)>'
    ticket = open_ticket(bob, title=typed, description=typed)
    response = services.add_response(ticket, acting_user=alice, via=Via.WEB, body=typed)
    ticket.refresh_from_db()
    response.refresh_from_db()
    assert ticket.title == ticket.description == response.body == typed
