"""Real `supportdesk worker` processes against the test database, for the outbox's tests.

A worker here is `python -m tests.integration.worker_main`, which registers the tests'
handlers and then runs `supportdesk worker` itself, in its own process: killing it with
SIGKILL is a real crash, and its database is the test database (by DATABASE_URL).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str:
    """The test database's URL, for a worker process to use as its own database."""
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    return (
        f"postgres://{settings['USER']}:{settings.get('PASSWORD') or ''}"
        f"@{settings['HOST']}:{settings['PORT']}/{settings['NAME']}"
    )


class Worker:
    def __init__(self, home: Path, *, env: dict[str, str]) -> None:
        home.mkdir(parents=True, exist_ok=True)
        environment = {
            k: v for k, v in os.environ.items() if not k.startswith(("SUPPORTDESK_", "CRASH_"))
        }
        environment.update(
            DJANGO_SETTINGS_MODULE="supportdesk.settings",
            DATABASE_URL=database_url(),
            SUPPORTDESK_HOME=str(home),
            SUPPORTDESK_SECRET_KEY="tests-only-secret-key-for-the-worker-processes",
            PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "src")]),
            **env,
        )
        self.log = home / f"worker-{time.monotonic_ns()}.log"
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.integration.worker_main"],
                env=environment,
                cwd=ROOT,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        """SIGKILL: no handler runs, no transaction commits, no lease is given back."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
