"""Turn one stored message into a ticket, a response, or a marked state, exactly once.

The work and the message's new state commit in one transaction under the message's row
lock, and a message that is no longer STORED is skipped: the outbox runs a handler at least
once, so a second run finds the state changed and does nothing. Any error rolls everything
back and quarantines the message with its error instead of retrying it forever: one bad
message never blocks the others, and it is kept for an admin to reprocess or delete.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from typing import cast

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.validators import validate_email
from django.db import connection, transaction
from django.utils import timezone

from supportdesk import rows
from supportdesk.accounts import services as accounts
from supportdesk.accounts.models import Organization, User
from supportdesk.errors import InvalidChange, NotFound
from supportdesk.events.models import Via
from supportdesk.intake import loop_guard, threads
from supportdesk.intake.models import InboundMessage, Mailbox, MessageState, UnknownSender
from supportdesk.intake.parse import ParsedMessage, parse_message, safe_text, trim_reply
from supportdesk.tickets import services
from supportdesk.tickets.attachments import StoredFile
from supportdesk.tickets.inputs import MAX_CCS
from supportdesk.tickets.models import DONE_STATUSES, Priority, Status, Ticket, TicketType
from supportdesk.tickets.validation import TEXT_MAX, TITLE_MAX, Upload

logger = logging.getLogger(__name__)

# Where a message with no mailbox left (deleted since it arrived) opens its ticket.
FALLBACK_TYPE, FALLBACK_PRIORITY = "question", "normal"
_FIELD_MAX = 998
ORIGINAL_NAME = "original-message.eml"
# What processing may change on the message: written in one statement (supportdesk/rows.py).
_PROCESSED_FIELDS = (
    "message_id", "from_address", "subject", "state", "error", "ticket", "response",
    "processed_at",
)  # fmt: skip


@dataclass(frozen=True)
class Acceptance:
    """An agent's decision to process a held message as if its sender were known."""

    acting_user: User
    organization: Organization | None = None


def process_message(message: InboundMessage, *, accept: Acceptance | None = None) -> InboundMessage:
    """Process a STORED message (or, with `accept`, a HELD one); returns it as it ends.

    Never raises for a STORED message: an error quarantines it. With `accept` the agent's
    call gets the error (InvalidChange when no organization can be found) and the
    message stays held.
    """
    expected = MessageState.HELD if accept else MessageState.STORED
    try:
        ahead = _ahead(message, expected)
        if ahead is None:
            return message  # deleted before its run
        return _apply(message, accept, expected, ahead)
    except Exception as error:
        if accept is not None:
            raise
        logger.exception("Inbound message %s quarantined", message.pk)
        return _quarantine(message, error)


def process_stored(message_pk: int) -> InboundMessage | None:
    """process_message for the outbox's run, which knows only the message's id; None when
    the message was deleted before its run."""
    processed = process_message(InboundMessage(pk=message_pk))
    return None if processed._state.adding else processed


def process_stored_many(message_pks: Sequence[int]) -> None:
    """process_stored for several messages, those read ahead together committed together.

    Each message is read and parsed first, outside any transaction, then processed in one
    transaction with the others, each under a savepoint of its own, so that one that fails
    is rolled back and quarantined alone. On SQLite the write lock is then taken and handed
    over once for several messages instead of once each: with two workers taking turns, a
    worker held it 7.4 ms a message where one alone holds it 4.7 (a cold page cache after
    the other's commit, a BEGIN and COMMIT each), 5.5 ms in batches (bench/README.md, "Mail
    in"). The transaction ends early whenever the mail
    gateway waits for the lock, whose commits a sender waits for. Reading ahead stops once
    AHEAD_MAX_BYTES of raw mail is held: a large message ends its group.
    """
    waiting = list(message_pks)
    while waiting:
        ready: list[tuple[InboundMessage, _Ahead]] = []
        held = 0
        while waiting and held < AHEAD_MAX_BYTES:
            message = InboundMessage(pk=waiting.pop(0))
            try:
                ahead = _ahead(message, MessageState.STORED)
            except Exception as error:
                logger.exception("Inbound message %s quarantined", message.pk)
                _quarantine(message, error)
                continue
            if ahead is not None:
                ready.append((message, ahead))
                held += len(ahead.read.raw) if ahead.read else 0
        _apply_together(ready)


# Raw mail read ahead by process_stored_many at most, before its transaction begins.
AHEAD_MAX_BYTES = 4 * 1024 * 1024


def _apply_together(ready: list[tuple[InboundMessage, _Ahead]]) -> None:
    while ready:
        with transaction.atomic():
            while ready:
                message, ahead = ready.pop(0)
                try:
                    _apply(message, None, MessageState.STORED, ahead)  # its own savepoint
                except Exception as error:
                    logger.exception("Inbound message %s quarantined", message.pk)
                    _quarantine(message, error)
                if ready and _urgent_writer_waiting():
                    break  # commit now; the rest in the next transaction


def _urgent_writer_waiting() -> bool:
    """Whether the mail gateway waits for the write lock (supportdesk's SQLite backend
    tells; PostgreSQL writers do not wait on one another's unrelated rows)."""
    waiting = getattr(connection, "urgent_writer_waiting", None)
    return bool(waiting()) if waiting is not None else False


@dataclass(frozen=True)
class _Ahead:
    """What is read of a message before its transaction: the Message-ID the store read (to
    lock its copies by) and, if it was still to be processed, its bytes parsed."""

    stored_id: str
    read: _Read | None


def _ahead(message: InboundMessage, expected: MessageState) -> _Ahead | None:
    """None when the message no longer exists. Read and parsed before the transaction,
    which holds the one write lock on SQLite: the raw file never changes, and parsing was
    the longest part of the processing."""
    found = rows.fetch_one(_peek_sql(), [message.pk])
    if found is None:
        return None
    name, stored_id, state = found
    return _Ahead(str(stored_id or ""), _Read.of(str(name)) if state == expected else None)


def _apply(
    message: InboundMessage, accept: Acceptance | None, expected: MessageState, ahead: _Ahead
) -> InboundMessage:
    with transaction.atomic():
        locked = _lock(message, ahead.stored_id)
        if locked is None or locked.state != expected:
            return locked or message  # done already: the outbox ran it twice
        read = ahead.read if ahead.read and ahead.read.name == locked.raw else None
        _process(locked, accept, read)
        locked.processed_at = timezone.now()
        rows.update(locked, _PROCESSED_FIELDS)
        return locked


@dataclass(frozen=True)
class _Read:
    """A stored message's bytes and what the parser made of them."""

    name: str
    raw: bytes
    parsed: ParsedMessage

    @classmethod
    def of(cls, name: str) -> _Read:
        with default_storage.open(name, "rb") as stored:
            raw = bytes(stored.read())
        return cls(name, raw, parse_message(raw))


def _lock(message: InboundMessage, stored_id: str) -> InboundMessage | None:
    """Lock the message and every copy with the same Message-ID (as the store read it), in
    one order: two workers given the SMTP and the IMAP copy at once then take turns, and the
    second finds the first's result and marks its copy a duplicate. (On SQLite the
    transaction's write lock, taken at BEGIN, already serializes them.)"""
    params = [message.pk, stored_id] if stored_id else [message.pk]
    for row in rows.fetch_all(_lock_sql(bool(stored_id), connection.vendor), params):
        copy, mailbox, kind, priority = rows.build_joined(row, *_LOCKED_MODELS)
        if isinstance(copy, InboundMessage) and copy.pk == message.pk:
            if isinstance(mailbox, Mailbox):
                mailbox.ticket_type, mailbox.priority = kind, priority  # type: ignore[assignment]
            copy.mailbox = mailbox  # type: ignore[assignment]
            return copy
    return None


_LOCKED_MODELS = (InboundMessage, Mailbox, TicketType, Priority)


@cache
def _lock_sql(by_message_id: bool, vendor: str) -> str:
    """Written once (supportdesk/rows.py): compiling it as a QuerySet cost a fifth of
    processing a message."""
    selected = ", ".join(
        rows.columns(model, alias) for model, alias in zip(_LOCKED_MODELS, "mbtp", strict=True)
    )
    same = "m.id = %s OR m.message_id = %s" if by_message_id else "m.id = %s"
    # The mailbox is an outer join: only the messages' rows can be locked.
    lock = " FOR UPDATE OF m" if vendor == "postgresql" else ""
    return (
        f"SELECT {selected} FROM {rows.table(InboundMessage)} m"  # noqa: S608
        f" LEFT JOIN {rows.table(Mailbox)} b ON b.id = m.mailbox_id"
        f" LEFT JOIN {rows.table(TicketType)} t ON t.id = b.ticket_type_id"
        f" LEFT JOIN {rows.table(Priority)} p ON p.id = b.priority_id"
        f" WHERE {same} ORDER BY m.id{lock}"
    )


@cache
def _peek_sql() -> str:
    table = rows.table(InboundMessage)
    return f"SELECT raw, message_id, state FROM {table} WHERE id = %s"  # noqa: S608


def _quarantine(message: InboundMessage, error: Exception) -> InboundMessage:
    with transaction.atomic():
        locked = InboundMessage.objects.select_for_update().filter(pk=message.pk).first()
        if locked is None or locked.state != MessageState.STORED:
            return locked or message
        with contextlib.suppress(Exception):  # the message may be unreadable: keep the error
            _describe(locked, _Read.of(locked.raw).parsed)
        locked.state = MessageState.QUARANTINED
        locked.error = safe_text(f"{type(error).__name__}: {error}")[:10_000]
        locked.processed_at = timezone.now()
        locked.save()
        return locked


def _describe(message: InboundMessage, parsed: ParsedMessage) -> None:
    message.message_id = parsed.message_id[:_FIELD_MAX]
    message.from_address = parsed.from_address[:_FIELD_MAX]
    message.subject = parsed.subject[:_FIELD_MAX]


def _process(message: InboundMessage, accept: Acceptance | None, ahead: _Read | None) -> None:
    read = ahead or _Read.of(message.raw)
    raw, parsed = read.raw, read.parsed
    _describe(message, parsed)
    message.error = ""
    if _is_duplicate(message):
        message.state = MessageState.DUPLICATE
        return
    reason = loop_guard.automatic_reason(parsed)
    if reason:
        _record_automatic(message, parsed, reason)
        return
    sender = _sender(message, parsed, accept)
    if sender is None:
        return
    ticket = threads.find_ticket(parsed, sender)
    if ticket is not None:
        _reply(message, parsed, raw, sender, ticket)
    else:
        _open(message, parsed, raw, sender, accept=accept)


def _is_duplicate(message: InboundMessage) -> bool:
    """Seen before (SMTP and IMAP, a redelivery): another copy already decided."""
    undecided = [MessageState.STORED, MessageState.QUARANTINED]
    found = rows.fetch_one(_decided_copy_sql(), [message.message_id, message.pk, *undecided])
    return found is not None


@cache
def _decided_copy_sql() -> str:
    return (
        f"SELECT 1 FROM {rows.table(InboundMessage)}"  # noqa: S608
        " WHERE message_id = %s AND id <> %s AND state NOT IN (%s, %s) LIMIT 1"
    )


def _record_automatic(message: InboundMessage, parsed: ParsedMessage, reason: str) -> None:
    """An auto-reply or bounce changes nothing and mails nobody; it is linked to the ticket
    it is about, and a bounce of our mail marks that delivery failed."""
    bounced = loop_guard.mark_bounced(parsed)
    message.ticket = bounced[0].ticket if bounced else threads.referenced_ticket(parsed)
    message.state = MessageState.RECORDED
    message.error = reason[:_FIELD_MAX]


def _sender(
    message: InboundMessage, parsed: ParsedMessage, accept: Acceptance | None
) -> User | None:
    """The user the message is from, or None with the message marked held or rejected."""
    address = parsed.from_address
    if not address:
        _mark(message, MessageState.REJECTED, "The message has no sender address.")
        return None
    try:
        user: User | None = accounts.find_user(address)
    except NotFound:
        user = None
    if user is not None:
        if not user.is_active:
            _mark(message, MessageState.REJECTED, f"{address} is deactivated.")
            return None
        return user
    organization = _organization_for(address)
    if accept is not None:
        organization = accept.organization or organization
        if organization is None:
            raise InvalidChange(
                f"Choose the organization {address} belongs to.", field="organization"
            )
        return _create_contact(parsed, organization)
    policy = message.mailbox.unknown_sender if message.mailbox else UnknownSender.HOLD
    if policy == UnknownSender.CONTACT and organization is not None:
        return _create_contact(parsed, organization)
    if policy == UnknownSender.REJECT and organization is None:
        _mark(message, MessageState.REJECTED, f"Unknown sender {address}.")
        return None
    known = f" (domain of {organization.name})" if organization else ""
    _mark(message, MessageState.HELD, f"Unknown sender {address}{known}.")
    return None


def _mark(message: InboundMessage, state: MessageState, error: str) -> None:
    message.state = state
    message.error = error[:10_000]
    return


def _organization_for(address: str) -> Organization | None:
    domain = address.rpartition("@")[2]
    if not domain:
        return None
    for organization in Organization.objects.filter(mail_domains__icontains=domain):
        if domain in organization.domains:
            return organization
    return None


def _create_contact(parsed: ParsedMessage, organization: Organization) -> User:
    user = accounts.create_user(
        email=parsed.from_address,
        role="customer",
        password=accounts.generate_password(),  # never told: they reset it to log in
        organization=organization,
        name=parsed.from_name[: accounts.NAME_MAX],
    )
    user.organization = organization
    return user


def _reply(
    message: InboundMessage, parsed: ParsedMessage, raw: bytes, sender: User, ticket: Ticket
) -> None:
    """A reply: a public response, re-opening a done ticket for a customer; a ticket closed
    longer than MAIL_REOPEN_DAYS ago gets a follow-up ticket instead."""
    if sender.is_customer and ticket.status == Status.CLOSED and _closed_long_ago(ticket):
        _open(message, parsed, raw, sender, follow_up_of=ticket)
        return
    if sender.is_customer and ticket.status in DONE_STATUSES:
        ticket = services.reopen_ticket(ticket, acting_user=sender, via=Via.EMAIL)
    uploads, notes = _uploads(message, parsed, raw)
    text = trim_reply(parsed.text)
    body = _with_notes(text or "(The message had no text; the original is attached.)", notes)
    response = services.add_response(
        ticket, acting_user=sender, via=Via.EMAIL, body=body, attachments=uploads
    )
    message.ticket, message.response = ticket, response
    message.state = MessageState.PROCESSED


def _closed_long_ago(ticket: Ticket) -> bool:
    closed_at = ticket.closed_at or ticket.updated_at
    return closed_at < timezone.now() - timedelta(days=settings.MAIL_REOPEN_DAYS)


def _open(
    message: InboundMessage,
    parsed: ParsedMessage,
    raw: bytes,
    sender: User,
    *,
    follow_up_of: Ticket | None = None,
    accept: Acceptance | None = None,
) -> None:
    if not sender.is_customer:
        _mark(
            message,
            MessageState.REJECTED,
            f"{sender.email} is an agent: agents answer tickets by mail, and open them for"
            " a customer in the workspace.",
        )
        return
    if accept is None and loop_guard.over_new_ticket_rate(parsed.from_address):
        limit = settings.MAIL_NEW_TICKETS_PER_HOUR
        _mark(message, MessageState.HELD, f"{parsed.from_address} opened {limit} tickets by mail in the last hour.")  # fmt: skip
        return
    mailbox = message.mailbox
    uploads, notes = _uploads(message, parsed, raw)
    text = parsed.text.strip()
    if follow_up_of is not None:
        text = f"Follow-up to #{follow_up_of.number}\n\n{text}"
    ticket = services.create_ticket(
        acting_user=sender,
        via=Via.EMAIL,
        type=mailbox.ticket_type.key if mailbox else FALLBACK_TYPE,
        priority=mailbox.priority.key if mailbox else FALLBACK_PRIORITY,
        title=threads.strip_tag(parsed.subject)[:TITLE_MAX] or "(no subject)",
        description=_with_notes(text, notes),
        ccs=_ccs(parsed, sender),
        attachments=uploads,
    )
    message.ticket = ticket
    message.state = MessageState.PROCESSED


def _with_notes(text: str, notes: list[str]) -> str:
    """The text with what was not kept noted below it, cut to what a ticket holds."""
    tail = "".join(f"\n\n[{note}]" for note in notes)
    room = TEXT_MAX - len(tail) - 100
    if len(text) > room:
        text = text[:room] + "\n\n[The text was cut here; the original is attached.]"
    return (text + tail).strip()


def _uploads(
    message: InboundMessage, parsed: ParsedMessage, raw: bytes
) -> tuple[list[Upload], list[str]]:
    """The original message and its attachments as uploads, with the upload limits: what
    is empty or too large is left out and noted, never a reason to fail the message."""
    limit = settings.UPLOAD_MAX_BYTES
    files = [(a.filename, a.content) for a in parsed.attachments]
    uploads: list[Upload] = []
    notes: list[str] = []
    if raw and len(raw) <= limit:
        # The raw file itself, never copied: a processed message is kept (services.py).
        uploads.append(StoredFile(ORIGINAL_NAME, len(raw), message.raw))
    else:
        files.insert(0, (ORIGINAL_NAME, raw))  # noted below as empty or too large
    for name, content in files:
        if not content:
            notes.append(f"{name} was empty and is not attached.")
        elif len(content) > limit:
            size, most = len(content) // (1024 * 1024), limit // (1024 * 1024)
            notes.append(f"{name} ({size} MB) is larger than the {most} MB limit and is not attached.")  # fmt: skip
        else:
            file = ContentFile(content, name=name.replace("/", "_") or "attachment")
            uploads.append(cast("Upload", file))  # it offers what Upload asks; stubs differ
    return uploads, notes


def _ccs(parsed: ParsedMessage, sender: User) -> list[str]:
    """The other people the sender wrote to: every To and Cc but us and the sender."""
    ccs = []
    for address in dict.fromkeys((*parsed.to, *parsed.cc)):
        if address == sender.email.lower() or loop_guard.is_our_address(address):
            continue
        try:
            validate_email(address)
        except ValidationError:
            continue
        ccs.append(address)
    return ccs[:MAX_CCS]
