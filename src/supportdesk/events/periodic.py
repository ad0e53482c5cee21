"""Periodic jobs: housekeeping that runs on the workers' sweeper, once per interval in all.

Every worker's sweeper calls `run_due_jobs()` on each tick. A job is due when its Schedule
row's `next_run_at` has passed; a worker claims it with one conditional UPDATE that moves
`next_run_at` an interval ahead, so of several workers exactly one runs it, and a worker
that dies mid-job costs one interval, not a lost job. A job that raises is logged and runs
again at its next interval: jobs must be safe to repeat (they delete or change what is
still old, so a second run finds less to do).

Jobs run in the sweeper thread, one after another: keep each short (the pruning below
deletes in chunks and stops after a bounded number of them; the rest goes next time).
Register a job with `@every(seconds, name="...")` on a function without arguments; a
domain app registers its own in its AppConfig.ready(), as handlers are.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import import_module

from django.conf import settings
from django.db.models import Model, QuerySet
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from supportdesk.events.models import HandlerRun, RunState, Schedule, WorkerHeartbeat

logger = logging.getLogger(__name__)

Job = Callable[[], object]

HOUR = 3600
RUNS_KEPT = timedelta(days=30)  # done runs: long enough to answer "was this mail sent?"
TASK_RESULTS_KEPT = timedelta(days=7)  # django-tasks-db's finished wake-ups
HEARTBEATS_KEPT = timedelta(days=1)  # workers gone this long are not coming back
DELETE_CHUNK = 1000  # rows per DELETE: short write transactions, so writers never queue long
DELETE_MAX_CHUNKS = 100  # per run; a larger backlog shrinks hour by hour


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    seconds: float
    function: Job


_jobs: dict[str, PeriodicJob] = {}


def every(seconds: float, *, name: str) -> Callable[[Job], Job]:
    """Run the decorated function about every `seconds`, once across all workers.

    `name` keys its Schedule row: keep it when renaming the function."""
    if seconds <= 0:
        raise ValueError("A periodic job needs a positive interval.")

    def decorate(function: Job) -> Job:
        existing = _jobs.get(name)
        if existing is not None and existing.function is not function:
            raise ValueError(f"Two periodic jobs are named {name!r}.")
        _jobs[name] = PeriodicJob(name, seconds, function)
        return function

    return decorate


def jobs() -> list[PeriodicJob]:
    return list(_jobs.values())


def unregister(name: str) -> None:
    """For tests that register a job of their own."""
    _jobs.pop(name, None)


def days_from_setting(setting: str, function: Callable[..., int]) -> Job:
    """A job that calls `function(older_than=N days)` with N read from the named setting at
    every run, so a changed setting needs no re-registration; 0 (or less) turns it off."""

    def job() -> int:
        days = int(getattr(settings, setting))
        if days <= 0:
            return 0
        return function(older_than=timedelta(days=days))

    job.__name__ = getattr(function, "__name__", "job")
    return job


def run_due_jobs(now: datetime | None = None) -> list[str]:
    """Claim and run every due job; returns the names of the jobs this worker ran.

    A job seen for the first time is due at once (its Schedule row is created now)."""
    if not _jobs:
        return []
    now = now or timezone.now()
    next_runs = dict(Schedule.objects.filter(name__in=_jobs).values_list("name", "next_run_at"))
    missing = [name for name in _jobs if name not in next_runs]
    if missing:
        Schedule.objects.bulk_create(
            [Schedule(name=name, next_run_at=now) for name in missing], ignore_conflicts=True
        )
        next_runs.update(dict.fromkeys(missing, now))
    ran = []
    for job in list(_jobs.values()):
        if next_runs[job.name] <= now and claim(job, now):
            _run(job)
            ran.append(job.name)
    return ran


def claim(job: PeriodicJob, now: datetime) -> bool:
    """Move the job's next run an interval ahead if it is due: one UPDATE, so of several
    workers claiming at once exactly one changes the row and runs the job."""
    return bool(
        Schedule.objects.filter(name=job.name, next_run_at__lte=now).update(
            next_run_at=now + timedelta(seconds=job.seconds), last_run_at=now
        )
    )


def _run(job: PeriodicJob) -> None:
    try:
        result = job.function()
    except Exception:  # logged; the claim already set the next run, which is the retry
        logger.exception("periodic job %s failed; it runs again in %s s", job.name, job.seconds)
    else:
        if result:
            logger.info("periodic job %s: %s", job.name, result)


def delete_in_chunks(queryset: QuerySet[Model], *, max_chunks: int = DELETE_MAX_CHUNKS) -> int:
    """Delete what the queryset matches, DELETE_CHUNK rows per statement; returns how many
    rows of its model went. Stops after max_chunks, leaving the rest for the next run."""
    model = queryset.model
    deleted = 0
    for _ in range(max_chunks):
        ids = list(queryset.order_by().values_list("pk", flat=True)[:DELETE_CHUNK])
        if not ids:
            break
        _total, by_model = model._base_manager.filter(pk__in=ids).delete()
        deleted += by_model.get(model._meta.label, 0)
    return deleted


@every(HOUR, name="clear_expired_sessions")
def clear_expired_sessions() -> None:
    """What `manage.py clearsessions` does; engines that keep no server-side sessions
    (signed cookies) have nothing to clear."""
    engine = import_module(settings.SESSION_ENGINE)
    try:
        engine.SessionStore.clear_expired()
    except NotImplementedError:
        return


@every(HOUR, name="prune_done_runs")
def prune_done_runs() -> int:
    """Done runs older than RUNS_KEPT. Failed and discarded ones stay for the admin."""
    cutoff = timezone.now() - RUNS_KEPT
    return delete_in_chunks(HandlerRun.objects.filter(state=RunState.DONE, finished_at__lt=cutoff))


@every(HOUR, name="prune_finished_tasks")
def prune_finished_tasks() -> int:
    """django-tasks-db keeps every finished task row; ours are only wake-ups, whose outcome
    lives on the HandlerRun, so a week of them is plenty for debugging."""
    cutoff = timezone.now() - TASK_RESULTS_KEPT
    return delete_in_chunks(DBTaskResult.objects.finished().filter(finished_at__lt=cutoff))


@every(HOUR, name="prune_heartbeats")
def prune_heartbeats() -> int:
    cutoff = timezone.now() - HEARTBEATS_KEPT
    return delete_in_chunks(WorkerHeartbeat.objects.filter(seen_at__lt=cutoff))
