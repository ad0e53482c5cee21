"""Write the history row of a change, and its outbox runs, inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from django.db import transaction

from supportdesk import rows
from supportdesk.events import registry, tasks
from supportdesk.events.models import Event, EventKind, HandlerRun, Via

if TYPE_CHECKING:
    # Typing only: events sits below tickets and accounts, which import it at run time.
    from supportdesk.accounts.models import User
    from supportdesk.tickets.models import Response, Ticket


def record(
    ticket: Ticket | None,
    kind: EventKind,
    *,
    acting_user: User | None,
    via: Via,
    changes: Mapping[str, Any] | None = None,
    version: int,
    is_internal: bool = False,
    actor_email: str = "",
    response: Response | None = None,
) -> Event:
    """Write one Event row, one HandlerRun per handler registered for its kind, and one
    wake-up task for them; must run inside the change's transaction, so that all of it
    commits or rolls back with the change.

    Raises RuntimeError outside a transaction: an event committed apart from its change could
    announce a change that rolled back, which is exactly what the outbox exists to prevent.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("record() must be called inside the change's transaction.")
    event = Event(
        ticket=ticket,
        kind=kind,
        actor=acting_user,
        actor_email=actor_email,
        via=via,
        changes=dict(changes or {}),
        version=version,
        is_internal=is_internal,
        response=response,
    )
    rows.insert(event)  # every change writes one: the ORM's create cost more than the SQL
    _queue_runs([event])
    return event


def record_many(
    kind: EventKind, changes: Sequence[Mapping[str, Any]], *, via: Via, version: int
) -> list[Event]:
    """record() for several changes of one kind that belong to no ticket and no user (the
    mails a gateway batch stored): their events, then their runs, each in one statement,
    and one wake-up, so that a batch costs about what one change does."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("record_many() must be called inside the changes' transaction.")
    events = [
        Event(ticket=None, kind=kind, actor=None, via=via, changes=dict(change), version=version)
        for change in changes
    ]
    rows.insert_many(events)
    _queue_runs(events)
    return events


def _queue_runs(events: Sequence[Event]) -> None:
    """One HandlerRun per event and handler registered for its kind, and one wake-up."""
    runs = [
        HandlerRun(event=event, handler=name)
        for event in events
        for name in registry.handlers_for(event.kind)
    ]
    rows.insert_many(runs)
    tasks.wake([run.pk for run in runs])
