"""Turn what a channel sent into rows, or raise InvalidChange naming the field at fault.

The services call these for every field; they check values, never who may set them.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

from django.db.models import Q

from supportdesk import rows
from supportdesk.accounts.models import Application, Environment, User
from supportdesk.errors import InvalidChange
from supportdesk.tickets.models import Priority, Tag, Ticket, TicketType
from supportdesk.tickets.validation import clean_email, clean_text

MAX_CCS = 50


def vocabulary_entry[Entry: (TicketType, Priority)](
    model: type[Entry], key: object, *, field: str, current: Entry | None = None
) -> Entry:
    """The entry with this key. Hidden entries are not offered for new choices, but a ticket
    keeps (and may re-submit) the one it has."""
    key = clean_text(key, field=field, max_length=32)
    if current is not None and current.key == key:
        return current
    row = rows.fetch_one(_offered(model), [key])
    if row is None:
        raise InvalidChange(f"Unknown {field} {key!r}.", field=field)
    return rows.build(model, row)


@cache
def _offered(model: type[TicketType | Priority]) -> str:
    """Hand-written (supportdesk/rows.py): every ticket create looks up two of these."""
    columns, table = rows.columns(model, "v"), rows.table(model)
    return f"SELECT {columns} FROM {table} v WHERE v.key = %s AND NOT v.is_hidden"  # noqa: S608


def as_list(values: object, *, field: str) -> list[object]:
    """A list of values; a bare string is refused, not split into its characters."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise InvalidChange(f"{field} must be a list.", field=field)
    return list(values)


def tags_named(names: object) -> list[Tag]:
    """Existing tags by name, regardless of case, like everywhere else a user types a name."""
    wanted = {clean_text(n, field="tags", max_length=64) for n in as_list(names, field="tags")}
    wanted.discard("")
    if not wanted:
        return []
    match = Q()
    for name in wanted:
        match |= Q(name__iexact=name)
    found = {tag.name.lower(): tag for tag in Tag.objects.filter(match)}
    missing = sorted(name for name in wanted if name.lower() not in found)
    if missing:
        raise InvalidChange(f"Unknown tag {missing[0]!r}.", field="tags")
    return sorted(found.values(), key=lambda t: t.name)


def application_of(value: object, organization_id: int) -> Application | None:
    if value is None or value == "":
        return None
    if isinstance(value, Application):
        value = value.pk
    try:
        return Application.objects.get(pk=int(str(value)), organization_id=organization_id)
    except (Application.DoesNotExist, ValueError, OverflowError):
        raise InvalidChange(
            "Choose an application of the ticket's organization, or all.", field="application"
        ) from None


def environments_of(values: object, application: Application | None) -> list[Environment]:
    """Environments of the application only; none means all of them."""
    try:
        ids = {
            v.pk if isinstance(v, Environment) else int(str(v))
            for v in as_list(values, field="environments")
        }
    except (ValueError, OverflowError):
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


def cc_emails(values: object) -> list[str]:
    emails: dict[str, str] = {}
    for value in as_list(values, field="ccs"):
        email = clean_email(value, field="ccs")
        emails[email.lower()] = email
    if len(emails) > MAX_CCS:
        raise InvalidChange(f"At most {MAX_CCS} CCs.", field="ccs")
    return sorted(emails.values())


def assignee_named(value: object) -> User | None:
    if value is None or value == "":
        return None
    user = value if isinstance(value, User) else None
    if user is None:
        try:
            user = User.objects.get(pk=int(str(value)))
        except (User.DoesNotExist, ValueError, OverflowError):
            raise InvalidChange("Unknown assignee.", field="assignee") from None
    if not user.is_agent or not user.is_active:
        raise InvalidChange("Tickets are assigned to active agents only.", field="assignee")
    return user


def problem_for(ticket: Ticket, value: object) -> Ticket | None:
    """The problem an incident links to, by ticket or number (with or without #)."""
    if value is None or value == "":
        return None
    if ticket.type.key != "incident":
        raise InvalidChange("Only an incident links to a problem.", field="problem")
    number = value.number if isinstance(value, Ticket) else str(value).strip().removeprefix("#")
    try:
        problem = Ticket.objects.select_related("type").get(number=int(number))
    except (Ticket.DoesNotExist, ValueError, OverflowError):
        raise InvalidChange(f"No ticket #{number}.", field="problem") from None
    if problem.type.key != "problem":
        raise InvalidChange(f"#{problem.number} is not a problem.", field="problem")
    return problem
