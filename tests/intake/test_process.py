"""Corpus messages through the real processing run: what each becomes."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.conf import settings
from django.core.files.storage import default_storage
from django.utils import timezone

from supportdesk.errors import Forbidden, InvalidChange
from supportdesk.events.models import Event, EventKind, HandlerRun
from supportdesk.events.tasks import execute
from supportdesk.intake import services as intake
from supportdesk.intake.models import InboundMessage, MessageState, UnknownSender
from supportdesk.intake.process import process_message
from supportdesk.notify import ids
from supportdesk.notify.models import DeliveryState, MailDelivery
from supportdesk.tickets.models import Response, Status, Ticket, TicketType
from tests.factories import make_ticket, make_user
from tests.intake.mail import corpus, deliver, mailbox, plain, run_processing, store

pytestmark = pytest.mark.django_db


def sent_delivery(ticket, recipient):
    """Run the ticket's acknowledgement as the worker does: the real Message-ID we sent."""
    for run in HandlerRun.objects.filter(event__ticket=ticket, handler="mail_on_created"):
        execute(run.pk)
    return MailDelivery.objects.get(ticket=ticket, recipient=recipient)


def attachment_names(obj):
    return sorted(a.filename for a in obj.attachments.all())


def test_a_mail_to_sysops_opens_an_urgent_incident_for_its_sender(bob):
    message = deliver(corpus("alternative.eml"), to="sysops")
    assert message.state == MessageState.PROCESSED
    ticket = message.ticket
    assert (ticket.type.key, ticket.priority.key) == ("incident", "urgent")
    assert ticket.requester == bob
    assert ticket.channel == "email"
    assert ticket.title == "Database down"
    assert ticket.description == "The primary database stopped answering at 09:58."
    assert sorted(c.email for c in ticket.ccs.all()) == ["ops@acme.test"]  # not our mailbox
    assert attachment_names(ticket) == ["original-message.eml"]
    original = ticket.attachments.get()
    assert original.file.name == message.raw  # the kept raw file itself, not a copy
    assert original.size == len(corpus("alternative.eml"))
    with original.file.open("rb") as kept:
        assert kept.read() == corpus("alternative.eml")
    with pytest.raises(InvalidChange):
        intake.delete_message(message)  # so the file the ticket shows can never go
    created = Event.objects.get(ticket=ticket, kind=EventKind.CREATED)
    assert created.via == "email"
    assert created.runs.filter(handler="mail_on_created").exists()  # the acknowledgement
    assert message.message_id == "<alt-1@acme.test>"
    assert message.from_address == "bob@acme.test"


def test_an_html_only_mail_becomes_safe_text(bob):
    ticket = deliver(corpus("html_only.eml")).ticket
    assert "the invoice page is blank." in ticket.description
    assert "Hello team," in ticket.description
    for unsafe in ("<script", "alert", "javascript:", "onclick", "color: red"):
        assert unsafe not in ticket.description


@pytest.mark.parametrize(
    ("name", "title", "text"),
    [
        ("latin1.eml", "Grüße aus Köln", "Schöne Grüße, die Straße ist gesperrt."),
        (
            "cp1252.eml",
            "\u201cQuoted\u201d price",
            "The \u201cnew\u201d price is 20 \u20ac \u2013 please",
        ),
        ("shift_jis.eml", "障害報告", "サーバーが停止しました。"),
        ("unknown_charset.eml", "odd subject", "Plain words in an unknown charset"),
    ],
)
def test_any_charset_and_encoded_word_subject_is_read(bob, name, title, text):
    message = deliver(corpus(name))
    assert message.state == MessageState.PROCESSED
    assert message.ticket.title.endswith(title)
    assert text in message.ticket.description


def test_a_forwarded_message_is_kept_as_an_attachment(bob):
    ticket = deliver(corpus("forwarded.eml")).ticket
    assert ticket.title == "Certificate expiry warning"
    assert ticket.description == "See the warning below, is this ours?"
    assert attachment_names(ticket) == ["Certificate expiry warning.eml", "original-message.eml"]
    forwarded = ticket.attachments.get(filename="Certificate expiry warning.eml")
    with forwarded.file.open("rb") as content:
        assert b"expires in 3 days" in content.read()


def test_a_message_without_id_or_date_is_processed_once_by_its_digest(bob):
    raw = corpus("no_message_id.eml")
    first = deliver(raw)
    assert first.state == MessageState.PROCESSED
    assert first.message_id.startswith("<sha256-")
    again = deliver(raw)
    assert again.state == MessageState.DUPLICATE
    assert again.ticket is None
    assert Ticket.objects.count() == 1


def test_empty_attachments_are_noted_not_stored_and_inline_images_kept(bob):
    ticket = deliver(corpus("zero_byte_attachment.eml")).ticket
    assert attachment_names(ticket) == ["original-message.eml", "screen.png"]
    assert "[export.csv was empty and is not attached.]" in ticket.description


def test_an_attachment_over_the_upload_limit_is_dropped_with_a_note(bob, settings):
    raw = corpus("big_attachment.eml")
    assert attachment_names(deliver(raw).ticket) == [
        "huge.log",
        "original-message.eml",
        "small.log",
    ]
    settings.UPLOAD_MAX_BYTES = 5000  # the huge log (6,000 bytes) is over, and so is the mail
    message = deliver(raw.replace(b"<big-1@", b"<big-2@"))
    assert message.state == MessageState.PROCESSED
    assert attachment_names(message.ticket) == ["small.log"]
    assert "[huge.log (0 MB) is larger than the 0 MB limit and is not attached.]" in (
        message.ticket.description
    )
    assert "original-message.eml" in message.ticket.description  # kept in the intake store
    assert default_storage.exists(message.raw)


def test_an_outlook_reply_lands_on_its_ticket_without_the_quoted_history(bob):
    ticket = make_ticket(requester=bob)
    delivery = sent_delivery(ticket, bob.email)
    raw = corpus("outlook_reply.eml", in_reply_to=delivery.message_id, number=ticket.number)
    message = deliver(raw)
    assert message.state == MessageState.PROCESSED
    assert message.ticket == ticket
    response = message.response
    assert response.ticket == ticket
    assert response.author == bob
    assert not response.is_internal
    assert response.body == "It works again after the restart, thanks."
    assert attachment_names(response) == ["original-message.eml"]  # the whole mail, kept
    assert Ticket.objects.count() == 1


def test_an_outlook_from_sent_block_is_trimmed(bob):
    ticket = make_ticket(requester=bob)
    delivery = sent_delivery(ticket, bob.email)
    raw = corpus("outlook_from_sent.eml", in_reply_to=delivery.message_id, number=ticket.number)
    assert deliver(raw).response.body == "Still broken for the admin account."


def test_a_gmail_reply_threads_by_references_to_the_ticket_thread(bob):
    ticket = make_ticket(requester=bob)
    raw = corpus("gmail_reply.eml", in_reply_to=ids.thread_id(ticket.number), number=ticket.number)
    message = deliver(raw)
    assert message.ticket == ticket
    assert message.response.body == "The error is back since this morning."


def test_a_reply_to_a_received_message_threads_to_its_ticket(bob):
    first = deliver(plain(sender="bob@acme.test", subject="First", message_id="<first@acme.test>"))
    reply = deliver(
        plain(
            sender="bob@acme.test",
            subject="more",
            message_id="<second@acme.test>",
            In_Reply_To="<first@acme.test>",
        )
    )
    assert reply.ticket == first.ticket
    assert reply.response is not None


def test_a_subject_tag_threads_for_people_on_the_ticket(bob, acme):
    colleague = make_user("eve@acme.test", org=acme)
    ticket = make_ticket(requester=bob)
    for sender in (bob, colleague):
        message = deliver(plain(sender=sender.email, subject=f"Re: [#{ticket.number}] Cannot log in",
                                body=f"from {sender.email}"))  # fmt: skip
        assert message.ticket == ticket
        assert message.response.author == sender


def test_a_subject_tag_from_an_outsider_does_not_thread(bob, carol):
    ticket = make_ticket(requester=bob)
    message = deliver(plain(sender="carol@globex.test", subject=f"Re: [#{ticket.number}] hi"))
    assert message.state == MessageState.PROCESSED
    assert message.ticket != ticket
    assert message.ticket.requester == carol
    assert message.ticket.title == "hi"
    assert not ticket.responses.exists()


def test_a_reference_from_an_outsider_does_not_thread(bob, carol):
    ticket = make_ticket(requester=bob)
    message = deliver(
        plain(
            sender="carol@globex.test",
            subject="Re: yours",
            In_Reply_To=ids.thread_id(ticket.number),
        )
    )
    assert message.ticket.requester == carol
    assert not ticket.responses.exists()


def test_a_reply_to_a_recently_closed_ticket_reopens_it(bob, alice):
    ticket = make_ticket(requester=bob, status=Status.CLOSED, agent=alice)
    message = deliver(
        plain(
            sender="bob@acme.test", subject=f"Re: [#{ticket.number}] Cannot log in", body="Again."
        )
    )
    ticket.refresh_from_db()
    assert ticket.status == Status.OPEN
    assert message.ticket == ticket
    assert message.response.body == "Again."
    assert ticket.events.filter(kind=EventKind.REOPENED, via="email").exists()


def test_a_reply_to_a_ticket_closed_long_ago_opens_a_follow_up(bob, alice):
    ticket = make_ticket(requester=bob, status=Status.CLOSED, agent=alice)
    later = timezone.now() + timedelta(days=settings.MAIL_REOPEN_DAYS + 1)
    with time_machine.travel(later):
        message = deliver(plain(sender="bob@acme.test", subject=f"Re: [#{ticket.number}] Cannot log in",
                                body="It is back."))  # fmt: skip
    ticket.refresh_from_db()
    assert ticket.status == Status.CLOSED
    assert not ticket.responses.exists()
    follow_up = message.ticket
    assert follow_up != ticket
    assert follow_up.description.startswith(f"Follow-up to #{ticket.number}")
    assert follow_up.title == "Cannot log in"


def test_an_auto_reply_is_recorded_on_its_ticket_and_changes_nothing(bob):
    ticket = make_ticket(requester=bob)
    delivery = sent_delivery(ticket, bob.email)
    events = Event.objects.count()
    raw = corpus("auto_reply.eml", in_reply_to=delivery.message_id, number=ticket.number)
    message = deliver(raw)
    assert message.state == MessageState.RECORDED
    assert message.ticket == ticket
    assert message.response is None
    assert "Auto-Submitted" in message.error
    assert Event.objects.count() == events + 1  # only the MAIL_RECEIVED the store wrote
    assert Ticket.objects.count() == 1


def test_an_auto_reply_that_threads_nowhere_opens_nothing(bob):
    message = deliver(plain(sender="bob@acme.test", subject="Out of office", Precedence="bulk"))
    assert message.state == MessageState.RECORDED
    assert message.ticket is None
    assert not Ticket.objects.exists()


def test_a_bounce_of_our_mail_marks_that_delivery_failed(bob):
    ticket = make_ticket(requester=bob, ccs=["gone@acme.test"])
    cc_delivery = sent_delivery(ticket, "gone@acme.test")
    raw = corpus("bounce.eml", in_reply_to=cc_delivery.message_id, recipient="gone@acme.test",
                 number=ticket.number)  # fmt: skip
    message = deliver(raw)
    assert message.state == MessageState.RECORDED
    assert message.ticket == ticket
    cc_delivery.refresh_from_db()
    assert cc_delivery.state == DeliveryState.FAILED
    assert "5.1.1" in cc_delivery.last_error
    assert MailDelivery.objects.get(ticket=ticket, recipient=bob.email).state == DeliveryState.SENT
    assert Ticket.objects.count() == 1


@pytest.mark.parametrize(
    ("policy", "sender", "state"),
    [
        (UnknownSender.HOLD, "new@acme.test", MessageState.HELD),
        (UnknownSender.HOLD, "stranger@example.org", MessageState.HELD),
        (UnknownSender.CONTACT, "stranger@example.org", MessageState.HELD),
        (UnknownSender.REJECT, "stranger@example.org", MessageState.REJECTED),
        (UnknownSender.REJECT, "new@acme.test", MessageState.HELD),  # a customer's domain
    ],
)
def test_an_unknown_sender_is_held_or_rejected_per_mailbox(acme, policy, sender, state):
    acme.mail_domains = "acme.test, acme.example"
    acme.save()
    box = mailbox("support")
    box.unknown_sender = policy
    box.save()
    message = deliver(plain(sender=sender))
    assert message.state == state
    assert message.ticket is None
    assert sender in message.error
    assert not Ticket.objects.exists()
    assert not Event.objects.exclude(kind=EventKind.MAIL_RECEIVED).exists()  # nobody mailed


def test_the_contact_policy_creates_a_customer_in_the_domains_organization(acme):
    acme.mail_domains = "acme.example,ACME.test"
    acme.save()
    box = mailbox("support")
    box.unknown_sender = UnknownSender.CONTACT
    box.save()
    message = deliver(plain(sender="New Person <New@Acme.test>"))
    assert message.state == MessageState.PROCESSED
    requester = message.ticket.requester
    assert (requester.email, requester.organization, requester.is_customer) == (
        "new@acme.test", acme, True)  # fmt: skip
    assert requester.name == "New Person"


def test_a_deactivated_user_is_rejected(bob):
    bob.is_active = False
    bob.save()
    message = deliver(plain(sender="bob@acme.test"))
    assert message.state == MessageState.REJECTED
    assert not Ticket.objects.exists()


def test_an_agent_replies_by_mail_but_opens_no_ticket(bob, alice):
    ticket = make_ticket(requester=bob)
    reply = deliver(
        plain(sender=alice.email, subject="Re: x", In_Reply_To=ids.thread_id(ticket.number))
    )
    assert reply.response.author == alice
    assert not reply.response.is_internal
    fresh = deliver(plain(sender=alice.email, subject="New thing"))
    assert fresh.state == MessageState.REJECTED
    assert Ticket.objects.count() == 1


def test_a_sender_over_the_hourly_rate_is_held(bob, settings):
    settings.MAIL_NEW_TICKETS_PER_HOUR = 2
    states = [deliver(plain(sender="bob@acme.test", subject=f"n{i}")).state for i in range(3)]
    assert states == [MessageState.PROCESSED, MessageState.PROCESSED, MessageState.HELD]
    assert Ticket.objects.count() == 2


def test_the_rate_counts_only_the_last_hour_through_an_index_on_sender_and_time(bob, settings):
    """Every new mail asks the count: without its index it reads every processed message."""
    from django.db import connection

    settings.MAIL_NEW_TICKETS_PER_HOUR = 2
    with time_machine.travel(timezone.now() - timedelta(hours=2)):
        for i in range(2):
            assert deliver(plain(sender=bob.email, subject=f"old {i}")).state == "processed"
    states = [deliver(plain(sender=bob.email, subject=f"new {i}")).state for i in range(3)]
    assert states == [MessageState.PROCESSED, MessageState.PROCESSED, MessageState.HELD]

    table = InboundMessage._meta.db_table
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, table)
    assert any(
        c["index"] and c["columns"] == ["from_address", "processed_at"] for c in found.values()
    )
    if connection.vendor == "sqlite":
        from supportdesk.intake import loop_guard

        sql = loop_guard._opened_sql().replace("%s", "?")
        with connection.cursor() as cursor:
            plan = cursor.execute(f"EXPLAIN QUERY PLAN {sql}", ["x", "2026-01-01", "processed"])
            details = " ".join(str(row[-1]) for row in plan.fetchall())
        assert "inbound_sender_recent" in details


def test_processing_twice_creates_nothing_twice(bob):
    message = store(corpus("alternative.eml"), to="sysops")
    run_processing(message)
    run = HandlerRun.objects.get(
        handler="process_on_mail_received", event__changes__message__1=message.pk
    )
    HandlerRun.objects.filter(pk=run.pk).update(state="pending", lease_until=None)
    execute(run.pk)  # the outbox delivers at least once
    process_message(message)
    assert Ticket.objects.count() == 1
    message.refresh_from_db()
    assert message.state == MessageState.PROCESSED


def test_the_same_message_stored_twice_is_processed_once(bob, alice):
    ticket = make_ticket(requester=bob)
    raw = plain(
        sender="bob@acme.test", subject=f"Re: [#{ticket.number}]", message_id="<twice@acme.test>"
    )
    smtp_copy, imap_copy = store(raw), store(raw)
    assert run_processing(imap_copy).state == MessageState.PROCESSED
    assert run_processing(smtp_copy).state == MessageState.DUPLICATE
    assert Response.objects.filter(ticket=ticket).count() == 1


def test_a_message_that_fails_is_quarantined_then_reprocessed(bob):
    question = TicketType.objects.get(key="question")
    question.is_hidden = True  # the mailbox's type is no longer offered: the create fails
    question.save()
    message = deliver(plain(sender="bob@acme.test", subject="Help"))
    assert message.state == MessageState.QUARANTINED
    assert "InvalidChange" in message.error
    assert message.from_address == "bob@acme.test"
    assert not Ticket.objects.exists()
    run = HandlerRun.objects.get(
        handler="process_on_mail_received", event__changes__message__1=message.pk
    )
    assert run.state == "done"  # kept and visible, not retried forever
    question.is_hidden = False
    question.save()
    assert intake.reprocess(message).state == MessageState.PROCESSED
    with pytest.raises(InvalidChange):
        intake.reprocess(message)


def test_a_missing_raw_file_quarantines_the_message(bob):
    message = store(plain(sender="bob@acme.test"))
    default_storage.delete(message.raw)
    assert run_processing(message).state == MessageState.QUARANTINED


def test_agents_accept_a_held_message_into_an_organization(acme, alice, bob):
    message = deliver(plain(sender="stranger@example.org", subject="Please help"))
    assert message.state == MessageState.HELD
    with pytest.raises(Forbidden):
        intake.accept_held(message, acting_user=bob)
    with pytest.raises(InvalidChange):
        intake.accept_held(message, acting_user=alice)  # no domain names an organization
    message.refresh_from_db()
    assert message.state == MessageState.HELD
    accepted = intake.accept_held(message, acting_user=alice, organization=acme)
    assert accepted.state == MessageState.PROCESSED
    assert accepted.ticket.requester.email == "stranger@example.org"
    assert accepted.ticket.organization == acme


def test_agents_reject_and_delete_held_messages(alice, bob):
    message = deliver(plain(sender="stranger@example.org"))
    with pytest.raises(Forbidden):
        intake.reject_held(message, acting_user=bob)
    rejected = intake.reject_held(message, acting_user=alice)
    assert rejected.state == MessageState.REJECTED
    assert alice.email in rejected.error
    with pytest.raises(InvalidChange):
        intake.accept_held(message, acting_user=alice)
    name = message.raw
    intake.delete_message(message)
    assert not InboundMessage.objects.filter(pk=message.pk).exists()
    processed = deliver(plain(sender="bob@acme.test"))
    with pytest.raises(InvalidChange):
        intake.delete_message(processed)
    assert name


def test_the_message_is_read_and_parsed_before_the_write_transaction(bob, monkeypatch):
    """On SQLite the processing transaction holds the one write lock, which the gateway's
    commits wait for: the parse, the longest step, must run before it begins."""
    from django.db import connection

    from supportdesk.intake import process

    depths: list[int] = []
    real = process.parse_message

    def watched(raw: bytes):
        depths.append(len(connection.atomic_blocks))  # the test's own block is the first
        return real(raw)

    monkeypatch.setattr(process, "parse_message", watched)
    message = store(plain(sender=bob.email, subject="Outside"))
    outside = len(connection.atomic_blocks)
    assert run_processing(message).state == MessageState.PROCESSED
    assert depths == [outside]
