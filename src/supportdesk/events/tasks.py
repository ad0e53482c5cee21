"""Running the outbox: claim a run, call its handler, record the outcome, retry with backoff.

django-tasks-db delivers the wake-ups (`run_due`) and runs them in `supportdesk worker`; it
neither retries a task that raised nor recovers one whose worker died. So the truth is the
HandlerRun row: a task only says "look at these runs", a run is claimed with a conditional
UPDATE that hands it to exactly one worker for a lease, and `sweep()` (every few seconds in
every worker) wakes up runs whose lease ran out, whose retry is due, or whose wake-up was
lost. Delivery is at least once: a worker killed after its handler's effect and before the
run is marked done leaves the run to be claimed again when its lease expires.
"""

from __future__ import annotations

import logging
import os
import random
import socket
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from functools import cache
from itertools import batched, groupby
from operator import attrgetter

from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.tasks import TaskResultStatus, task
from django.utils import timezone
from django_tasks_db.models import DBTaskResult, get_date_max

from supportdesk import rows
from supportdesk.errors import DeliveryError
from supportdesk.events import registry
from supportdesk.events.models import Event, HandlerRun, RunState

logger = logging.getLogger(__name__)

BATCH = 50  # runs one wake-up may drain, so a backlog needs few tasks
CLAIM_MAX = 16  # runs claimed in one statement: a killed worker leaves at most this many
SWEEP_LIMIT = 1000
BACKOFF_FIRST_SECONDS = 2.0
BACKOFF_MAX_SECONDS = 3600.0
ERROR_MAX = 2000
WORKER_ID_MAX = 64  # HandlerRun.leased_by and WorkerHeartbeat.worker_id


def worker_id() -> str:
    """This process's name on the runs it leases (a forked worker gets its own), as
    `host:pid`, the host cut so that it fits the column whole."""
    pid = str(os.getpid())
    return f"{_host(len(pid))}:{pid}"


def _host(pid_digits: int) -> str:
    return socket.gethostname()[: WORKER_ID_MAX - 1 - pid_digits]


@task()
def run_due(run_ids: list[int]) -> int:
    """Run these runs if they are still due, then drain other due runs, up to BATCH; after
    a full batch, leave a wake-up for the rest (changes may not have left one, see wake)."""
    with registry.runs_scope():
        ran = _execute_in_chunks(run_ids)
        while ran < BATCH:
            more = _execute_in_chunks(due_run_ids(limit=BATCH - ran))
            if more == 0:
                return ran
            ran += more
    if due_run_ids(limit=1):
        run_due.enqueue([])
    return ran


def _claimable(now: datetime) -> Q:
    return Q(state=RunState.PENDING, due_at__lte=now) | Q(
        state=RunState.RUNNING, lease_until__lt=now
    )


def due_run_ids(*, limit: int, now: datetime | None = None) -> list[int]:
    """The runs to take next, oldest first; the bulk handlers' after all others (see
    registry.register): under a backlog of stored mail the acknowledgements came out only
    after the last message was processed, 20 s after the last ticket in a run of 10,000
    (bench/README.md, "Mail in"), and the workers' CPU idled meanwhile, waiting for the
    write lock, where sending them fills it."""
    now = now or timezone.now()
    due = HandlerRun.objects.filter(_claimable(now)).order_by("due_at", "id")
    bulk = registry.bulk_handlers()
    if not bulk:
        return list(due.values_list("pk", flat=True)[:limit])
    found = list(due.exclude(handler__in=bulk).values_list("pk", flat=True)[:limit])
    if len(found) < limit:
        later = due.filter(handler__in=bulk).values_list("pk", flat=True)[: limit - len(found)]
        found += list(later)
    return found


def claim(run_id: int) -> HandlerRun | None:
    """Lease the run to this worker if it is due or its lease expired (see claim_many)."""
    claimed = claim_many([run_id])
    return claimed[0] if claimed else None


def claim_many(run_ids: Sequence[int]) -> list[HandlerRun]:
    """Lease to this worker those of the runs that are due or whose lease expired, in the
    order given, each with its event; one UPDATE, so of several workers exactly one gets
    each run. `attempts` counts claims and fences a failure's outcome; the lease's end,
    the same for the runs claimed together, fences their success (see _settle_done).

    Written once per count (supportdesk/rows.py), and one UPDATE for several runs: each
    write waits its turn at SQLite's one write lock, which the mail gateway's commits
    wait for too (bench/README.md, "Mail in")."""
    if not run_ids:
        return []
    now = timezone.now()
    lease = _prepared_time(now + timedelta(seconds=settings.TASK_LEASE_SECONDS))
    due, claimed, pending = _prepared_time(now), RunState.RUNNING, RunState.PENDING
    found = rows.fetch_all(
        _claim_sql(len(run_ids)),
        [claimed, lease, worker_id(), *run_ids, pending, due, claimed, due],
    )
    runs = {run.pk: run for run in (rows.build(HandlerRun, row) for row in found)}
    if not runs:
        return []
    events = rows.fetch_all(_events_sql(len(runs)), [run.event_id for run in runs.values()])
    by_id = {event.pk: event for event in (rows.build(Event, row) for row in events)}
    for run in runs.values():
        run.event = by_id[run.event_id]
    return [runs[run_id] for run_id in dict.fromkeys(run_ids) if run_id in runs]


def _prepared_time(value: datetime) -> object:
    return HandlerRun._meta.get_field("due_at").get_db_prep_value(value, connection)


@cache
def _claim_sql(count: int) -> str:
    table = rows.table(HandlerRun)
    returning = rows.columns(HandlerRun, table)
    marks = ", ".join(["%s"] * count)
    return (
        f"UPDATE {table} SET state = %s, lease_until = %s, leased_by = %s,"  # noqa: S608
        f" attempts = attempts + 1 WHERE id IN ({marks})"
        " AND ((state = %s AND due_at <= %s) OR (state = %s AND lease_until < %s))"
        f" RETURNING {returning}"
    )


@cache
def _events_sql(count: int) -> str:
    table = rows.table(Event)
    marks = ", ".join(["%s"] * count)
    return f"SELECT {rows.columns(Event, table)} FROM {table} WHERE id IN ({marks})"  # noqa: S608


def execute(run_id: int) -> int:
    """Claim and run one run; 1 if this worker ran it, 0 if it was not due or not ours."""
    return execute_many([run_id])


def _execute_in_chunks(run_ids: Sequence[int]) -> int:
    return sum(execute_many(chunk) for chunk in _chunks(run_ids, CLAIM_MAX))


def execute_many(run_ids: Sequence[int]) -> int:
    """Claim these runs together and run each that this worker got; how many it ran.

    A failure is written at once; the successes together, after the last: a worker killed
    in between leaves them to run again (at least once, as a kill anywhere does), one write
    instead of one each."""
    claimed = claim_many(run_ids)
    done: list[HandlerRun] = []
    for name, group in groupby(claimed, key=attrgetter("handler")):
        runs = list(group)
        batch = registry.batch_handler(name)
        failures = _run_batch(batch, runs) if batch is not None and len(runs) > 1 else None
        if failures is None:
            done += [run for run in runs if _run_handler(run)]  # in order, one at a time
            continue
        for run in runs:
            error = failures.get(run.event_id)
            if error is None:
                done.append(run)
            else:
                _record_failure(run, error)
    _settle_done(done)
    return len(claimed)


def _run_batch(
    batch: registry.BatchHandler, runs: list[HandlerRun]
) -> Mapping[int, BaseException] | None:
    """The runs' events through the handler's batch function: the failures it returns, by
    event; None when it raised, and each run is then run alone, so that a failure is written
    on the run it belongs to."""
    try:
        return batch([run.event for run in runs]) or {}
    except Exception:
        logger.exception("batch handler %s failed; running its %d runs one by one",
                         runs[0].handler, len(runs))  # fmt: skip
        return None


def _run_handler(run: HandlerRun) -> bool:
    """Call the run's handler; False, with the failure written, when it raised."""
    function = registry.handler(run.handler)
    try:
        if function is None:
            raise DeliveryError(f"No handler is named {run.handler!r}.", permanent=True)
        function(run.event)
    except Exception as error:  # noqa: BLE001  (written on the run, retried or failed)
        _record_failure(run, error)
        return False
    return True


def _record_failure(run: HandlerRun, error: BaseException) -> None:
    """A DeliveryError as it asks (retry, after a wait, or give up); anything else is a bug
    or an unforeseen failure: retried, visibly, then failed."""
    if isinstance(error, DeliveryError):
        _failed(run, error.message, permanent=error.permanent, retry_after=error.retry_after)
        return
    logger.error("handler %s failed on event %s", run.handler, run.event_id, exc_info=error)
    _failed(run, f"{type(error).__name__}: {error}", permanent=False, retry_after=None)


def _settle_done(runs: Sequence[HandlerRun]) -> int:
    """Mark the runs done, those still held by the claim that ran them (same worker, same
    lease): a run whose lease ran out and was taken over keeps its successor's outcome."""
    if not runs:
        return 0
    finished = _prepared_time(timezone.now())
    fence = [RunState.RUNNING, runs[0].leased_by]
    params: list[object] = [RunState.DONE, finished, *fence]
    for run in runs:
        assert run.lease_until is not None  # noqa: S101  (claimed runs are leased)
        params += [run.pk, _prepared_time(run.lease_until)]
    return rows.execute(_settle_done_sql(len(runs)), params)


@cache
def _settle_done_sql(count: int) -> str:
    pairs = " OR ".join(["(id = %s AND lease_until = %s)"] * count)
    return (
        f"UPDATE {rows.table(HandlerRun)} SET state = %s, lease_until = NULL,"  # noqa: S608
        f" last_error = '', finished_at = %s WHERE state = %s AND leased_by = %s AND ({pairs})"
    )


def _settle(run: HandlerRun, **fields: object) -> bool:
    """Write the outcome only while the run is still this claim's: a worker whose lease ran
    out and was taken over must not overwrite its successor's result."""
    claimed = {"state": run.state, "leased_by": run.leased_by, "attempts": run.attempts}
    for name, value in {"lease_until": None, **fields}.items():
        setattr(run, name, value)
    return bool(rows.update(run, ["lease_until", *fields], where=claimed))


def backoff(attempts: int, retry_after: float | None = None) -> float:
    """Seconds before the next try: exponential from 2 s, capped at an hour, with jitter
    (50 to 100 %) so that runs failed by one outage do not all come back at once."""
    delay = min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2.0 ** max(0, attempts - 1))
    delay *= 0.5 + random.random() / 2  # noqa: S311  (jitter, not a secret)
    return max(delay, retry_after or 0.0)


def _failed(run: HandlerRun, error: str, *, permanent: bool, retry_after: float | None) -> None:
    now = timezone.now()
    if permanent or run.attempts >= settings.TASK_MAX_ATTEMPTS:
        _settle(run, state=RunState.FAILED, last_error=error[:ERROR_MAX], finished_at=now)
        return
    due = now + timedelta(seconds=backoff(run.attempts, retry_after))
    if _settle(run, state=RunState.PENDING, last_error=error[:ERROR_MAX], due_at=due):
        run_due.using(run_after=due).enqueue([run.pk])


def wake(run_ids: Sequence[int]) -> None:
    """Enqueue a wake-up for these runs; in the caller's transaction when there is one (the
    task row then commits or rolls back with the runs, on the same database).

    On SQLite a wake-up still waiting in the queue will do: the change's transaction holds
    the one write lock, so no worker can take that task before the change commits, and the
    worker that takes it drains every due run, these included. Under a stream of changes
    this spares a task per change (bench/README.md, "Outbox"). PostgreSQL lets a worker take
    the task meanwhile, so there every change leaves its own.
    """
    if not run_ids:
        return
    if connection.vendor == "sqlite" and _wake_up_waiting():
        return
    run_due.enqueue(list(run_ids))


def _wake_up_waiting() -> bool:
    """The query of DBTaskResult.objects.ready() for run_due, written once (supportdesk/
    rows.py: every change asks it, and the ORM's compilation cost more than the query)."""
    field = DBTaskResult._meta.get_field("run_after")
    prepared = [
        field.get_db_prep_value(value, connection) for value in (get_date_max(), timezone.now())
    ]
    row = rows.fetch_one(_waiting_sql(), [TaskResultStatus.READY, run_due.module_path, *prepared])
    return row is not None


@cache
def _waiting_sql() -> str:
    table = rows.table(DBTaskResult)  # names from the model; values are always parameters
    return (
        f"SELECT 1 FROM {table} WHERE status = %s AND task_path = %s"  # noqa: S608
        " AND (run_after = %s OR run_after <= %s) LIMIT 1"
    )


def sweep(now: datetime | None = None) -> int:
    """Wake up runs nobody is on: leases that expired (a killed worker), retries whose time
    came, runs whose wake-up was lost. Safe in several workers at once: the claim decides.
    Returns how many runs it woke."""
    now = now or timezone.now()
    _end_leases_of_dead_workers(now)
    stranded_query = Q(state=RunState.RUNNING, lease_until__lt=now)
    if not DBTaskResult.objects.ready().exists():
        # Nobody is draining the queue: a run still waiting after a sweep interval lost its
        # wake-up. With wake-ups queued, the workers will reach it (each drains a batch).
        grace = now - timedelta(seconds=settings.TASK_SWEEP_SECONDS)
        stranded_query |= Q(state=RunState.PENDING, due_at__lte=grace)
    stranded = (
        HandlerRun.objects.filter(stranded_query)
        .order_by("due_at", "id")
        .values_list("pk", flat=True)[:SWEEP_LIMIT]
    )
    ids = list(stranded)
    for chunk in _chunks(ids, BATCH):
        run_due.enqueue(chunk)
    return len(ids)


def _end_leases_of_dead_workers(now: datetime) -> int:
    """End at once the leases held by a worker of this machine whose process is gone (killed,
    crashed), instead of when they run out (SUPPORTDESK_TASK_LEASE_SECONDS, 5 minutes by
    default): a restarted worker's first sweep takes its predecessor's runs over. A live
    process, or one on another machine, keeps its lease; a reused pid only delays this to
    the lease's end. Returns how many leases it ended."""
    held = HandlerRun.objects.filter(state=RunState.RUNNING, lease_until__gte=now)
    dead = {
        leased_by
        for leased_by in held.values_list("leased_by", flat=True).distinct()
        if _is_dead_here(leased_by)
    }
    if not dead:
        return 0
    return held.filter(leased_by__in=dead).update(lease_until=now - timedelta(microseconds=1))


def _is_dead_here(leased_by: str) -> bool:
    name, _, pid = leased_by.rpartition(":")
    if not pid.isdigit() or name != _host(len(pid)) or int(pid) in (0, os.getpid()):
        return False
    try:
        os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except OSError:  # it exists, as another user's
        return False
    return False


def _chunks(ids: Iterable[int], size: int) -> list[list[int]]:
    return [list(chunk) for chunk in batched(ids, size)]


def retry(run: HandlerRun) -> HandlerRun:
    """An admin's retry of a failed or discarded run: due now, its attempts counted afresh."""
    HandlerRun.objects.filter(pk=run.pk, state__in=[RunState.FAILED, RunState.DISCARDED]).update(
        state=RunState.PENDING, attempts=0, due_at=timezone.now(), finished_at=None
    )
    run.refresh_from_db()
    if run.state == RunState.PENDING:
        wake([run.pk])
    return run


def discard(run: HandlerRun) -> HandlerRun:
    """An admin gives up on a failed or waiting run: it is kept, marked, and never run."""
    HandlerRun.objects.filter(pk=run.pk, state__in=[RunState.FAILED, RunState.PENDING]).update(
        state=RunState.DISCARDED, finished_at=timezone.now(), lease_until=None
    )
    run.refresh_from_db()
    return run
