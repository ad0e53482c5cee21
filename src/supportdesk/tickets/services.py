"""The only code that changes a ticket. Every channel (web, API, mail, CLI) calls these.

Each service runs in one transaction: it checks access and rules for the acting user,
changes state, and writes the history event (the outbox for mail, pages and timers).
"""

from __future__ import annotations

import mimetypes
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from supportdesk.accounts.models import Application, Environment, User
from supportdesk.errors import Conflict, Forbidden, InvalidChange
from supportdesk.events.models import Event, EventKind, Via
from supportdesk.events.record import record
from supportdesk.tickets import access
from supportdesk.tickets.models import (
    DONE_STATUSES,
    Attachment,
    Channel,
    Counter,
    Priority,
    Response,
    Status,
    Tag,
    Ticket,
    TicketCC,
    TicketType,
)
from supportdesk.tickets.validation import (
    TITLE_MAX,
    Upload,
    clean_email,
    clean_text,
    clean_upload,
)

FIRST_TICKET_NUMBER = 1000


def allocate_number() -> int:
    """Next ticket number, taken under a row lock in the caller's transaction."""
    counter, created = Counter.objects.select_for_update().get_or_create(
        name="ticket", defaults={"value": FIRST_TICKET_NUMBER}
    )
    if created:
        return FIRST_TICKET_NUMBER
    Counter.objects.filter(pk=counter.pk).update(value=F("value") + 1)
    return counter.value + 1


def _vocabulary_entry(model: type[TicketType] | type[Priority], key: object, *, field: str) -> Any:
    if not isinstance(key, str):
        raise InvalidChange(f"{field} must be one of the offered keys.", field=field)
    entry = model.objects.filter(key=key, is_hidden=False).first()
    if entry is None:
        raise InvalidChange(f"Unknown {field} {key!r}.", field=field)
    return entry


def _tags(names: object) -> list[Tag]:
    if not isinstance(names, (list, tuple, set, frozenset)):
        raise InvalidChange("tags must be a list of tag names.", field="tags")
    wanted = {clean_text(n, field="tags", max_length=64) for n in names} - {""}
    found = {t.name.lower(): t for t in Tag.objects.filter(name__in=wanted)}
    # Tag names match regardless of case, like everywhere else a user types a name.
    missing = [n for n in wanted if n.lower() not in found]
    if missing:
        lowered = {t.name.lower(): t for t in Tag.objects.all()}
        for name in list(missing):
            if name.lower() in lowered:
                found[name.lower()] = lowered[name.lower()]
                missing.remove(name)
    if missing:
        raise InvalidChange(f"Unknown tag {sorted(missing)[0]!r}.", field="tags")
    return sorted(found.values(), key=lambda t: t.name)


def _application(value: object, organization_id: int) -> Application | None:
    if value in (None, ""):
        return None
    if isinstance(value, Application):
        value = value.pk
    try:
        return Application.objects.get(pk=int(str(value)), organization_id=organization_id)
    except (Application.DoesNotExist, ValueError):
        raise InvalidChange(
            "Choose an application of the ticket's organization, or all.", field="application"
        ) from None


def _environments(values: object, application: Application | None) -> list[Environment]:
    if not isinstance(values, (list, tuple, set, frozenset)):
        raise InvalidChange("environments must be a list.", field="environments")
    try:
        ids = {v.pk if isinstance(v, Environment) else int(str(v)) for v in values}
    except ValueError:
        raise InvalidChange("Unknown environment.", field="environments") from None
    if not ids:
        return []
    if application is None:
        raise InvalidChange("Choose an application before its environments.", field="environments")
    found = list(Environment.objects.filter(pk__in=ids, application=application))
    if len(found) != len(ids):
        raise InvalidChange(
            f"Choose environments of {application.name} only.", field="environments"
        )
    return sorted(found, key=lambda e: e.name)


def _cc_emails(values: object) -> list[str]:
    if not isinstance(values, (list, tuple, set, frozenset)):
        raise InvalidChange("ccs must be a list of email addresses.", field="ccs")
    emails = {clean_email(v, field="ccs").lower(): clean_email(v, field="ccs") for v in values}
    if len(emails) > 50:
        raise InvalidChange("At most 50 CCs.", field="ccs")
    return sorted(emails.values())


def _set_ccs(ticket: Ticket, emails: Sequence[str]) -> None:
    """Replace the CC list; an address that belongs to a user links that user."""
    ticket.ccs.all().delete()
    match = Q()
    for email in emails:
        match |= Q(email__iexact=email)
    users = {u.email.lower(): u for u in User.objects.filter(match)} if emails else {}
    TicketCC.objects.bulk_create(
        TicketCC(ticket=ticket, email=e, user=users.get(e.lower())) for e in emails
    )


def _requester(acting_user: User, requester: User | None) -> User:
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


def _store_attachments(
    ticket: Ticket, uploads: Iterable[Upload], *, acting_user: User, response: Response | None
) -> list[Attachment]:
    stored = []
    for upload in uploads:
        name = clean_upload(upload)
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        attachment = Attachment(
            ticket=ticket, response=response, filename=name, size=upload.size or 0,
            content_type=content_type, uploaded_by=acting_user,
        )
        attachment.file.save(name, upload, save=False)  # type: ignore[arg-type]
        attachment.save()
        stored.append(attachment)
    return stored


@transaction.atomic
def create_ticket(  # noqa: PLR0913  (one keyword per ticket field is the clearest signature)
    *,
    acting_user: User,
    via: Via,
    type: str,  # noqa: A002
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

    Raises InvalidChange naming the field for bad input, Forbidden when a customer acts for
    someone else or sets a channel other than their own.
    """
    requester = _requester(acting_user, requester)
    organization_id = requester.organization_id
    assert organization_id is not None  # noqa: S101  (a customer always has one: DB constraint)
    channel = _channel(acting_user, via, channel)
    ticket_type = _vocabulary_entry(TicketType, type, field="type")
    ticket_priority = _vocabulary_entry(Priority, priority, field="priority")
    clean_title = clean_text(title, field="title", max_length=TITLE_MAX, required=True)
    clean_description = clean_text(description, field="description")
    app = _application(application, organization_id)
    envs = _environments(list(environments), app)
    tag_rows = _tags(list(tags))
    cc_list = _cc_emails(list(ccs))
    uploads = list(attachments)
    for upload in uploads:
        clean_upload(upload)
    ticket = Ticket.objects.create(
        number=allocate_number(), type=ticket_type, priority=ticket_priority, title=clean_title,
        description=clean_description, organization_id=organization_id, requester=requester,
        application=app, status=Status.OPEN, created_by=acting_user,
        last_updated_by=acting_user, channel=channel,
    )
    ticket.environments.set(envs)
    ticket.tags.set(tag_rows)
    _set_ccs(ticket, cc_list)
    stored = _store_attachments(ticket, uploads, acting_user=acting_user, response=None)
    record(
        ticket, EventKind.CREATED, acting_user=acting_user, via=via, version=ticket.version,
        changes={
            "type": [None, ticket_type.name], "priority": [None, ticket_priority.name],
            "title": [None, clean_title], "status": [None, Status.OPEN.label],
            **({"attachments": [None, [a.filename for a in stored]]} if stored else {}),
        },
    )
    return ticket


def _channel(acting_user: User, via: Via, channel: str | None) -> str:
    """How the customer spoke: the adapter's own channel unless an agent logs a call or chat."""
    default = {Via.API: Channel.API, Via.EMAIL: Channel.EMAIL}.get(via, Channel.WEB)
    if channel in (None, "", default):
        return default
    if channel not in Channel.values:
        raise InvalidChange(f"Unknown channel {channel!r}.", field="channel")
    if not access.can_log_on_behalf(acting_user):
        raise Forbidden("Only agents log a call or chat.", field="channel")
    return str(channel)


def _display(value: object) -> object:
    if value is None:
        return None
    if isinstance(value, list):
        return [str(v) for v in value]
    return str(value)


def _ensure_fresh(ticket: Ticket, expected_version: int | None) -> None:
    """Refuse an edit made from a stale copy, naming what changed since that copy."""
    if expected_version is None or expected_version == ticket.version:
        return
    later: Sequence[Event] = list(
        ticket.events.filter(version__gt=expected_version).select_related("actor")
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
    """Apply field changes. Customers change the fields they set, never the status (a
    re-open goes through reopen_ticket); agents change everything.

    Raises NotFound for an invisible ticket, Forbidden for a field the user may not change,
    InvalidChange for a bad value, Conflict when expected_version is behind.
    """
    ticket = access.access_ticket(acting_user, ticket.number, for_update=True)
    allowed = access.editable_fields(acting_user)
    unknown = set(changes) - access.AGENT_FIELDS
    if unknown:
        raise InvalidChange(f"Unknown field {sorted(unknown)[0]!r}.", field=sorted(unknown)[0])
    if denied := sorted(set(changes) - allowed):
        if denied == ["status"] and changes["status"] == Status.OPEN and access.can_reopen(acting_user, ticket):
            return reopen_ticket(ticket, acting_user=acting_user, via=via)
        raise Forbidden(f"You cannot change {denied[0]}.", field=denied[0])
    _ensure_fresh(ticket, expected_version)
    diff = _apply(ticket, acting_user, changes)
    if not diff:
        return ticket
    ticket.version += 1
    ticket.last_updated_by = acting_user
    ticket.save()
    record(ticket, _kind_of(diff), acting_user=acting_user, via=via, version=ticket.version,
           changes=diff)
    return ticket


def _kind_of(diff: Mapping[str, Any]) -> EventKind:
    if "status" in diff and diff["status"][0] in (Status.RESOLVED.label, Status.CLOSED.label) \
            and diff["status"][1] in (Status.OPEN.label, Status.PENDING.label):
        return EventKind.REOPENED
    single = {"status": EventKind.STATUS_CHANGED, "assignee": EventKind.ASSIGNED,
              "problem": EventKind.PROBLEM_LINKED}
    if len(diff) == 1:
        return single.get(next(iter(diff)), EventKind.UPDATED)
    return EventKind.UPDATED


def _apply(ticket: Ticket, acting_user: User, changes: Mapping[str, Any]) -> dict[str, list[Any]]:  # noqa: C901, PLR0912
    """Validate and set each changed field; return {field: [from, to]} for the history."""
    diff: dict[str, list[Any]] = {}

    def note(name: str, old: object, new: object) -> None:
        if _display(old) != _display(new):
            diff[name] = [_display(old), _display(new)]

    if "type" in changes:
        new_type = _vocabulary_entry(TicketType, changes["type"], field="type")
        note("type", ticket.type, new_type)
        ticket.type = new_type
    if "priority" in changes:
        new_priority = _vocabulary_entry(Priority, changes["priority"], field="priority")
        note("priority", ticket.priority, new_priority)
        ticket.priority = new_priority
    if "title" in changes:
        title = clean_text(changes["title"], field="title", max_length=TITLE_MAX, required=True)
        note("title", ticket.title, title)
        ticket.title = title
    if "description" in changes:
        description = clean_text(changes["description"], field="description")
        note("description", ticket.description, description)
        ticket.description = description
    if "requester" in changes:
        new_requester = changes["requester"]
        if not isinstance(new_requester, User):
            raise InvalidChange("Unknown requester.", field="requester")
        new_requester = _requester(acting_user, new_requester)
        if new_requester.organization_id != ticket.organization_id:
            raise InvalidChange("The requester must belong to the ticket's organization.", field="requester")
        note("requester", ticket.requester, new_requester)
        ticket.requester = new_requester
    _apply_scope(ticket, changes, note)
    if "tags" in changes:
        tags = _tags(changes["tags"])
        old_tags = sorted(t.name for t in ticket.tags.all())
        note("tags", old_tags, [t.name for t in tags])
        ticket.tags.set(tags)
    if "ccs" in changes:
        emails = _cc_emails(changes["ccs"])
        old_ccs = sorted(c.email for c in ticket.ccs.all())
        if old_ccs != emails:
            note("ccs", old_ccs, emails)
            _set_ccs(ticket, emails)
    if "assignee" in changes:
        assignee = _assignee(changes["assignee"])
        note("assignee", ticket.assignee, assignee)
        ticket.assignee = assignee
    if "status" in changes:
        status = changes["status"]
        if status not in Status.values:
            raise InvalidChange(f"Unknown status {status!r}.", field="status")
        note("status", ticket.get_status_display(), Status(status).label)
        if status != ticket.status:
            ticket.closed_at = timezone.now() if status == Status.CLOSED else None
        ticket.status = status
    if "problem" in changes:
        problem = _problem(ticket, changes["problem"])
        note("problem", f"#{ticket.problem.number}" if ticket.problem else None,
             f"#{problem.number}" if problem else None)
        ticket.problem = problem
    elif ticket.problem_id and ticket.type.key != "incident":
        note("problem", f"#{ticket.problem.number}" if ticket.problem else None, None)
        ticket.problem = None
    return diff


def _apply_scope(ticket: Ticket, changes: Mapping[str, Any], note: Any) -> None:
    """Application and environments change together: environments must be the application's."""
    if "application" not in changes and "environments" not in changes:
        return
    app = (
        _application(changes["application"], ticket.organization_id)
        if "application" in changes else ticket.application
    )
    old_envs = sorted(e.name for e in ticket.environments.all())
    if "environments" in changes:
        envs = _environments(changes["environments"], app)
    else:
        envs = [e for e in ticket.environments.all() if app and e.application_id == app.pk]
    note("application", ticket.application, app)
    note("environments", old_envs, [e.name for e in envs])
    ticket.application = app
    ticket.environments.set(envs)


def _assignee(value: object) -> User | None:
    if value in (None, ""):
        return None
    user = value if isinstance(value, User) else None
    if user is None:
        try:
            user = User.objects.get(pk=int(str(value)))
        except (User.DoesNotExist, ValueError):
            raise InvalidChange("Unknown assignee.", field="assignee") from None
    if not user.is_agent or not user.is_active:
        raise InvalidChange("Tickets are assigned to active agents only.", field="assignee")
    return user


def _problem(ticket: Ticket, value: object) -> Ticket | None:
    if value in (None, ""):
        return None
    if ticket.type.key != "incident":
        raise InvalidChange("Only an incident links to a problem.", field="problem")
    number = value.number if isinstance(value, Ticket) else value
    try:
        problem = Ticket.objects.select_related("type").get(number=int(str(number)))
    except (Ticket.DoesNotExist, ValueError, OverflowError):
        raise InvalidChange(f"No ticket #{number}.", field="problem") from None
    if problem.type.key != "problem":
        raise InvalidChange(f"#{problem.number} is not a problem.", field="problem")
    return problem


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
    record(ticket, EventKind.REOPENED, acting_user=acting_user, via=via, version=ticket.version,
           changes={"status": [previous, Status.OPEN.label]})
    return ticket


@transaction.atomic
def add_response(  # noqa: PLR0913
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

    A customer-side response on a Pending ticket moves it to Open. Raises Forbidden for a
    customer's internal note or an on-behalf entry, InvalidChange for an empty body.
    """
    ticket = access.access_ticket(acting_user, ticket.number, for_update=True)
    if internal and not access.can_see_internal(acting_user):
        raise Forbidden("Only agents write internal notes.", field="internal")
    text = clean_text(body, field="body", required=True)
    channel = _channel(acting_user, via, channel)
    author = acting_user
    if on_behalf_of is not None:
        if not access.can_log_on_behalf(acting_user):
            raise Forbidden("Only agents log a response for someone else.", field="on_behalf_of")
        if on_behalf_of.organization_id != ticket.organization_id or not on_behalf_of.is_customer:
            raise InvalidChange("Log calls for a customer of the ticket's organization.", field="on_behalf_of")
        author = on_behalf_of
    uploads = list(attachments)
    for upload in uploads:
        clean_upload(upload)
    response = Response.objects.create(
        ticket=ticket, author=author, body=text, is_internal=internal, channel=channel,
        logged_by=acting_user if author != acting_user else None,
    )
    stored = _store_attachments(ticket, uploads, acting_user=acting_user, response=response)
    changes: dict[str, list[Any]] = {}
    if stored:
        changes["attachments"] = [None, [a.filename for a in stored]]
    update_fields = ["last_updated_by", "updated_at"]
    if not internal and not author.is_agent and ticket.status == Status.PENDING:
        ticket.status = Status.OPEN
        ticket.version += 1
        changes["status"] = [Status.PENDING.label, Status.OPEN.label]
        update_fields += ["status", "version"]
    ticket.last_updated_by = acting_user
    ticket.save(update_fields=update_fields)
    record(
        ticket, EventKind.NOTE_ADDED if internal else EventKind.RESPONSE_ADDED,
        acting_user=acting_user, via=via, version=ticket.version, changes=changes,
        is_internal=internal, response=response,
    )
    return response


@transaction.atomic
def add_attachments(
    ticket: Ticket, uploads: Iterable[Upload], *, acting_user: User, via: Via
) -> list[Attachment]:
    """Attach files to the ticket itself (not to a response)."""
    ticket = access.access_ticket(acting_user, ticket.number, for_update=True)
    files = list(uploads)
    if not files:
        raise InvalidChange("Choose a file to attach.", field="attachments")
    for upload in files:
        clean_upload(upload)
    stored = _store_attachments(ticket, files, acting_user=acting_user, response=None)
    ticket.last_updated_by = acting_user
    ticket.save(update_fields=["last_updated_by", "updated_at"])
    record(ticket, EventKind.ATTACHMENT_ADDED, acting_user=acting_user, via=via,
           version=ticket.version, changes={"attachments": [None, [a.filename for a in stored]]})
    return stored
