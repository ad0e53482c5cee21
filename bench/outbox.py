"""Measure the outbox: commit to mail accepted, and a no-op handler's rate beside raw tasks.

Run it as `bench/run-outbox` (or `make bench-outbox`); `bench/run-outbox --help` lists the
options and bench/README.md ("Outbox") what is measured and the last figures.

Everything runs on a scratch SQLite data directory that this script migrates and seeds through
the services (a few organizations, customers and tickets, each ticket with a requester and two
CCs). The workers are `supportdesk worker` processes (bench/outbox_worker.py adds the no-op
task and handlers) on that directory; outbound mail goes to an aiosmtpd sink in a process of
its own, which notes the time it accepted each mail and the mail's Message-ID. The changes are
made here, in this process, through `tickets.services.add_response`, so their commit time is
known to the microsecond; the Message-ID names the event, so each accepted mail is matched to
the change that caused it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bench
import measure

ROOT = Path(__file__).resolve().parent.parent
RESULTS = bench.DEFAULT_HOME / "results-outbox.json"
PASSWORD = "bench outbox password"  # noqa: S105  (scratch users on a scratch database)
CUSTOMERS_PER_ORG = 3  # a ticket's requester and its two CCs: 3 recipients per change
TARGET_P99_SECONDS = 1.0
TARGET_SHARE_OF_RAW = 0.5
MESSAGE_ID = re.compile(rb"^Message-ID:\s*(<[^>]+>)", re.IGNORECASE | re.MULTILINE)
EVENT_OF_MESSAGE_ID = re.compile(r"^<e(\d+)\.")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run-outbox", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--changes",
        type=int,
        default=1000,
        help="public responses per worker count, each mailing 3 people (default 1000)",
    )
    parser.add_argument("--rate", type=float, default=20.0, help="changes a second (default 20)")
    parser.add_argument(
        "--workers",
        default="1,2",
        help="worker processes of each latency round, comma-separated (default 1,2)",
    )
    parser.add_argument(
        "--tasks",
        type=int,
        default=2000,
        help="no-op tasks, then no-op handler runs, for the rate (default 2000; 0 skips it)",
    )
    parser.add_argument("--orgs", type=int, default=5, help="organizations (default 5)")
    parser.add_argument(
        "--tickets", type=int, default=50, help="tickets the changes go round (default 50)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds without progress before giving up on missing mail or runs (default 60)",
    )
    parser.add_argument(
        "--home",
        type=Path,
        default=None,
        help="scratch data directory, new or empty (default: a temporary one, removed after)",
    )
    # Internal: the SMTP sink runs as `outbox.py --sink PORT LOG` in a process of its own.
    parser.add_argument("--sink", nargs=2, metavar=("PORT", "LOG"), help=argparse.SUPPRESS)
    return parser.parse_args()


def say(message: str) -> None:
    print(f"bench: {message}", flush=True)


# ---------------------------------------------------------------- the SMTP sink

PLAIN_PATH = re.compile(r"[ \t]*<([^<>@\s\"\\(),:;\[\]]+@[A-Za-z0-9.-]+)>(?:[ \t]+|\Z)")


def run_sink(port: int, log: Path) -> int:
    """Accept every mail; write `accepted-at<TAB>Message-ID<TAB>recipients` per mail, flushed,
    the time taken just before the 250 goes out. Runs until SIGINT or SIGTERM."""
    from aiosmtpd.controller import Controller

    out = log.open("a", buffering=1)

    class Recorder:
        # aiosmtpd calls the hook by this name.
        async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802
            accepted = time.time()
            content = envelope.original_content or envelope.content or b""
            head = re.split(rb"\r?\n\r?\n", content, maxsplit=1)[0]
            match = MESSAGE_ID.search(head)
            message_id = match.group(1).decode(errors="replace") if match else "-"
            out.write(f"{accepted:.6f}\t{message_id}\t{','.join(envelope.rcpt_tos)}\n")
            return "250 Message accepted for delivery"

    from aiosmtpd.smtp import SMTP

    class PlainSMTP(SMTP):
        """aiosmtpd reading `<local@domain>` without its address parser, which defines a
        class on every MAIL and RCPT: the sink stands in for a remote mail server, and the
        CPU it takes here is taken from the workers measured beside it."""

        def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
            plain = PLAIN_PATH.match(arg)
            if plain is None:
                return super()._getaddr(arg)
            return plain.group(1), arg[plain.end() :]

    class SinkController(Controller):
        def factory(self) -> SMTP:
            return PlainSMTP(self.handler, **self.SMTP_kwargs)

    controller = SinkController(Recorder(), hostname="127.0.0.1", port=port)
    controller.start()
    done = [False]

    def stop(_signum: int, _frame: object) -> None:
        done[0] = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not done[0]:
        time.sleep(0.2)
    controller.stop()
    out.close()
    return 0


@dataclass
class Sink:
    """The sink's process and what it has accepted so far: Message-ID -> accepted times."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path
    accepted: dict[str, list[float]] = field(default_factory=dict)
    mails: int = 0
    _offset: int = 0

    @classmethod
    def start(cls, home: Path) -> Sink:
        port = measure.free_port()
        log = home / "sink.log"
        log.touch()
        process = subprocess.Popen(
            [sys.executable, __file__, "--sink", str(port), str(log)],
            stdout=(home / "sink.out").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit(f"bench: the SMTP sink exited with {process.returncode}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                time.sleep(0.1)
                continue
            return cls(process, port, log)
        raise SystemExit("bench: the SMTP sink did not listen within 20 s")

    def read(self) -> None:
        with self.log.open("rb") as file:
            file.seek(self._offset)
            data = file.read()
        complete = data.rfind(b"\n") + 1
        self._offset += complete
        for line in data[:complete].decode().splitlines():
            at, message_id, _ = line.split("\t", 2)
            self.accepted.setdefault(message_id, []).append(float(at))
            self.mails += 1

    def stop(self) -> None:
        measure.stop(self.process)


# ---------------------------------------------------------------- Django in this process


def setup_django(env: dict[str, str]) -> None:
    """This process makes the changes, so it runs on the scratch data directory too."""
    os.environ.clear()
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "supportdesk.settings"
    import outbox_worker  # noqa: F401  (sets Django up; defines the no-op task)


def mail_handlers() -> list[str]:
    from supportdesk.events import registry
    from supportdesk.events.models import EventKind

    return registry.handlers_for(EventKind.RESPONSE_ADDED)


@dataclass
class Target:
    """A ticket the changes go to, and the three addresses each change must reach."""

    ticket: Any
    recipients: list[str]


def seed(orgs: int, tickets: int) -> tuple[Any, list[Target]]:
    """An agent, CUSTOMERS_PER_ORG customers per organization, and tickets opened by a
    customer with the organization's two other customers in CC: all through the services."""
    from supportdesk.accounts import services as accounts
    from supportdesk.events.models import Via
    from supportdesk.tickets import services

    agent = accounts.create_user(
        email="agent@bench.example", role="agent", password=PASSWORD, name="Bench Agent"
    )
    people = []
    for o in range(orgs):
        organization = accounts.get_or_create_organization(f"Bench customer {o + 1}")
        people.append(
            [
                accounts.create_user(
                    email=f"customer{c + 1}@org{o + 1}.bench.example",
                    role="customer",
                    password=PASSWORD,
                    organization=organization,
                    name=f"Customer {c + 1} of org {o + 1}",
                )
                for c in range(CUSTOMERS_PER_ORG)
            ]
        )
    targets = []
    for t in range(tickets):
        customers = people[t % orgs]
        requester = customers[(t // orgs) % CUSTOMERS_PER_ORG]
        ccs = [c.email for c in customers if c != requester]
        ticket = services.create_ticket(
            acting_user=requester,
            via=Via.WEB,
            type="incident",
            priority="normal",
            title=f"Bench ticket {t + 1}",
            description="Opened by bench/outbox.py; every agent response mails 3 people.",
            ccs=ccs,
        )
        targets.append(Target(ticket, [requester.email, *ccs]))
    return agent, targets


# ---------------------------------------------------------------- workers


def start_workers(
    count: int, env: dict[str, str], home: Path, *, stand_in: bool, label: str
) -> list[subprocess.Popen[bytes]]:
    command = [sys.executable, str(ROOT / "bench" / "outbox_worker.py")]
    if stand_in:
        command.append("--stand-in-mail")
    workers = []
    logs = []
    for index in range(count):
        log = home / f"worker-{label}-{index + 1}.log"
        logs.append(log)
        workers.append(
            subprocess.Popen(
                command,
                env=env,
                stdout=log.open("wb"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    deadline = time.monotonic() + 60
    for worker, log in zip(workers, logs, strict=True):
        while b"Background worker started" not in log.read_bytes():
            if worker.poll() is not None or time.monotonic() > deadline:
                stop_workers(workers)
                raise SystemExit(f"bench: a worker did not start; see {log}")
            time.sleep(0.1)
    time.sleep(1.2)  # db_worker sleeps up to 1 s before its first poll (its startup delay)
    return workers


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> list[int | None]:
    return [measure.stop(worker)[0] for worker in workers]


def outstanding() -> tuple[int, int]:
    """(runs pending or running, tasks not finished)."""
    from django_tasks_db.models import DBTaskResult

    from supportdesk.events.models import HandlerRun, RunState

    runs = HandlerRun.objects.filter(state__in=[RunState.PENDING, RunState.RUNNING]).count()
    tasks = DBTaskResult.objects.filter(finished_at__isnull=True).count()
    return runs, tasks


def wait_idle(timeout: float, what: str) -> None:
    """Until every run and every task is finished (the seed's own mail, say), so that a
    measurement starts on an empty queue."""
    started = time.monotonic()
    last = None
    while time.monotonic() - started < timeout:
        now = outstanding()
        if now == (0, 0):
            return
        if now != last:
            last = now
        time.sleep(0.2)
    say(
        f"{what}: still {last[0] if last else '?'} runs and {last[1] if last else '?'} tasks "
        f"outstanding after {timeout:.0f} s; measuring anyway"
    )


def poll_until(
    done: Callable[[], tuple[int, int]], *, timeout: float, label: str, every: float = 5.0
) -> tuple[int, int]:
    """Call done() -> (finished, total) until finished == total or no progress for timeout
    seconds; print progress every few seconds. Returns the last (finished, total)."""
    last_progress = time.monotonic()
    last_print = time.monotonic()
    finished, total = done()
    while finished < total:
        time.sleep(0.1)
        now_finished, total = done()
        now = time.monotonic()
        if now_finished != finished:
            last_progress = now
        finished = now_finished
        if now - last_print >= every:
            say(f"{label}: {finished}/{total}")
            last_print = now
        if now - last_progress > timeout:
            say(f"{label}: no progress for {timeout:.0f} s, giving up with {finished}/{total}")
            break
    return finished, total


# ---------------------------------------------------------------- the rate of no-op work


@dataclass
class Rate:
    name: str
    count: int
    seconds: float  # commit until the last one finished
    failed: int

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "count": self.count,
            "seconds": round(self.seconds, 3),
            "per_second": round(self.per_second, 1),
            "failed": self.failed,
        }


def raw_rate(count: int, timeout: float, *, label: str = "raw tasks") -> Rate:
    """`count` no-op django-tasks-db tasks enqueued in one transaction; the time from its
    commit until the worker finished the last of them."""
    import outbox_worker
    from django.db import transaction
    from django.db.models import Max
    from django.utils import timezone
    from django_tasks_db.models import DBTaskResult

    path = outbox_worker.noop_task.module_path
    begin = timezone.now()
    with transaction.atomic():
        for _ in range(count):
            outbox_worker.noop_task.enqueue()
    committed = time.time()
    say(f"{label}: {count} enqueued, the worker drains them")
    ours = DBTaskResult.objects.filter(task_path=path, enqueued_at__gte=begin)

    def progress() -> tuple[int, int]:
        return ours.filter(finished_at__isnull=False).count(), count

    poll_until(progress, timeout=timeout, label=f"{label} finished")
    last = ours.aggregate(last=Max("finished_at"))["last"]
    done = ours.filter(status="SUCCESSFUL").count()
    seconds = last.timestamp() - committed if last else float("nan")
    return Rate("raw django-tasks-db no-op task", done, seconds, count - done)


def outbox_rate(count: int, timeout: float) -> tuple[Rate, Rate]:
    """`count` events of a kind with one registered no-op handler, recorded in one
    transaction (one run and one wake-up task each, as record() writes them); the time from
    its commit until the last run was done, and until the last wake-up task finished.

    The two differ because a wake-up drains a batch of due runs: the runs are done while
    most wake-ups still wait, each to find its run done already. A worker under a steady
    stream of events pays for those too, so the second is the rate it can sustain."""
    import outbox_worker
    from django.db import transaction
    from django.db.models import Max
    from django.utils import timezone
    from django_tasks_db.models import DBTaskResult

    from supportdesk.events import tasks
    from supportdesk.events.models import HandlerRun, RunState, Via
    from supportdesk.events.record import record

    begin = timezone.now()
    with transaction.atomic():
        first = None
        for _ in range(count):
            event = record(
                None, outbox_worker.NOOP_KIND, acting_user=None, via=Via.SYSTEM, version=1
            )
            first = first or event.pk
    committed = time.time()
    say(f"outbox runs: {count} events recorded, the worker runs their no-op handler")
    runs = HandlerRun.objects.filter(handler=outbox_worker.NOOP_HANDLER, event_id__gte=first)

    def progress() -> tuple[int, int]:
        finished = runs.exclude(state__in=[RunState.PENDING, RunState.RUNNING]).count()
        return finished, count

    poll_until(progress, timeout=timeout, label="no-op runs finished")
    last = runs.aggregate(last=Max("finished_at"))["last"]
    done = runs.filter(state=RunState.DONE).count()
    wakeups = DBTaskResult.objects.filter(
        task_path=tasks.run_due.module_path, enqueued_at__gte=begin
    )

    def drained() -> tuple[int, int]:
        return wakeups.filter(finished_at__isnull=False).count(), wakeups.count()

    poll_until(drained, timeout=timeout, label="wake-up tasks finished")
    queue_last = wakeups.aggregate(last=Max("finished_at"))["last"]
    failed = count - done
    return (
        Rate(
            "outbox no-op handler runs, until every run is done",
            done,
            last.timestamp() - committed if last else float("nan"),
            failed,
        ),
        Rate(
            "outbox no-op handler runs, until the queue is empty",
            done,
            queue_last.timestamp() - committed if queue_last else float("nan"),
            failed,
        ),
    )


def warm_up(
    workers: list[subprocess.Popen[bytes]], agent: Any, targets: list[Target], timeout: float
) -> None:
    """A few no-op tasks, then public responses at 5 a second until every worker has run the
    handler of one (at most 20 a worker), then until the queue is empty. A fresh worker's
    first mail loads and compiles its templates, half a second: start-up, not the steady
    state measured here."""
    from supportdesk.events.models import Event, EventKind, HandlerRun, RunState, Via
    from supportdesk.tickets.services import add_response

    raw_rate(20, timeout, label="warm-up tasks")
    names = {f"{socket.gethostname()}:{worker.pid}" for worker in workers}
    event_ids: list[int] = []
    ran: set[str] = set()
    while len(event_ids) < 20 * len(workers) and not names <= ran:
        target = targets[len(event_ids) % len(targets)]
        response = add_response(
            target.ticket, acting_user=agent, via=Via.API, body="Warming up the workers."
        )
        event_ids.append(Event.objects.filter(response=response).values_list("pk", flat=True).get())
        time.sleep(0.2)
        ran = set(
            HandlerRun.objects.filter(
                event_id__in=event_ids,
                event__kind=EventKind.RESPONSE_ADDED,
                state=RunState.DONE,
            ).values_list("leased_by", flat=True)
        )
    wait_idle(timeout, "after the warm-up")
    if not names <= ran:
        say(f"warm-up: {len(names - ran)} worker(s) ran none of {len(event_ids)} responses")
    else:
        say(f"warm-up: {len(event_ids)} responses, every worker ran one")


# ---------------------------------------------------------------- commit -> mail accepted


@dataclass
class Change:
    event_id: int
    committed: float
    expected: list[str]  # Message-IDs (mail) or the stand-in handler's name


@dataclass
class Round:
    workers: int
    mode: str  # "mail" or "stand-in"
    changes: list[Change]
    schedule_seconds: float  # first to last commit
    latencies: list[float] = field(default_factory=list)  # seconds, complete changes only
    each: list[float | None] = field(default_factory=list)  # seconds per change, in order
    missing: int = 0  # changes not complete when the waiting ended
    repeats: int = 0  # mails accepted again with a Message-ID accepted before
    unexpected: int = 0  # mails about these events to nobody expected
    delivered: int = 0  # expected mails (or runs) accepted
    last_accepted: float = 0.0
    exit_codes: list[int | None] = field(default_factory=list)

    def quantile(self, percent: int) -> float:
        if len(self.latencies) < 2:
            return self.latencies[0] if self.latencies else float("nan")
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[percent - 1]

    @property
    def achieved_rate(self) -> float:
        return (len(self.changes) - 1) / self.schedule_seconds if self.schedule_seconds else 0.0

    @property
    def per_second(self) -> float:
        """Expected mails (runs) accepted over first commit -> last accepted."""
        span = self.last_accepted - self.changes[0].committed if self.changes else 0.0
        return self.delivered / span if span > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "workers": self.workers,
            "mode": self.mode,
            "changes": len(self.changes),
            "achieved_changes_per_second": round(self.achieved_rate, 2),
            "delivered": self.delivered,
            "missing_changes": self.missing,
            "repeats": self.repeats,
            "unexpected": self.unexpected,
            "per_second": round(self.per_second, 1),
            "p50_ms": round(self.quantile(50) * 1000, 1) if self.latencies else None,
            "p95_ms": round(self.quantile(95) * 1000, 1) if self.latencies else None,
            "p99_ms": round(self.quantile(99) * 1000, 1) if self.latencies else None,
            "max_ms": round(max(self.latencies) * 1000, 1) if self.latencies else None,
            "worker_exit_codes": self.exit_codes,
            "latency_ms_per_change": [None if x is None else round(x * 1000, 1) for x in self.each],
        }


def make_changes(
    count: int, rate: float, agent: Any, targets: list[Target], *, mail: bool, label: str
) -> tuple[list[Change], float]:
    """`count` public responses by the agent, round the tickets, started at `rate` a second
    on a fixed schedule (a slow one does not push the schedule back); the commit time of each
    is taken when the service has returned."""
    import outbox_worker

    from supportdesk.events.models import Event, Via
    from supportdesk.tickets.services import add_response

    if mail:
        from supportdesk.notify.ids import message_id

    changes: list[Change] = []
    interval = 1.0 / rate
    start = time.monotonic() + 0.1
    last_print = time.monotonic()
    for index in range(count):
        delay = start + index * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        target = targets[index % len(targets)]
        response = add_response(
            target.ticket,
            acting_user=agent,
            via=Via.API,
            body=f"Response {index + 1} of bench round {label}: checked, working on it.",
        )
        committed = time.time()
        event_id = Event.objects.filter(response=response).values_list("pk", flat=True).get()
        expected = (
            [message_id(event_id, address) for address in target.recipients]
            if mail
            else [outbox_worker.STAND_IN_HANDLER]
        )
        changes.append(Change(event_id, committed, expected))
        if time.monotonic() - last_print >= 5:
            say(f"{label}: {index + 1}/{count} changes committed")
            last_print = time.monotonic()
    return changes, changes[-1].committed - changes[0].committed


def collect_mail(round_: Round, sink: Sink, timeout: float) -> None:
    """Wait until every expected Message-ID was accepted (or no progress for `timeout`), then
    work out each change's latency: its last mail's first acceptance - its commit."""
    wanted = {mid for change in round_.changes for mid in change.expected}

    def progress() -> tuple[int, int]:
        sink.read()
        return sum(1 for mid in wanted if mid in sink.accepted), len(wanted)

    poll_until(progress, timeout=timeout, label=f"{round_.workers} worker(s): mails accepted")
    sink.read()
    events = {change.event_id for change in round_.changes}
    last = 0.0
    for change in round_.changes:
        times = [min(sink.accepted[mid]) for mid in change.expected if mid in sink.accepted]
        round_.delivered += len(times)
        if len(times) < len(change.expected):
            round_.missing += 1
            round_.each.append(None)
            continue
        round_.latencies.append(max(times) - change.committed)
        round_.each.append(round_.latencies[-1])
        last = max(last, *times)
    for mid, times in sink.accepted.items():
        match = EVENT_OF_MESSAGE_ID.match(mid)
        if not match or int(match.group(1)) not in events:
            continue
        if mid in wanted:
            round_.repeats += len(times) - 1
        else:
            round_.unexpected += len(times)
    round_.last_accepted = last


def collect_runs(round_: Round, timeout: float) -> None:
    """The stand-in's latency: its run's finished_at - the change's commit."""
    import outbox_worker

    from supportdesk.events.models import HandlerRun, RunState

    ids = [change.event_id for change in round_.changes]
    runs = HandlerRun.objects.filter(handler=outbox_worker.STAND_IN_HANDLER, event_id__in=ids)

    def progress() -> tuple[int, int]:
        return runs.filter(state=RunState.DONE).count(), len(ids)

    poll_until(progress, timeout=timeout, label=f"{round_.workers} worker(s): runs done")
    finished = dict(
        runs.filter(state=RunState.DONE).values_list("event_id", "finished_at").iterator()
    )
    last = 0.0
    for change in round_.changes:
        at = finished.get(change.event_id)
        if at is None:
            round_.missing += 1
            round_.each.append(None)
            continue
        round_.delivered += 1
        round_.latencies.append(at.timestamp() - change.committed)
        round_.each.append(round_.latencies[-1])
        last = max(last, at.timestamp())
    round_.last_accepted = last


# ---------------------------------------------------------------- report


def report(rounds: list[Round], rates: list[Rate], meta: dict[str, Any]) -> str:
    lines: list[str] = []
    if rounds:
        unit = "mails" if rounds[0].mode == "mail" else "runs"
        what = (
            "commit -> last of 3 mails accepted"
            if rounds[0].mode == "mail"
            else "commit -> stand-in no-op run done (no mail handlers installed)"
        )
        lines += [
            f"| {what} | workers | changes | changes/s | {unit} | missing changes "
            f"| repeats | p50 ms | p95 ms | p99 ms | max ms | {unit}/s | p99 < 1 s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|",
        ]
        for r in rounds:
            ok = r.latencies and r.missing == 0 and r.quantile(99) < TARGET_P99_SECONDS
            cells = (
                [f"{r.quantile(p) * 1000:.0f}" for p in (50, 95, 99)]
                + [f"{max(r.latencies) * 1000:.0f}"]
                if r.latencies
                else ["-"] * 4
            )
            lines.append(
                f"| {r.mode} | {r.workers} | {len(r.changes)} | {r.achieved_rate:.1f} "
                f"| {r.delivered} | {r.missing} | {r.repeats} | {' | '.join(cells)} "
                f"| {r.per_second:.1f} | {'yes' if ok else '**no**'} |"
            )
        lines.append("")
    if rates:
        raw = rates[0]
        lines += [
            "| no-op work, 1 worker, same run | count | failed | seconds | per second "
            "| share of raw | target met |",
            "|---|---:|---:|---:|---:|---:|:---:|",
        ]
        for rate in rates:
            share = rate.per_second / raw.per_second if raw.per_second else 0.0
            ok = (
                ""
                if rate is raw
                else ("yes" if share >= TARGET_SHARE_OF_RAW and not rate.failed else "**no**")
            )
            lines.append(
                f"| {rate.name} | {rate.count} | {rate.failed} | {rate.seconds:.2f} "
                f"| {rate.per_second:.0f} | {share:.0%} | {ok} |"
            )
        lines.append("")
    lines.append(
        f"Machine: {meta['cpus']} CPUs, {meta['platform']}, Python {meta['python']}, "
        f"SQLite {meta['sqlite']}, Django {meta['django']}; load average (1 min) "
        f"{meta['load_average_1min'][0]} before, {meta['load_average_1min'][1]} after."
    )
    return "\n".join(lines)


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


# ---------------------------------------------------------------- main


def main() -> int:
    args = parse_args()
    if args.sink:
        return run_sink(int(args.sink[0]), Path(args.sink[1]))
    try:
        import aiosmtpd  # noqa: F401
    except ImportError:
        raise SystemExit(
            "bench: aiosmtpd is missing; install the test tools first (make dev)"
        ) from None
    worker_counts = [int(n) for n in args.workers.split(",") if n.strip()]
    with bench.scratch_home("outbox", args.home) as home:
        return run(args, home, worker_counts)


def run(args: argparse.Namespace, home: Path, worker_counts: list[int]) -> int:
    sink = Sink.start(home)
    say(f"SMTP sink on 127.0.0.1:{sink.port}, data directory {home}")
    env = bench.server_env(home)
    env["SUPPORTDESK_EMAIL_URL"] = f"smtp://127.0.0.1:{sink.port}"
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "bench"), env.get("PYTHONPATH", "")) if p
    )
    rounds: list[Round] = []
    rates: list[Rate] = []
    try:
        subprocess.run(
            [*bench.supportdesk_command(), "migrate"],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        setup_django(env)
        handlers = mail_handlers()
        mail = bool(handlers)
        import outbox_worker

        outbox_worker.register(stand_in_mail=not mail)
        if mail:
            say(f"mail handlers for a response: {', '.join(handlers)}")
        else:
            say(
                "no mail handler is registered for a response: measuring commit -> run done "
                "of a stand-in no-op handler instead of commit -> mail accepted"
            )
        started = time.monotonic()
        agent, targets = seed(args.orgs, args.tickets)
        say(
            f"seeded {args.orgs} organizations, {args.orgs * CUSTOMERS_PER_ORG} customers, "
            f"{len(targets)} tickets in {time.monotonic() - started:.1f} s"
        )
        load_before = load_average()
        if args.tasks > 0 and 1 not in worker_counts:
            say("no round with 1 worker: the rate of no-op work is not measured")
        for count in worker_counts:
            label = f"{count}w"
            workers = start_workers(count, env, home, stand_in=not mail, label=label)
            say(f"{count} worker(s) started")
            try:
                wait_idle(args.timeout, "before measuring")  # the seed's mail, the last round's
                warm_up(workers, agent, targets, args.timeout)
                if args.tasks > 0 and count == 1 and not rates:
                    rates.append(raw_rate(args.tasks, args.timeout))
                    say(f"raw: {rates[-1].per_second:.0f} tasks/s")
                    wait_idle(args.timeout, "after the raw tasks")
                    rates.extend(outbox_rate(args.tasks, args.timeout))
                    say(
                        f"outbox: {rates[-2].per_second:.0f} runs/s until every run is done, "
                        f"{rates[-1].per_second:.0f} until the queue is empty"
                    )
                    wait_idle(args.timeout, "after the outbox runs")
                say(f"{count} worker(s): {args.changes} changes at {args.rate:g}/s")
                changes, span = make_changes(
                    args.changes, args.rate, agent, targets, mail=mail, label=label
                )
                round_ = Round(count, "mail" if mail else "stand-in", changes, span)
                if mail:
                    collect_mail(round_, sink, args.timeout)
                else:
                    collect_runs(round_, args.timeout)
            finally:
                codes = stop_workers(workers)
            round_.exit_codes = codes
            rounds.append(round_)
            say(
                f"{count} worker(s): p99 {round_.quantile(99) * 1000:.0f} ms, "
                f"{round_.missing} changes missing, workers exited {codes}"
            )
        load_after = load_average()
    finally:
        sink.stop()
    import django

    meta = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "django": django.get_version(),
        "load_average_1min": [load_before, load_after],
        "changes": args.changes,
        "rate": args.rate,
        "tasks": args.tasks,
        "tickets": args.tickets,
        "orgs": args.orgs,
        "mode": rounds[0].mode if rounds else None,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                **meta,
                "rounds": [r.as_dict() for r in rounds],
                "rates": [r.as_dict() for r in rates],
            },
            indent=2,
        )
    )
    print()
    print(report(rounds, rates, meta))
    print(f"\nbench: results in {RESULTS}")
    failed = any(r.missing or not r.latencies for r in rounds) or any(r.failed for r in rates)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
