"""Keyset pagination with an opaque cursor: the last row's (sort key, id), signed so a
client cannot forge one. Pages cost the same at any depth (no OFFSET) and an insert
does not shift later pages."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core import signing
from django.db.models import Q, QuerySet

from supportdesk.api.problems import Problem
from supportdesk.tickets.models import Ticket

SORT_FIELDS = {"updated": "updated_at", "created": "created_at"}
_SALT = "supportdesk.api.cursor"


def make_cursor(sort: str, ticket: Ticket) -> str:
    value: datetime = getattr(ticket, SORT_FIELDS[sort])
    return signing.dumps([sort, value.isoformat(), ticket.pk], salt=_SALT, compress=True)


def _read_cursor(sort: str, cursor: str) -> tuple[datetime, int]:
    try:
        data: Any = signing.loads(cursor, salt=_SALT)
        cursor_sort, value, pk = data
        if cursor_sort != sort or not isinstance(pk, int):
            raise ValueError
        return datetime.fromisoformat(value), pk
    except (signing.BadSignature, ValueError, TypeError):
        raise Problem(400, "The cursor is not one this API handed out for this sort.") from None


def page(
    tickets: QuerySet[Ticket], *, sort: str, limit: int, cursor: str | None
) -> tuple[list[Ticket], str | None]:
    """One page, newest first, and the cursor of the next one (None on the last page)."""
    field = SORT_FIELDS[sort]
    if cursor:
        value, pk = _read_cursor(sort, cursor)
        tickets = tickets.filter(Q(**{f"{field}__lt": value}) | Q(**{field: value, "id__lt": pk}))
    rows = list(tickets.order_by(f"-{field}", "-id")[: limit + 1])
    if len(rows) > limit:
        return rows[:limit], make_cursor(sort, rows[limit - 1])
    return rows, None
