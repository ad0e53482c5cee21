"""Inbound mail for tests: corpus messages filled in, stored as the gateway stores them (the
raw file through Django's storage, then the row and its processing run in one transaction),
and processed by running that run as the worker does."""

from __future__ import annotations

import hashlib
import string
from pathlib import Path

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction

from supportdesk.events.models import HandlerRun
from supportdesk.events.tasks import execute
from supportdesk.intake import store as store_module
from supportdesk.intake.models import InboundMessage, Mailbox, MessageState
from supportdesk.tickets.models import Priority, Ticket, TicketType

CORPUS = Path(__file__).parent / "corpus"
HANDLER = "process_on_mail_received"
_DEFAULTS = {"support": ("question", "normal"), "hosting": ("incident", "normal"),
             "sysops": ("incident", "urgent")}  # fmt: skip


def corpus(name: str, **values: object) -> bytes:
    """A corpus message with its ${placeholders} filled in; bytes outside ASCII stay as
    they are (the file is read and written back as Latin-1, byte for byte)."""
    text = (CORPUS / name).read_bytes().decode("latin-1")
    filled = string.Template(text).safe_substitute(
        domain=settings.MAIL_DOMAIN, **{k: str(v) for k, v in values.items()}
    )
    return filled.encode("latin-1")


def plain(*, sender: str, subject: str = "Hello", body: str = "Some text.", to: str = "",
          message_id: str = "", **headers: str) -> bytes:  # fmt: skip
    raw = corpus(
        "plain.eml",
        sender=sender,
        to=to or f"support@{settings.MAIL_DOMAIN}",
        subject=subject,
        body=body,
        message_id=message_id
        or f"<{hashlib.sha256((sender + subject + body).encode()).hexdigest()[:20]}@test>",
    )
    extra = "".join(f"{name.replace('_', '-')}: {value}\r\n" for name, value in headers.items())
    return extra.encode() + raw


def mailbox(local_part: str = "support") -> Mailbox:
    found = Mailbox.objects.filter(local_part=local_part).first()
    if found is not None:
        return found
    type_key, priority_key = _DEFAULTS.get(local_part, ("question", "normal"))
    return Mailbox.objects.create(
        local_part=local_part,
        ticket_type=TicketType.objects.get(key=type_key),
        priority=Priority.objects.get(key=priority_key),
    )


def store(raw: bytes, *, to: str = "support") -> InboundMessage:
    box = mailbox(to)
    digest = hashlib.sha256(raw).hexdigest()
    name = default_storage.save(f"mail/raw/{digest[:16]}.eml", ContentFile(raw))
    message = InboundMessage(
        mailbox=box, source="smtp", raw=name, size=len(raw), sha256=digest,
        envelope_to=[box.address],
    )  # fmt: skip
    with transaction.atomic():
        store_module.insert_received([message])  # the row and its processing run, as the gateway's
    return message


def run_processing(message: InboundMessage) -> InboundMessage:
    """Run the message's processing run as the worker would; returns the message after it."""
    run = HandlerRun.objects.get(handler=HANDLER, event__changes__message__1=message.pk)
    execute(run.pk)
    message.refresh_from_db()
    return message


def deliver(raw: bytes, *, to: str = "support") -> InboundMessage:
    return run_processing(store(raw, to=to))


def held_message(organization, *, sender: str = "new@example.org", subject: str = "Who am I"):
    """An unknown sender at the organization's mail domain: held for an agent."""
    organization.mail_domains = sender.rpartition("@")[2]
    organization.save()
    message = deliver(plain(sender=sender, subject=subject))
    assert message.state == MessageState.HELD
    return message


def quarantined_message(sender, *, subject: str = "Try me again", error: str = "Parser exploded"):
    """A good mail marked as processing marks a failure, its ticket gone: reprocessing it
    then succeeds."""
    message = deliver(plain(sender=sender.email, subject=subject))
    Ticket.objects.filter(pk=message.ticket_id).delete()
    InboundMessage.objects.filter(pk=message.pk).update(
        state=MessageState.QUARANTINED, error=error, ticket=None, response=None
    )
    message.refresh_from_db()
    return message
