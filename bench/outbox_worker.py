"""`supportdesk worker` with the benchmark's no-op task and handlers: bench/outbox.py's worker.

bench/outbox.py imports this module (as `outbox_worker`) to enqueue `noop_task` and to write
runs for `noop_handler`; a worker started as `bench/outbox_worker.py` must know both by the
same names, so it imports itself under that name (the task's path is `outbox_worker.noop_task`,
never `__main__.noop_task`) before handing over to `supportdesk.cli.main(["worker"])`.

Django is set up on import: a task is checked against the configured backend when it is
defined. Set SUPPORTDESK_HOME (and everything else the worker reads) before importing.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "supportdesk.settings")
django.setup()

from django.tasks import task  # noqa: E402  (needs the settings above)

from supportdesk.events import registry  # noqa: E402
from supportdesk.events.models import EventKind  # noqa: E402

if TYPE_CHECKING:
    from supportdesk.events.models import Event

# A kind of event that nothing but the benchmark handles, so its runs are only the no-op's.
NOOP_KIND = "bench_noop"
NOOP_HANDLER = "noop_on_bench_noop"
# Stands in for the mail handlers while they do not exist: the latency is then commit -> run done.
STAND_IN_HANDLER = "noop_on_response_added"


@task()
def noop_task() -> None:
    """The raw django-tasks-db cost of one task, the baseline of the outbox's rate."""


def noop_handler(_event: Event) -> None:
    """The outbox's own cost of one run: claim, call, settle."""


def register(*, stand_in_mail: bool) -> None:
    registry.register(NOOP_KIND, name=NOOP_HANDLER)(noop_handler)
    if stand_in_mail:
        registry.register(EventKind.RESPONSE_ADDED, name=STAND_IN_HANDLER)(noop_handler)


def main(argv: list[str]) -> int:
    """`outbox_worker.py [--stand-in-mail]`: register the no-op handler(s), run the worker."""
    from supportdesk.cli import main as supportdesk

    register(stand_in_mail="--stand-in-mail" in argv)
    return supportdesk(["worker"])


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import outbox_worker  # the module under its own name: the names bench/outbox.py uses

    sys.exit(outbox_worker.main(sys.argv[1:]))
