"""Sending an event's mails, one delivery row per recipient, and reading them for the ticket page.

A handler run may be repeated (a retry, a worker killed mid-run): the rows say what went out.
A mail is marked sent only after the server accepted it; a crash between the two sends it
again with the same Message-ID (at least once, never lost). A recipient the server refuses
for good fails alone; a temporary refusal of any makes the whole run retry, and the retry
sends only the mails not sent yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Field, Q, QuerySet
from django.utils import timezone

from supportdesk import rows
from supportdesk.accounts.models import User
from supportdesk.errors import DeliveryError
from supportdesk.events.models import Event, HandlerRun
from supportdesk.notify import ids, messages, transport
from supportdesk.notify.models import DeliveryState, MailDelivery
from supportdesk.notify.recipients import Recipient, recipients_for
from supportdesk.tickets.models import Priority, Response, Ticket, TicketType

ERROR_MAX = 2000
GAVE_UP = "Gave up, attempts:"  # how a mail's error begins when its retries ran out


def deliver(event: Event, *, handler: str) -> None:
    """Send each of the event's mails not sent yet and not failed.

    Raises DeliveryError, after trying every mail: retryable (with the longest wait a
    server asked for) when a mail was refused for now; permanent when every mail tried was
    refused for good, which looks like the server's fault (credentials, a blocked sender)
    more than the addresses', so the run fails where admins see it. On the run's last
    attempt a mail refused for now is marked failed ("Gave up ..."): the ticket page never
    shows a retry that will not come. An admin's retry of the run starts its attempts afresh
    and tries the failed mails once more.
    """
    event = _loaded(event)
    deliveries = planned(event)
    with transport.session():  # the run's mails share one SMTP connection
        _send(event, deliveries, _run_attempts(event, handler))


def deliver_many(events: Sequence[Event], *, handler: str) -> dict[int, DeliveryError]:
    """deliver() for the events of several runs claimed together, their rows planned in
    one statement and their mails sent over one SMTP connection; returns what deliver()
    would have raised for each event, by event id. A failure to plan raises: each run is
    then run alone (events/tasks.py)."""
    loaded = [_loaded(event) for event in events]
    plans = planned_many(loaded)
    attempts = _runs_attempts([event.pk for event in loaded], handler)
    failures: dict[int, DeliveryError] = {}
    with transport.session():
        for event in loaded:
            try:
                _send(event, plans[event.pk], attempts.get(event.pk))
            except DeliveryError as error:
                failures[event.pk] = error
    return failures


def _send(event: Event, deliveries: list[MailDelivery], attempts: int | None) -> None:
    last_attempt = attempts is not None and attempts >= settings.TASK_MAX_ATTEMPTS
    retried_by_admin = attempts == 1  # rows exist before the first claim only after a retry
    waiting: list[DeliveryError] = []
    refused: list[DeliveryError] = []
    tried = 0
    for row in deliveries:
        if row.state == DeliveryState.SENT or (
            row.state == DeliveryState.FAILED and not retried_by_admin
        ):
            continue
        tried += 1
        try:
            transport.send(messages.build(row, event))
        except DeliveryError as error:
            if error.permanent:
                refused.append(error)
                _settle(row, DeliveryState.FAILED, error.message)
            elif last_attempt:
                waiting.append(error)
                _settle(row, DeliveryState.FAILED, f"{GAVE_UP} {row.attempts + 1}: {error.message}")
            else:
                waiting.append(error)
                _settle(row, DeliveryState.RETRYING, error.message)
        else:
            _settle(row, DeliveryState.SENT, "")
    _raise_for(waiting, refused, tried)


def _raise_for(waiting: list[DeliveryError], refused: list[DeliveryError], tried: int) -> None:
    if waiting:
        waits = [error.retry_after for error in waiting if error.retry_after is not None]
        raise DeliveryError(
            f"{len(waiting)} of {tried} mails not sent yet; first: {waiting[0].message}",
            retry_after=max(waits, default=None),
        )
    if refused and len(refused) == tried:
        raise DeliveryError(
            f"Every mail tried ({tried}) was refused; first: {refused[0].message}",
            permanent=True,
        )


def planned(event: Event) -> list[MailDelivery]:
    """The event's delivery rows, written on its first run in one statement: later runs
    mail the same people (the same Message-IDs) even if CCs or preferences change since."""
    return planned_many([event])[event.pk]


def planned_many(events: Sequence[Event]) -> dict[int, list[MailDelivery]]:
    """planned() for several events, by event id: the rows of those planned before are
    read, the others' written together in one statement. The new rows keep the users and
    tickets the recipients were found with: nothing to read again. A conflict would mean a
    run in parallel with itself, which the outbox's claim rules out; it fails the attempt,
    and the retry reads."""
    with_rows = {
        row[0]
        for row in rows.fetch_all(_with_rows_sql(len(events)), [event.pk for event in events])
    }
    plans: dict[int, list[MailDelivery]] = {}
    new: list[MailDelivery] = []
    for event in events:
        if event.pk in with_rows:
            plans[event.pk] = _rows(event)
        else:
            plans[event.pk] = new_rows(event, recipients_for(event))
            new += plans[event.pk]
    if new:
        _inserted(new)
    return plans


def new_rows(event: Event, recipients: list[Recipient]) -> list[MailDelivery]:
    """The event's delivery rows for these recipients, not written yet."""
    return [
        MailDelivery(
            event=event,
            ticket=recipient.ticket,
            recipient=recipient.email,
            user=recipient.user,
            message_id=ids.message_id(event.pk, recipient.email),
            reason=recipient.reason,
            optional=recipient.optional,
        )
        for recipient in recipients
    ]


def _inserted(new: list[MailDelivery]) -> list[MailDelivery]:
    """INSERT the rows as bulk_create would (defaults, auto_now, their ids set), all or none.

    One statement, written once per count (supportdesk/rows.py): bulk_create compiled it on
    every run and wrapped it in a transaction of its own, 0.53 ms for an acknowledgement's
    row where this takes 0.19 ms. One statement is one transaction, as bulk_create's one
    batch was, so a run killed while writing leaves no partial set for its retry to take as
    the whole. More rows than fit in one statement's parameters go to bulk_create, which
    writes its batches in a transaction.
    """
    connection = connections[DEFAULT_DB_ALIAS]
    fields = _insert_fields()
    if connection.ops.bulk_batch_size(fields, new) < len(new):
        return MailDelivery.objects.bulk_create(new)
    values = [
        field.get_db_prep_save(field.pre_save(row, True), connection)
        for row in new
        for field in fields
    ]
    returned = rows.fetch_all(_insert_sql(len(new)), values)
    ids = {(event, recipient): pk for event, recipient, pk in returned}
    for row in new:
        # Matched by event and address (unique together): neither SQLite nor PostgreSQL
        # promises RETURNING in the order of VALUES.
        row.pk = ids[(row.event_id, row.recipient)]
        row._state.adding = False
        row._state.db = DEFAULT_DB_ALIAS
    return new


@cache
def _insert_fields() -> list[Field[Any, Any]]:
    pk = MailDelivery._meta.pk
    return [field for field in MailDelivery._meta.local_concrete_fields if field is not pk]


@cache
def _insert_sql(count: int) -> str:
    quote = connections[DEFAULT_DB_ALIAS].ops.quote_name
    fields = _insert_fields()
    names = ", ".join(quote(str(field.column)) for field in fields)
    marks = ", ".join([f"({', '.join(['%s'] * len(fields))})"] * count)
    pk = quote(str(MailDelivery._meta.pk.column))
    recipient = quote(str(MailDelivery._meta.get_field("recipient").column))
    event = quote(str(MailDelivery._meta.get_field("event").column))
    return (
        f"INSERT INTO {rows.table(MailDelivery)} ({names}) VALUES {marks}"  # noqa: S608
        f" RETURNING {event}, {recipient}, {pk}"
    )


def _loaded(event: Event) -> Event:
    """The event with everything the rules and the mails read, in one query (instead of a
    lazy fetch for each of them: this runs for every change). Written once (rows.py): as a
    select_related() its compilation cost a tenth of a mail's whole handler run."""
    found = rows.fetch_one(_loaded_sql(), [event.pk])
    if found is None:
        raise Event.DoesNotExist(f"Event {event.pk} is gone.")
    loaded, ticket, requester, assignee, kind, priority, problem, actor, response, author = (
        rows.build_joined(found, *_LOADED_MODELS)
    )
    assert isinstance(loaded, Event)  # noqa: S101  (the FROM table: never NULL)
    if isinstance(ticket, Ticket):
        ticket.requester, ticket.assignee, ticket.problem = requester, assignee, problem  # type: ignore[assignment]
        ticket.type, ticket.priority = kind, priority  # type: ignore[assignment]
    if isinstance(response, Response):
        response.author = author  # type: ignore[assignment]
    loaded.ticket, loaded.actor, loaded.response = ticket, actor, response  # type: ignore[assignment]
    return loaded


_LOADED_MODELS = (Event, Ticket, User, User, TicketType, Priority, Ticket, User, Response, User)


@cache
def _loaded_sql() -> str:
    aliases = ("e", "t", "req", "asg", "ty", "pr", "pb", "act", "r", "ra")
    selected = ", ".join(
        rows.columns(model, alias) for model, alias in zip(_LOADED_MODELS, aliases, strict=True)
    )
    user, ticket = rows.table(User), rows.table(Ticket)
    return (
        f"SELECT {selected} FROM {rows.table(Event)} e"  # noqa: S608
        f" LEFT JOIN {ticket} t ON t.id = e.ticket_id"
        f" LEFT JOIN {user} req ON req.id = t.requester_id"
        f" LEFT JOIN {user} asg ON asg.id = t.assignee_id"
        f" LEFT JOIN {rows.table(TicketType)} ty ON ty.id = t.type_id"
        f" LEFT JOIN {rows.table(Priority)} pr ON pr.id = t.priority_id"
        f" LEFT JOIN {ticket} pb ON pb.id = t.problem_id"
        f" LEFT JOIN {user} act ON act.id = e.actor_id"
        f" LEFT JOIN {rows.table(Response)} r ON r.id = e.response_id"
        f" LEFT JOIN {user} ra ON ra.id = r.author_id"
        " WHERE e.id = %s"
    )


def _rows(event: Event) -> list[MailDelivery]:
    """The rows of an event planned before, with what building their mails reads. Only a
    retry has any: planned_many asks which events do first, in one query, since compiling
    this joined query cost a tenth of a first run."""
    return list(
        MailDelivery.objects.filter(event=event)
        .select_related("user", "ticket", "ticket__type", "ticket__priority", "ticket__problem")
        .order_by("id")
    )


def _run_attempts(event: Event, handler: str) -> int | None:
    """How many times the outbox has claimed this run, this time included (None outside
    the outbox, e.g. a test calling the handler itself)."""
    return _runs_attempts([event.pk], handler).get(event.pk)


def _runs_attempts(event_ids: list[int], handler: str) -> dict[int, int]:
    """_run_attempts for several events, by event id."""
    found = rows.fetch_all(_runs_attempts_sql(len(event_ids)), [*event_ids, handler])
    return {int(event): int(attempts) for event, attempts in found}


@cache
def _runs_attempts_sql(count: int) -> str:
    marks = ", ".join(["%s"] * count)
    return (
        f"SELECT event_id, attempts FROM {rows.table(HandlerRun)}"  # noqa: S608
        f" WHERE event_id IN ({marks}) AND handler = %s"
    )


@cache
def _with_rows_sql(count: int) -> str:
    marks = ", ".join(["%s"] * count)
    table = rows.table(MailDelivery)
    return f"SELECT DISTINCT event_id FROM {table} WHERE event_id IN ({marks})"  # noqa: S608


def _settle(row: MailDelivery, state: DeliveryState, error: str) -> None:
    """Record one attempt's outcome at once (its own commit): a crash after this line does
    not send the mail again; a crash before it does, with the same Message-ID."""
    row.state = state
    row.attempts += 1
    row.last_error = error[:ERROR_MAX]
    if state == DeliveryState.SENT:
        row.sent_at = timezone.now()
    rows.update(row, ["state", "attempts", "last_error", "sent_at", "updated_at"])


def deliveries_for(ticket: Ticket) -> QuerySet[MailDelivery]:
    """The mails about a ticket, for its agents' "Mail" panel, in one query: those of its own
    events and a resolved problem's mail to this incident's requester."""
    return (
        MailDelivery.objects.filter(Q(ticket=ticket) | Q(event__ticket=ticket))
        .select_related("event")
        .order_by("created_at", "id")
    )
