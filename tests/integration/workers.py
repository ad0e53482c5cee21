"""Real `supportdesk worker` processes against the test database, for the outbox's tests.

A worker here is `python -m tests.integration.worker_main`, which registers the tests'
handlers and then runs `supportdesk worker` itself, in its own process: killing it with
SIGKILL is a real crash, and its database is the test database (by DATABASE_URL).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


class _Process:
    """A supportdesk process against the test database, in its own process group, its
    output in a log file under `home`."""

    def __init__(self, home: Path, argv: list[str], *, name: str, env: dict[str, str]) -> None:
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
        self.log = home / f"{name}-{time.monotonic_ns()}.log"
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(
                [sys.executable, *argv],
                env=environment,
                cwd=ROOT,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        """SIGKILL the process group: no handler finishes, no transaction commits, no reply
        is sent, no lease is given back."""
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


class Worker(_Process):
    def __init__(self, home: Path, *, env: dict[str, str]) -> None:
        super().__init__(home, ["-m", "tests.integration.worker_main"], name="worker", env=env)


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# ---------------------------------------------------------------- mail in


class IntakeProcess(_Process):
    """`supportdesk smtpd ...` or `supportdesk worker` in its own process group, against the
    test database, as Worker; `mail_root` tells where the gateway keeps raw messages, which
    the worker must read, so a gateway and its worker share one SUPPORTDESK_HOME.

    CRASH_STORE_BLOCK_AFTER=N (gateway): after the Nth message is stored and committed, its
    Message-ID is written to CRASH_MARKER and the store never returns: that sender gets no
    250 for a message we kept. CRASH_PROCESS_BLOCK_AFTER=N (worker): after the Nth stored
    message is processed and committed, the handler stops dead before its run is marked
    done: the run is taken over when its lease ends. A SIGKILL is meant to follow either.
    """

    def __init__(self, home: Path, command: list[str], *, env: dict[str, str]) -> None:
        code = (
            "import sys; from tests.integration.workers import intake_main; sys.exit(intake_main())"
        )
        super().__init__(home, ["-c", code, *command], name=command[0], env=env)


def port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def intake_main() -> int:
    """The entry point of IntakeProcess: `supportdesk <argv>` with the crash hooks set."""
    import django

    django.setup()
    marker = Path(os.environ.get("CRASH_MARKER", "crash-marker"))
    if store_after := int(os.environ.get("CRASH_STORE_BLOCK_AFTER", "0")):
        from supportdesk.intake import smtpd

        smtpd.commit_spooled = _dead_after_storing(smtpd.commit_spooled, store_after, marker)  # type: ignore[assignment]
    if process_after := int(os.environ.get("CRASH_PROCESS_BLOCK_AFTER", "0")):
        from supportdesk.intake import handlers

        counted = _Counted()
        handlers.process_stored = _dead_after(  # type: ignore[assignment]
            handlers.process_stored, process_after, marker, counted
        )
        handlers.process_stored_many = _dead_after_many(  # type: ignore[assignment]
            handlers.process_stored_many, process_after, marker, counted
        )
    from supportdesk.cli import main as supportdesk

    return supportdesk(sys.argv[1:])


class _Counted:
    """Messages processed so far by the worker, by the single and the batch path."""

    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()

    def add(self, number: int, count: int) -> int | None:
        """The position in this call of the count-th message, if this call reaches it."""
        with self.lock:
            before, self.calls = self.calls, self.calls + number
        return count - before - 1 if before < count <= before + number else None


def _dead_after(
    function: Callable[..., Any], count: int, marker: Path, counted: _Counted
) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = function(*args, **kwargs)
        if counted.add(1, count) is not None:
            marker.write_text(str(result.pk))
            while True:  # committed, and the caller never hears of it
                time.sleep(60)
        return result

    return wrapper


def _dead_after_many(
    function: Callable[..., Any], count: int, marker: Path, counted: _Counted
) -> Callable[..., Any]:
    """As _dead_after, for a batch of messages processed together (process_stored_many)."""

    def wrapper(message_pks: list[int]) -> Any:
        result = function(message_pks)
        position = counted.add(len(message_pks), count)
        if position is not None:
            marker.write_text(str(message_pks[position]))
            while True:  # committed, and no run of the batch is marked done
                time.sleep(60)
        return result

    return wrapper


def _dead_after_storing(
    commit_spooled: Callable[..., Any], count: int, marker: Path
) -> Callable[..., Any]:
    """As _dead_after, for the gateway's batches: stops dead once `count` messages are stored,
    after the batch that stored the count-th committed to the spool, writing that message's
    Message-ID (its row is moved from the spool meanwhile, or by the next gateway)."""
    stored = 0

    def wrapper(kept: list[Any], spool: Any) -> list[Any]:
        nonlocal stored
        outcomes = commit_spooled(kept, spool)
        if stored < count <= stored + len(outcomes):
            marker.write_text(kept[count - stored - 1].message.message_id)
            while True:  # committed, and no sender of the batch ever hears of it
                time.sleep(60)
        stored += len(outcomes)
        return outcomes

    return wrapper
