"""A handler that logs when each execution starts and ends, to see overlaps across workers."""

from __future__ import annotations

import os
import time

from supportdesk.events import registry
from supportdesk.events.models import Event, EventKind

NAME = "probe_on_updated"


def probe_on_updated(event: Event) -> None:
    path = os.environ["PROBE_LOG"]
    started = time.time()
    time.sleep(0.02)  # long enough for a second worker to collide if claims were unsafe
    line = f"{event.pk} {os.getpid()} {started:.6f} {time.time():.6f}\n"
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, line.encode())  # one write with O_APPEND: lines never interleave
    finally:
        os.close(descriptor)


def register() -> None:
    registry.register(EventKind.UPDATED, name=NAME)(probe_on_updated)


def unregister() -> None:
    registry.unregister(NAME)
