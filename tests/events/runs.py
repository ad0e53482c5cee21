"""Outbox rows in a chosen state, for tests of what reads them (health, admin, pruning)."""

from __future__ import annotations

from typing import Any

from supportdesk.events.models import Event, EventKind, HandlerRun, Via


def make_run(
    *, handler: str = "probe_on_updated", event: Event | None = None, **fields: Any
) -> HandlerRun:
    """A run of `handler` with `fields` written as given (due_at is otherwise set on insert)."""
    if event is None:
        event = Event.objects.create(kind=EventKind.UPDATED, via=Via.SYSTEM)
    run = HandlerRun.objects.create(event=event, handler=handler)
    if fields:
        HandlerRun.objects.filter(pk=run.pk).update(**fields)
        run.refresh_from_db()
    return run
