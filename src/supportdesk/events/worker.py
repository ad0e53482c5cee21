"""What `supportdesk worker` runs beside django-tasks-db's own loop: the sweeper.

The sweeper wakes up stranded runs (events/tasks.py::sweep) every
SUPPORTDESK_TASK_SWEEP_SECONDS, in a daemon thread with its own database connection. Every
worker runs one; they may overlap, since claiming a run is what decides who runs it.
"""

from __future__ import annotations

import logging
import threading

from django.conf import settings
from django.db import close_old_connections, connection

from supportdesk.events.tasks import sweep

logger = logging.getLogger(__name__)


def sweep_once() -> None:
    try:
        sweep()
    except Exception:  # a locked or restarting database: try again next time
        logger.exception("the sweep failed; retrying in %s s", settings.TASK_SWEEP_SECONDS)
    finally:
        close_old_connections()


def start_sweeper(stop: threading.Event) -> threading.Thread:
    def loop() -> None:
        try:
            while not stop.wait(settings.TASK_SWEEP_SECONDS):
                sweep_once()
        finally:
            connection.close()

    thread = threading.Thread(target=loop, name="supportdesk-sweeper", daemon=True)
    thread.start()
    return thread
