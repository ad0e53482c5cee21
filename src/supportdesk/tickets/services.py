"""The only code that changes a ticket. Every channel (web, API, mail, CLI) calls these.

Each service runs in one transaction: it checks access and rules for the acting user,
changes state, and writes the history event (the outbox for mail, pages and timers).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F, Max, Model, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from supportdesk import rows
from supportdesk.accounts.models import User
from supportdesk.errors import Conflict, Forbidden, InvalidChange
from supportdesk.events.models import Event, EventKind, Via
from supportdesk.events.record import record
from supportdesk.tickets import access
from supportdesk.tickets.attachments import check_uploads, filenames, store_attachments
from supportdesk.tickets.inputs import (
    application_of,
    assignee_named,
    cc_emails,
    environments_of,
    problem_for,
    tags_named,
    vocabulary_entry,
)
from supportdesk.tickets.models import (
    DONE_STATUSES,
    Attachment,
    Channel,
    Counter,
    Priority,
    Response,
    Status,
    Ticket,
    TicketCC,
    TicketType,
)
from supportdesk.tickets.validation import (
    TITLE_MAX,
    Upload,
    clean_text,
)

FIRST_TICKET_NUMBER = 1000

# {field: [from, to]} in display values, as the history shows them.
Diff = dict[str, list[Any]]


def allocate_number() -> int:
    """Next ticket number, taken under the counter row's lock in the caller's transaction.

    The counter holds the last number handed out; the UPDATE takes the row lock until the
    caller commits, and a rollback rolls the counter back with the ticket, so numbers stay
    unique and increasing. One statement: UPDATE ... RETURNING (SQLite 3.35+, PostgreSQL).
    """
    number = rows.fetch_one(_next_number(), ["ticket"])
    if number is None:
        try:
            with transaction.atomic():  # the first ticket ever, or after a bulk import
                Counter.objects.create(name="ticket", value=_last_number_in_use() + 1)
        except IntegrityError:  # another transaction created it first: take the next one
            number = rows.fetch_one(_next_number(), ["ticket"])
    if number is None:
        return Counter.objects.values_list("value", flat=True).get(name="ticket")
    return int(number[0])


@cache
def _next_number() -> str:
    table = rows.table(Counter)  # names from the model; values are always parameters
    return f"UPDATE {table} SET value = value + 1 WHERE name = %s RETURNING value"  # noqa: S608


def _last_number_in_use() -> int:
    """Where a missing counter starts: after any ticket already stored (a bulk import)."""
    highest = Ticket.objects.aggregate(highest=Max("number"))["highest"]
    return max(FIRST_TICKET_NUMBER - 1, highest or 0)


def _replace_ccs(ticket: Ticket, emails: Sequence[str], *, new: bool = False) -> list[TicketCC]:
    """Replace the CC list; an address that belongs to a user links that user."""
    if not new:
        ticket.ccs.all().delete()
    if not emails:
        return []
    match = Q()
    for email in emails:
        match |= Q(email__iexact=email)
    users = {u.email.lower(): u for u in User.objects.filter(match)}
    return TicketCC.objects.bulk_create(
        TicketCC(ticket=ticket, email=e, user=users.get(e.lower())) for e in emails
    )


def _require_active(acting_user: User) -> None:
    if not acting_user.is_active:
        raise Forbidden(f"{acting_user.email} is deactivated.")


def _requester(acting_user: User, requester: User | None) -> User:
    """The customer a ticket is for: the creator, or the customer an agent names."""
    if requester is None or requester == acting_user:
        if acting_user.is_customer:
            return acting_user
        if requester is None:
            raise InvalidChange("Choose the customer this ticket is for.", field="requester")
    if not acting_user.is_agent:
        raise Forbidden("Only agents open tickets for someone else.", field="requester")
    if not requester.is_active or not requester.is_customer or requester.organization_id is None:
        raise InvalidChange("The requester must be an active customer.", field="requester")
    return requester


def create_ticket(
    *,
    acting_user: User,
    via: Via,
    type: str,
    priority: str,
    title: str,
    description: str = "",
    requester: User | None = None,
    application: object = None,
    environments: Sequence[object] = (),
    tags: Sequence[str] = (),
    ccs: Sequence[str] = (),
    attachments: Iterable[Upload] = (),
    channel: str | None = None,
) -> Ticket:
    """Open a ticket. The organization is the requester's (by default the creator).

    Everything is checked before the transaction begins: on SQLite it takes the one write
    lock, which other writers wait for. Raises InvalidChange naming the field for bad input,
    Forbidden when a customer acts for someone else or sets a channel, or when the acting
    user is deactivated.
    """
    _require_active(acting_user)
    requester = _requester(acting_user, requester)
    organization = requester.organization  # loaded with the user by find_user and tokens
    if organization is None:  # _requester guarantees one; this narrows the type
        raise InvalidChange("The requester must belong to an organization.", field="requester")
    channel = _channel(acting_user, via, channel)
    ticket_type = vocabulary_entry(TicketType, type, field="type")
    ticket_priority = vocabulary_entry(Priority, priority, field="priority")
    clean_title = clean_text(
        title, field="title", max_length=TITLE_MAX, required=True, one_line=True
    )
    clean_description = clean_text(description, field="description")
    app = application_of(application, organization.pk)
    envs = environments_of(environments, app)
    tag_rows = tags_named(tags)
    cc_list = cc_emails(ccs)
    uploads = check_uploads(attachments)
    with transaction.atomic():
        ticket = Ticket(
            number=allocate_number(),
            type=ticket_type,
            priority=ticket_priority,
            title=clean_title,
            description=clean_description,
            organization=organization,
            requester=requester,
            application=app,
            status=Status.OPEN,
            created_by=acting_user,
            last_updated_by=acting_user,
            channel=channel,
        )
        rows.insert(ticket)
        # A new ticket has no links yet: add what there is, skip what is empty.
        if envs:
            ticket.environments.add(*envs)
        if tag_rows:
            ticket.tags.add(*tag_rows)
        cc_rows = _replace_ccs(ticket, cc_list, new=True)
        stored = store_attachments(ticket, uploads, acting_user=acting_user, response=None)
        changes: Diff = {
            "type": [None, ticket.type.name],
            "priority": [None, ticket.priority.name],
            "title": [None, ticket.title],
            "status": [None, Status.OPEN.label],
            **filenames(stored),
        }
        record(
            ticket,
            EventKind.CREATED,
            acting_user=acting_user,
            via=via,
            version=ticket.version,
            changes=changes,
        )
    _hold(ticket, tags=tag_rows, environments=envs, ccs=cc_rows)
    return ticket


def _hold(ticket: Ticket, **related: Sequence[Model]) -> None:
    """Keep what a create just wrote as the ticket's loaded relations, as prefetch_related
    would have: whoever shows the new ticket need not read back what it was just given."""
    loaded = ticket.__dict__.setdefault("_prefetched_objects_cache", {})
    for name, items in related.items():
        queryset = getattr(ticket, name).all()
        queryset._result_cache = list(items)
        queryset._prefetch_done = True
        loaded[name] = queryset


def _channel(acting_user: User, via: Via, channel: str | None) -> str:
    """How the customer spoke: the adapter's own channel unless an agent logs a call or chat."""
    default = {Via.API: Channel.API, Via.EMAIL: Channel.EMAIL}.get(via, Channel.WEB)
    if channel is None or channel in ("", default):
        return default
    if not isinstance(channel, str) or channel not in Channel.values:
        raise InvalidChange(f"Unknown channel {channel!r}.", field="channel")
    if not access.can_log_on_behalf(acting_user):
        raise Forbidden("Only agents log a call or chat.", field="channel")
    return channel


def _display(value: object) -> object:
    if value is None:
        return None
    if isinstance(value, list):
        return [str(v) for v in value]
    return str(value)


def _note(diff: Diff, name: str, old: object, new: object) -> None:
    if _display(old) != _display(new):
        diff[name] = [_display(old), _display(new)]


def _ensure_fresh(ticket: Ticket, expected_version: int | None) -> None:
    """Refuse an edit made from a stale copy, naming what changed since that copy.

    Internal notes are left out: they never bump the version, and their files are not
    the customer's to know of.
    """
    if expected_version is None or expected_version == ticket.version:
        return
    later = list(
        ticket.events.filter(version__gt=expected_version, is_internal=False).select_related(
            "actor"
        )
    )
    fields = sorted({name for event in later for name in event.changes})
    who = sorted({event.actor.display_name for event in later if event.actor})
    raise Conflict(
        f"#{ticket.number} changed since you opened it"
        + (f" ({', '.join(fields)} by {', '.join(who)})" if fields and who else "")
        + ". Reload to see the change, then make yours again.",
        changed=fields,
    )


@transaction.atomic
def update_ticket(
    ticket: Ticket,
    *,
    acting_user: User,
    via: Via,
    changes: Mapping[str, Any],
    expected_version: int | None = None,
) -> Ticket:
    """Apply field changes in one event; a change to nothing writes no event.

    Customers change the fields they set, and the status only to re-open a resolved or
    closed ticket; agents change everything. Raises NotFound for an invisible ticket,
    Forbidden for a field the user may not change, InvalidChange for a bad value, Conflict
    when expected_version is behind (nothing is saved then).
    """
    ticket = access.access_ticket(acting_user, ticket.number, for_update=True)
    _check_editable(ticket, acting_user, changes)
    _ensure_fresh(ticket, expected_version)
    diff = _apply(ticket, acting_user, changes)
    if not diff:
        return ticket
    ticket.version += 1
    ticket.last_updated_by = acting_user
    ticket.save()
    record(
        ticket,
        _kind_of(diff),
        acting_user=acting_user,
        via=via,
        version=ticket.version,
        changes=diff,
    )
    return ticket


def _check_editable(ticket: Ticket, acting_user: User, changes: Mapping[str, Any]) -> None:
    unknown = sorted(set(changes) - access.AGENT_FIELDS)
    if unknown:
        raise InvalidChange(f"Unknown field {unknown[0]!r}.", field=unknown[0])
    denied = sorted(set(changes) - access.editable_fields(acting_user))
    is_reopen = changes.get("status") == Status.OPEN and access.can_reopen(acting_user, ticket)
    if denied and not (denied == ["status"] and is_reopen):
        raise Forbidden(f"You cannot change {denied[0]}.", field=denied[0])


def _kind_of(diff: Mapping[str, Any]) -> EventKind:
    if (
        "status" in diff
        and diff["status"][0] in (Status.RESOLVED.label, Status.CLOSED.label)
        and diff["status"][1] in (Status.OPEN.label, Status.PENDING.label)
    ):
        return EventKind.REOPENED
    single = {
        "status": EventKind.STATUS_CHANGED,
        "assignee": EventKind.ASSIGNED,
        "problem": EventKind.PROBLEM_LINKED,
    }
    if len(diff) == 1:
        return single.get(next(iter(diff)), EventKind.UPDATED)
    return EventKind.UPDATED


def _apply(ticket: Ticket, acting_user: User, changes: Mapping[str, Any]) -> Diff:
    """Validate and set each changed field; return {field: [from, to]} for the history."""
    diff: Diff = {}
    for name, setter in _SETTERS.items():  # in order: the problem link depends on the type
        if name in changes:
            old, new = setter(ticket, changes[name], acting_user)
            _note(diff, name, old, new)
    if "application" in changes or "environments" in changes:
        diff |= _apply_scope(ticket, changes)
    if "problem" not in changes and ticket.problem is not None and ticket.type.key != "incident":
        _note(diff, "problem", _problem_label(ticket.problem), None)  # only incidents link
        ticket.problem = None
    return diff


def _set_type(ticket: Ticket, value: object, _user: User) -> tuple[object, object]:
    new = vocabulary_entry(TicketType, value, field="type", current=ticket.type)
    old, ticket.type = ticket.type, new
    return old, new


def _set_priority(ticket: Ticket, value: object, _user: User) -> tuple[object, object]:
    new = vocabulary_entry(Priority, value, field="priority", current=ticket.priority)
    old, ticket.priority = ticket.priority, new
    return old, new


def _set_title(ticket: Ticket, value: object, _user: User) -> tuple[object, object]:
    new = clean_text(value, field="title", max_length=TITLE_MAX, required=True, one_line=True)
    old, ticket.title = ticket.title, new
    return old, new


def _set_description(ticket: Ticket, value: object, _user: User) -> tuple[object, object]:
    new = clean_text(value, field="description")
    old, ticket.description = ticket.description, new
    return old, new


def _set_requester(ticket: Ticket, value: object, acting_user: User) -> tuple[object, object]:
    if not isinstance(value, User):
        raise InvalidChange("Unknown requester.", field="requester")
    new = _requester(acting_user, value)
    if new.organization_id != ticket.organization_id:
        raise InvalidChange(
            "The requester must belong to the ticket's organization.", field="requester"
        )
    old, ticket.requester = ticket.requester, new
    return old, new


def _set_tags(ticket: Ticket, value: object, _user: User) -> tuple[object, object]:
    tags = tags_named(value)
    old = sorted(t.name for t in ticket.tags.all())
    new = [t.name for t in tags]
    if old != new:
        ticket.tags.set(tags)
    return old, new


def _set_ccs(ticket: Ticket, value: object, _user: User) -> tuple[object, object]:
    new = cc_emails(value)
    old = sorted(c.email for c in ticket.ccs.all())
    if old != new:
        _replace_ccs(ticket, new)
    return old, new


def _set_assignee(ticket: Ticket, value: object, _user: User) -> tuple[object, object]:
    new = assignee_named(value)
    old, ticket.assignee = ticket.assignee, new
    return old, new


def _set_status(ticket: Ticket, value: object, _user: User) -> tuple[object, object]:
    if not isinstance(value, str) or value not in Status.values:
        raise InvalidChange(f"Unknown status {value!r}.", field="status")
    old = ticket.get_status_display()
    if value != ticket.status:
        ticket.closed_at = timezone.now() if value == Status.CLOSED else None
    ticket.status = value
    return old, Status(value).label


def _set_problem(ticket: Ticket, value: object, _user: User) -> tuple[object, object]:
    new = problem_for(ticket, value)
    old, ticket.problem = ticket.problem, new
    return _problem_label(old), _problem_label(new)


_SETTERS: dict[str, Callable[[Ticket, object, User], tuple[object, object]]] = {
    "type": _set_type,
    "priority": _set_priority,
    "title": _set_title,
    "description": _set_description,
    "requester": _set_requester,
    "tags": _set_tags,
    "ccs": _set_ccs,
    "assignee": _set_assignee,
    "status": _set_status,
    "problem": _set_problem,
}


def _apply_scope(ticket: Ticket, changes: Mapping[str, Any]) -> Diff:
    """Application and environments change together: environments must be the application's."""
    app = (
        application_of(changes["application"], ticket.organization_id)
        if "application" in changes
        else ticket.application
    )
    current = list(ticket.environments.all())
    if "environments" in changes:
        envs = environments_of(changes["environments"], app)
    else:  # a new application keeps none of the old one's environments
        envs = [e for e in current if app is not None and e.application_id == app.pk]
    diff: Diff = {}
    _note(diff, "application", ticket.application, app)
    _note(diff, "environments", sorted(e.name for e in current), [e.name for e in envs])
    ticket.application = app
    if {e.pk for e in envs} != {e.pk for e in current}:
        ticket.environments.set(envs)
    return diff


def _problem_label(problem: Ticket | None) -> str | None:
    return f"#{problem.number}" if problem is not None else None


@transaction.atomic
def reopen_ticket(ticket: Ticket, *, acting_user: User, via: Via) -> Ticket:
    """Re-open a resolved or closed ticket: the one status change a customer may make.

    Raises NotFound if acting_user may not see it, InvalidChange unless it is resolved or closed.
    """
    ticket = access.access_ticket(acting_user, ticket.number, for_update=True)
    if ticket.status not in DONE_STATUSES:
        raise InvalidChange(f"#{ticket.number} is still open.", field="status")
    previous = ticket.get_status_display()
    ticket.status = Status.OPEN
    ticket.closed_at = None
    ticket.version += 1
    ticket.last_updated_by = acting_user
    ticket.save(update_fields=["status", "closed_at", "version", "last_updated_by", "updated_at"])
    record(
        ticket,
        EventKind.REOPENED,
        acting_user=acting_user,
        via=via,
        version=ticket.version,
        changes={"status": [previous, Status.OPEN.label]},
    )
    return ticket


def _response_author(
    ticket: Ticket, acting_user: User, on_behalf_of: User | None, *, internal: bool
) -> User:
    """Who spoke: the acting user, or the customer an agent logs a call or chat for."""
    if on_behalf_of is None or on_behalf_of == acting_user:
        return acting_user
    if not access.can_log_on_behalf(acting_user):
        raise Forbidden("Only agents log a response for someone else.", field="on_behalf_of")
    if internal:
        raise InvalidChange("An internal note is the agent's own.", field="on_behalf_of")
    if on_behalf_of.organization_id != ticket.organization_id or not on_behalf_of.is_customer:
        raise InvalidChange(
            "Log calls for a customer of the ticket's organization.", field="on_behalf_of"
        )
    return on_behalf_of


def _reopen_on_reply(ticket: Ticket) -> Diff:
    """The customer answered what we waited for: the ticket is ours to act on again."""
    ticket.status = Status.OPEN
    ticket.version += 1
    return {"status": [Status.PENDING.label, Status.OPEN.label]}


@transaction.atomic
def add_response(
    ticket: Ticket,
    *,
    acting_user: User,
    via: Via,
    body: str,
    internal: bool = False,
    channel: str | None = None,
    on_behalf_of: User | None = None,
    attachments: Iterable[Upload] = (),
) -> Response:
    """Add a public response or an internal note. Never conflicts with edits.

    A customer's public response on a Pending ticket moves it to Open; an agent's does not.
    Raises Forbidden for a customer's internal note, channel or on-behalf entry,
    InvalidChange for an empty body or a bad upload (nothing is written then).
    """
    ticket = access.access_ticket(acting_user, ticket.number, for_update=True)
    if internal and not access.can_see_internal(acting_user):
        raise Forbidden("Only agents write internal notes.", field="internal")
    text = clean_text(body, field="body", required=True)
    channel = _channel(acting_user, via, channel)
    author = _response_author(ticket, acting_user, on_behalf_of, internal=internal)
    uploads = check_uploads(attachments)
    response = Response.objects.create(
        ticket=ticket,
        author=author,
        body=text,
        is_internal=internal,
        channel=channel,
        logged_by=acting_user if author != acting_user else None,
    )
    stored = store_attachments(ticket, uploads, acting_user=acting_user, response=response)
    changes = filenames(stored)
    if not internal and author.is_customer and ticket.status == Status.PENDING:
        changes |= _reopen_on_reply(ticket)
    ticket.last_updated_by = acting_user
    ticket.save(update_fields=["status", "version", "last_updated_by", "updated_at"])
    record(
        ticket,
        EventKind.NOTE_ADDED if internal else EventKind.RESPONSE_ADDED,
        acting_user=acting_user,
        via=via,
        version=ticket.version,
        changes=changes,
        is_internal=internal,
        response=response,
    )
    return response


@transaction.atomic
def add_attachments(
    ticket: Ticket, uploads: Iterable[Upload], *, acting_user: User, via: Via
) -> list[Attachment]:
    """Attach files to the ticket itself (not to a response).

    Raises NotFound for an invisible ticket, InvalidChange for no file, an empty or an
    oversized one (nothing is stored then).
    """
    ticket = access.access_ticket(acting_user, ticket.number, for_update=True)
    files = check_uploads(uploads)
    if not files:
        raise InvalidChange("Choose a file to attach.", field="attachments")
    stored = store_attachments(ticket, files, acting_user=acting_user, response=None)
    ticket.last_updated_by = acting_user
    ticket.save(update_fields=["last_updated_by", "updated_at"])
    record(
        ticket,
        EventKind.ATTACHMENT_ADDED,
        acting_user=acting_user,
        via=via,
        version=ticket.version,
        changes=filenames(stored),
    )
    return stored


def close_resolved_tickets(*, older_than: timedelta, now: datetime | None = None) -> int:
    """Close every ticket resolved longer ago than `older_than`; returns how many closed.

    "Resolved at" is when its status last became Resolved, read from its history (the
    last event whose change set the status to Resolved; a ticket with no such event, such
    as an import, counts from its last update). Each ticket closes in its own transaction
    under its row lock, through the same recording as an agent's status change: one
    STATUS_CHANGED event by the system (no actor, via SYSTEM), hence its mail and other
    side effects. A ticket re-opened or re-resolved meanwhile is left alone. The last
    updater stays the person who resolved it: no user made this change.
    """
    now = now or timezone.now()
    cutoff = now - older_than
    resolved_label = Status.RESOLVED.label
    last_resolved = Subquery(
        Event.objects.filter(ticket=OuterRef("pk"), changes__status__1=resolved_label)
        .order_by("-created_at", "-id")
        .values("created_at")[:1]
    )
    candidates = list(
        Ticket.objects.filter(status=Status.RESOLVED)
        .annotate(resolved_at=Coalesce(last_resolved, F("updated_at")))
        .filter(resolved_at__lte=cutoff)
        .order_by("resolved_at", "pk")
        .values_list("pk", flat=True)
    )
    closed = 0
    for pk in candidates:
        with transaction.atomic():
            ticket = (
                Ticket.objects.select_for_update()
                .annotate(resolved_at=Coalesce(last_resolved, F("updated_at")))
                .filter(pk=pk, status=Status.RESOLVED, resolved_at__lte=cutoff)
                .first()
            )
            if ticket is None:
                continue
            diff: Diff = {}
            _note(diff, "status", ticket.get_status_display(), Status.CLOSED.label)
            ticket.status = Status.CLOSED
            ticket.closed_at = now
            ticket.version += 1
            ticket.save(update_fields=["status", "closed_at", "version", "updated_at"])
            record(
                ticket,
                _kind_of(diff),
                acting_user=None,
                via=Via.SYSTEM,
                version=ticket.version,
                changes=diff,
            )
            closed += 1
    return closed
