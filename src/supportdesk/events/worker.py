"""What `supportdesk worker` runs beside django-tasks-db's own loop: the sweeper.

Every SUPPORTDESK_TASK_SWEEP_SECONDS the sweeper, a daemon thread with its own database
connection, writes this worker's heartbeat (read by /healthz), wakes up stranded runs
(events/tasks.py::sweep) and runs the periodic jobs that are due (events/periodic.py).
Every worker runs one; they may overlap, since claiming a run or a job is what decides
who runs it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import datetime

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from supportdesk.events import periodic
from supportdesk.events.models import WorkerHeartbeat
from supportdesk.events.tasks import sweep, worker_id

logger = logging.getLogger(__name__)


def beat(started_at: datetime, now: datetime | None = None) -> None:
    """Record that this worker is alive: one UPDATE on most ticks. The row is (re)written
    whole when this process starts (`started_at` is new): in a container every worker may
    be pid 1 on a reused hostname, so its row can already exist from a previous life."""
    now = now or timezone.now()
    name = worker_id()  # fits the column whole
    if WorkerHeartbeat.objects.filter(worker_id=name, started_at=started_at).update(seen_at=now):
        return
    WorkerHeartbeat.objects.update_or_create(
        worker_id=name,
        defaults={
            "hostname": socket.gethostname()[:255],
            "pid": os.getpid(),
            "started_at": started_at,
            "seen_at": now,
        },
    )


def sweep_once(started_at: datetime) -> None:
    """One tick; each step is tried even when another failed (a locked or restarting
    database), and each failure is logged and tried again on the next tick."""
    steps: list[tuple[str, Callable[[], object]]] = [
        ("heartbeat", lambda: beat(started_at)),
        ("sweep", sweep),
        ("periodic jobs", periodic.run_due_jobs),
    ]
    try:
        for name, step in steps:
            try:
                step()
            except Exception:
                logger.exception(
                    "the %s failed; retrying in %s s", name, settings.TASK_SWEEP_SECONDS
                )
    finally:
        close_old_connections()


def start_sweeper(stop: threading.Event) -> threading.Thread:
    """Tick at once (a restarted worker shows as alive and recovers what its predecessor
    left without waiting), then every TASK_SWEEP_SECONDS until `stop` is set."""
    started_at = timezone.now()

    def loop() -> None:
        try:
            sweep_once(started_at)
            while not stop.wait(settings.TASK_SWEEP_SECONDS):
                sweep_once(started_at)
        finally:
            connection.close()

    thread = threading.Thread(target=loop, name="supportdesk-sweeper", daemon=True)
    thread.start()
    return thread
