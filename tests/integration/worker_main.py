"""`supportdesk worker` with the tests' hooks, for tests/integration (see workers.py).

CRASH_BLOCK_AFTER=N: after the Nth mail the SMTP server accepted, the worker writes its pid
to CRASH_MARKER and stops dead inside the handler, before the mail is marked sent: the
SIGKILL that follows lands mid-handler, and that mail must be sent again, with its
Message-ID, by whichever worker takes the run over. PROBE_LOG=path: registers the probe
handler of test_workers.py, which logs each execution's start and end there.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def main() -> int:
    import django

    django.setup()
    block_after = int(os.environ.get("CRASH_BLOCK_AFTER", "0"))
    if block_after:
        _stop_dead_after(block_after, Path(os.environ["CRASH_MARKER"]))
    if os.environ.get("PROBE_LOG"):
        from tests.integration import probe

        probe.register()
    from supportdesk.cli import main as supportdesk

    return supportdesk(["worker"])


def _stop_dead_after(count: int, marker: Path) -> None:
    from supportdesk.notify import transport

    real_send = transport.send
    accepted = 0

    def send(message):  # type: ignore[no-untyped-def]
        nonlocal accepted
        real_send(message)
        accepted += 1
        if accepted == count:
            marker.write_text(str(os.getpid()))
            while True:  # mid-handler, the mail accepted and not yet marked sent
                time.sleep(60)

    transport.send = send
    handlers = sys.modules.get("supportdesk.notify.handlers")
    if handlers is not None and hasattr(handlers, "send"):
        handlers.send = send


if __name__ == "__main__":
    sys.exit(main())
