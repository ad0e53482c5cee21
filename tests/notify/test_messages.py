"""What each mail looks like: built from its delivery row, as the handler builds it, unsent."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy

import pytest
import time_machine
from django.conf import settings

from supportdesk.events.models import Event, Via
from supportdesk.notify import ids, messages
from supportdesk.notify.deliveries import planned
from supportdesk.notify.models import MailDelivery
from supportdesk.notify.preferences import set_mail_preferences
from supportdesk.tickets import services
from tests.factories import make_ticket, make_user

PLAIN_CC = "ops@example.org"


def latest_event() -> Event:
    return Event.objects.latest("id")


def built(event: Event, recipient: str) -> EmailMessage:
    """The mail the handler would send to `recipient` for `event`, as the receiver parses it."""
    [row] = [row for row in planned(event) if row.recipient == recipient]
    raw = messages.build(row, event).message().as_bytes()
    message = message_from_bytes(raw, policy=default_policy)
    assert isinstance(message, EmailMessage)
    return message


def parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None
    assert html is not None
    return text.get_content(), html.get_content()


@pytest.fixture
def ticket(bob):
    return make_ticket(requester=bob, title="Printer on fire", ccs=[PLAIN_CC])


def test_the_acknowledgement_carries_number_thread_and_automatic_headers(ticket, bob):
    event = latest_event()
    mail = built(event, bob.email)
    assert mail["Subject"] == f"[#{ticket.number}] Printer on fire"
    assert mail["Message-ID"] == ids.message_id(event.pk, bob.email)
    assert mail["In-Reply-To"] == ids.thread_id(ticket.number)
    assert mail["References"] == ids.thread_id(ticket.number)
    assert mail["Reply-To"] == f"support@{settings.MAIL_DOMAIN}"
    assert mail["From"] == settings.DEFAULT_FROM_EMAIL
    assert mail["To"] == bob.email
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail["List-Unsubscribe"] is None  # essential mail
    text, html = parts(mail)
    link = f"{settings.BASE_URL}/tickets/{ticket.number}/"
    assert f"#{ticket.number}" in text
    assert link in text
    assert f'href="{link}"' in html


def test_every_recipient_has_their_own_message_id_and_the_same_one_on_a_rebuild(ticket, bob):
    event = latest_event()
    first = {row.recipient: messages.build(row, event).message() for row in planned(event)}
    again = {row.recipient: messages.build(row, event).message() for row in planned(event)}
    assert set(first) == {bob.email, PLAIN_CC}
    assert first[bob.email]["Message-ID"] != first[PLAIN_CC]["Message-ID"]
    for address, mail in first.items():
        assert mail["Message-ID"] == again[address]["Message-ID"]
        assert mail["To"] == address
    assert MailDelivery.objects.filter(event=event).count() == 2


def test_a_response_is_re_and_shows_its_body_as_escaped_text(ticket, bob, alice):
    body = "Try <script>alert(1)</script> and **restart** it."
    services.add_response(ticket, acting_user=alice, via=Via.WEB, body=body)
    mail = built(latest_event(), bob.email)
    assert mail["Subject"] == f"Re: [#{ticket.number}] Printer on fire"
    text, html = parts(mail)
    assert body in text  # plain text: as written
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; and **restart** it." in html  # not Markdown
    assert "Alice Agent" in text


def test_user_text_in_the_title_is_escaped_in_html(bob, alice):
    ticket = make_ticket(requester=bob, title='<img src=x onerror="alert(1)">')
    _text, html = parts(built(latest_event(), bob.email))
    assert "<img" not in html
    assert "&lt;img src=x" in html
    assert ticket.title in _text


def test_times_are_in_the_recipients_time_zone(acme, alice):
    tokyo = make_user("kenji@acme.test", org=acme, time_zone="Asia/Tokyo")
    with time_machine.travel(datetime(2030, 1, 15, 12, 30, tzinfo=UTC), tick=False):
        ticket = make_ticket(requester=tokyo)
        services.add_response(ticket, acting_user=alice, via=Via.WEB, body="Hello")
    text, html = parts(built(latest_event(), tokyo.email))
    assert "15 Jan 2030, 21:30 (Asia/Tokyo)" in text
    assert "15 Jan 2030, 21:30 (Asia/Tokyo)" in html


def test_an_optional_mail_offers_unsubscribing_on_the_profile(ticket, bob, alice):
    services.update_ticket(ticket, acting_user=alice, via=Via.WEB, changes={"priority": "high"})
    event = latest_event()
    mail = built(event, bob.email)
    assert mail["Subject"] == f"Updated: [#{ticket.number}] Printer on fire"
    assert mail["List-Unsubscribe"] == f"<{settings.BASE_URL}/profile/>"
    text, _html = parts(mail)
    assert "Priority: Normal -> High" in text
    # Someone without an account has no profile to go to, and no page to open.
    plain = built(event, PLAIN_CC)
    assert plain["List-Unsubscribe"] is None
    plain_text, _ = parts(plain)
    assert "/tickets/" not in plain_text
    assert "Reply to this mail" in plain_text


def test_a_customer_mail_names_only_fields_customers_see(ticket, bob, alice):
    services.update_ticket(
        ticket,
        acting_user=alice,
        via=Via.WEB,
        changes={"priority": "high", "assignee": alice.pk},
    )
    text, html = parts(built(latest_event(), bob.email))
    assert "Priority" in text
    assert "Assignee" not in text
    assert "Assignee" not in html


def test_status_changes_say_the_new_status_in_the_subject(ticket, bob, alice):
    services.update_ticket(ticket, acting_user=alice, via=Via.WEB, changes={"status": "resolved"})
    mail = built(latest_event(), bob.email)
    assert mail["Subject"] == f"Resolved: [#{ticket.number}] Printer on fire"
    assert mail["List-Unsubscribe"] is None
    services.reopen_ticket(ticket, acting_user=alice, via=Via.WEB)
    assert built(latest_event(), bob.email)["Subject"].startswith("Re-opened: [#")


def test_an_assignment_mail_goes_to_the_agent_with_a_link(ticket, alice, dave):
    set_mail_preferences(alice, optional=True, unassigned=True)
    services.update_ticket(ticket, acting_user=dave, via=Via.WEB, changes={"assignee": alice.pk})
    mail = built(latest_event(), alice.email)
    assert mail["Subject"] == f"Assigned to you: [#{ticket.number}] Printer on fire"
    assert mail["List-Unsubscribe"] == f"<{settings.BASE_URL}/profile/>"
    text, _html = parts(mail)
    assert "Dave Admin assigned" in text
    assert f"/tickets/{ticket.number}/" in text


def test_a_resolved_problem_of_another_organization_stays_anonymous(bob, carol, alice):
    problem = make_ticket(requester=bob, type="problem", title="Acme database outage")
    incident = make_ticket(requester=carol, type="incident", title="Login slow")
    services.update_ticket(
        incident, acting_user=alice, via=Via.WEB, changes={"problem": problem.number}
    )
    services.update_ticket(problem, acting_user=alice, via=Via.WEB, changes={"status": "resolved"})
    mail = built(latest_event(), carol.email)
    assert mail["Subject"] == f"Problem resolved: [#{incident.number}] Login slow"
    assert mail["In-Reply-To"] == ids.thread_id(incident.number)  # carol's own thread
    text, html = parts(mail)
    assert "Acme" not in text
    assert "Acme" not in html
    assert f"#{problem.number}" not in text
    assert f"/tickets/{incident.number}/" in text
