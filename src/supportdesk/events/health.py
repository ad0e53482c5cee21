"""Figures for /healthz: is a worker alive, and how deep is the outbox queue.

Two aggregate queries whatever the size of the tables: a monitor polls this every few
seconds, so it must cost the same at ten runs and at a million.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Max, Min, Q

from supportdesk.events.models import HandlerRun, RunState, WorkerHeartbeat

# A worker writes its heartbeat every sweep interval; three missed ticks mean it is gone
# (or stuck), one missed tick is only a busy database.
MISSED_TICKS = 3


def _seconds_since(now: datetime, moment: datetime | None) -> float | None:
    return None if moment is None else round(max(0.0, (now - moment).total_seconds()), 1)


def worker_status(now: datetime) -> dict[str, Any]:
    """`last_seen_seconds` of the most recently seen worker (None when none ever ran),
    `alive`: how many were seen within the window, `ok`: at least one was."""
    window = timedelta(seconds=MISSED_TICKS * settings.TASK_SWEEP_SECONDS)
    figures = WorkerHeartbeat.objects.aggregate(
        last=Max("seen_at"), alive=Count("pk", filter=Q(seen_at__gte=now - window))
    )
    return {
        "ok": figures["alive"] > 0,
        "last_seen_seconds": _seconds_since(now, figures["last"]),
        "alive": figures["alive"],
    }


def queue_status(now: datetime) -> dict[str, Any]:
    """Runs waiting and due now, running (of which `stuck`: lease expired, a worker died),
    `retrying` (waiting after a failed attempt), `failed` (given up: an admin's to look
    at), and how long the oldest due run has waited."""
    due = Q(state=RunState.PENDING, due_at__lte=now)
    figures = HandlerRun.objects.filter(
        state__in=[RunState.PENDING, RunState.RUNNING, RunState.FAILED]
    ).aggregate(
        due=Count("pk", filter=due),
        running=Count("pk", filter=Q(state=RunState.RUNNING)),
        stuck=Count("pk", filter=Q(state=RunState.RUNNING, lease_until__lt=now)),
        retrying=Count("pk", filter=Q(state=RunState.PENDING, attempts__gt=0)),
        failed=Count("pk", filter=Q(state=RunState.FAILED)),
        oldest_due=Min("due_at", filter=due),
    )
    oldest = figures.pop("oldest_due")
    return {**figures, "oldest_due_seconds": _seconds_since(now, oldest)}
