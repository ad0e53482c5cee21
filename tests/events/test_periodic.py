"""Periodic jobs on the sweeper: claimed once across workers, auto-close, pruning."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import pytest
import time_machine
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.db import connection
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from supportdesk.events import periodic, registry, tasks, worker
from supportdesk.events.models import (
    Event,
    EventKind,
    HandlerRun,
    RunState,
    Schedule,
    Via,
    WorkerHeartbeat,
)
from supportdesk.tickets import services
from supportdesk.tickets.models import Status, Ticket
from tests.events.runs import make_run
from tests.factories import make_ticket

CALLS: list[str] = []


@pytest.fixture
def only_jobs(monkeypatch):
    """An empty job registry, so that a test runs only the jobs it registers."""
    monkeypatch.setattr(periodic, "_jobs", {})
    CALLS.clear()


@pytest.fixture
def counting_job(only_jobs):
    @periodic.every(60, name="count")
    def count() -> None:
        CALLS.append(threading.current_thread().name)

    return count


@pytest.fixture
def probe_on_status_changed():
    """A handler on status changes, so that a closed ticket's outbox run can be seen."""

    def probe(event: Event) -> None:
        return None

    registry.register(EventKind.STATUS_CHANGED, name="probe_on_status_changed")(probe)
    yield "probe_on_status_changed"
    registry.unregister("probe_on_status_changed")


def test_a_new_job_is_due_at_once_then_once_per_interval(counting_job, db):
    now = timezone.now()
    assert periodic.run_due_jobs(now) == ["count"]
    assert periodic.run_due_jobs(now + timedelta(seconds=59)) == []
    assert periodic.run_due_jobs(now + timedelta(seconds=60)) == ["count"]
    schedule = Schedule.objects.get(name="count")
    assert schedule.last_run_at == now + timedelta(seconds=60)
    assert schedule.next_run_at == now + timedelta(seconds=120)
    assert len(CALLS) == 2


def test_two_workers_ticking_at_the_same_moment_run_a_due_job_once(counting_job, db):
    now = timezone.now()
    first = periodic.run_due_jobs(now)
    second = periodic.run_due_jobs(now)  # another worker, same tick, same clock
    assert (first, second, len(CALLS)) == (["count"], [], 1)


def test_of_two_workers_that_both_saw_the_job_due_only_one_claims_it(counting_job, db):
    now = timezone.now()
    Schedule.objects.create(name="count", next_run_at=now - timedelta(seconds=1))
    (job,) = periodic.jobs()
    assert [periodic.claim(job, now), periodic.claim(job, now)] == [True, False]


def tick_together(workers: int, monkeypatch) -> list[BaseException]:
    """Each thread is a worker with its own connection. All read the schedule, and only when
    every one of them has seen the job due do they claim it, at once."""
    at_claim = threading.Barrier(workers)
    claim = periodic.claim

    def claim_together(job, now):
        at_claim.wait(timeout=10)
        return claim(job, now)

    monkeypatch.setattr(periodic, "claim", claim_together)
    errors: list[BaseException] = []

    def tick() -> None:
        try:
            periodic.run_due_jobs()
        except Exception as error:  # noqa: BLE001  (reported to the test, which fails on it)
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=tick, name=f"worker-{i}") for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return errors


@pytest.mark.django_db(transaction=True)
def test_workers_racing_in_threads_run_each_due_job_exactly_once(counting_job, monkeypatch):
    rounds = 5
    Schedule.objects.create(name="count", next_run_at=timezone.now())
    for _ in range(rounds):
        Schedule.objects.update(next_run_at=timezone.now() - timedelta(seconds=1))
        assert tick_together(4, monkeypatch) == []
    assert len(CALLS) == rounds


def test_a_failing_job_is_logged_and_runs_again_at_its_next_interval(only_jobs, db, caplog):
    outcomes = [RuntimeError("database busy"), None]

    @periodic.every(30, name="flaky")
    def flaky() -> None:
        CALLS.append("flaky")
        error = outcomes.pop(0)
        if error is not None:
            raise error

    now = timezone.now()
    with caplog.at_level(logging.ERROR, logger="supportdesk.events.periodic"):
        assert periodic.run_due_jobs(now) == ["flaky"]
    assert "periodic job flaky failed" in caplog.text
    assert periodic.run_due_jobs(now + timedelta(seconds=10)) == []  # not before its interval
    assert periodic.run_due_jobs(now + timedelta(seconds=30)) == ["flaky"]
    assert CALLS == ["flaky", "flaky"]


# The tick ends with close_old_connections(), which drops a connection left inside a
# transaction: these tests run on the transactional database, as a worker does.
@pytest.mark.django_db(transaction=True)
def test_the_sweeper_tick_beats_sweeps_and_runs_due_jobs(counting_job):
    started = timezone.now()
    worker.sweep_once(started)
    beat = WorkerHeartbeat.objects.get()
    assert (beat.worker_id, beat.started_at) == (tasks.worker_id(), started)
    assert len(CALLS) == 1
    worker.sweep_once(started)
    assert WorkerHeartbeat.objects.count() == 1
    assert WorkerHeartbeat.objects.get().seen_at > beat.seen_at
    assert len(CALLS) == 1  # its interval has not passed


@pytest.mark.django_db(transaction=True)
def test_a_failing_step_does_not_stop_the_others(counting_job, monkeypatch, caplog):
    def broken_sweep() -> int:
        raise RuntimeError("locked")

    monkeypatch.setattr(worker, "sweep", broken_sweep)
    with caplog.at_level(logging.ERROR, logger="supportdesk.events.worker"):
        worker.sweep_once(timezone.now())
    assert "the sweep failed" in caplog.text
    assert WorkerHeartbeat.objects.exists()
    assert len(CALLS) == 1


def test_a_restarted_worker_with_the_same_name_rewrites_its_heartbeat(db):
    first_life = timezone.now() - timedelta(hours=2)
    worker.beat(first_life, now=first_life)
    restarted = timezone.now()
    worker.beat(restarted, now=restarted)
    beat = WorkerHeartbeat.objects.get()
    assert (beat.started_at, beat.seen_at) == (restarted, restarted)


# Auto-close


def days_ago(days: float):
    """The clock moved back, so that what happens inside is that old."""
    return time_machine.travel(timezone.now() - timedelta(days=days), tick=False)


def resolve(ticket, agent, *, days: float):
    with days_ago(days):
        return services.update_ticket(
            ticket, acting_user=agent, via=Via.WEB, changes={"status": Status.RESOLVED}
        )


def test_auto_close_closes_only_tickets_resolved_longer_ago_than_the_limit(
    alice, bob, probe_on_status_changed
):
    old = resolve(make_ticket(requester=bob, title="old"), alice, days=8)
    recent = resolve(make_ticket(requester=bob, title="recent"), alice, days=6)
    # Resolved long ago, re-opened, resolved again two days ago: counts from the last time.
    again = resolve(make_ticket(requester=bob, title="again"), alice, days=20)
    with days_ago(19):
        services.reopen_ticket(again, acting_user=bob, via=Via.WEB)
    again = resolve(again, alice, days=2)
    # Resolved eight days ago, thanked for yesterday: counts from the resolution.
    answered = resolve(make_ticket(requester=bob, title="answered"), alice, days=8)
    with days_ago(1):
        services.add_response(answered, acting_user=bob, via=Via.WEB, body="Thanks!")
    open_old = make_ticket(requester=bob, title="open")
    pending = make_ticket(requester=bob, title="pending", status=Status.PENDING)
    tickets = [old, recent, again, answered, open_old, pending]

    assert services.close_resolved_tickets(older_than=timedelta(days=7)) == 2

    for ticket in tickets:
        ticket.refresh_from_db()
    assert {t.title: t.status for t in tickets} == {
        "old": Status.CLOSED,
        "recent": Status.RESOLVED,
        "again": Status.RESOLVED,
        "answered": Status.CLOSED,
        "open": Status.OPEN,
        "pending": Status.PENDING,
    }
    event = old.events.latest("id")
    assert (event.kind, event.actor, event.via) == (EventKind.STATUS_CHANGED, None, Via.SYSTEM)
    assert event.changes == {"status": ["Resolved", "Closed"]}
    assert event.version == old.version
    assert old.closed_at is not None
    run = HandlerRun.objects.get(event=event, handler=probe_on_status_changed)
    assert run.state == RunState.PENDING
    assert tasks.execute(run.pk) == 1  # its side effects go out like any other change's
    assert services.close_resolved_tickets(older_than=timedelta(days=7)) == 0  # nothing left


def test_auto_close_counts_from_the_last_update_when_no_event_resolved_it(bob):
    imported, later = make_ticket(requester=bob), make_ticket(requester=bob)
    Ticket.objects.filter(pk=imported.pk).update(
        status=Status.RESOLVED, updated_at=timezone.now() - timedelta(days=9)
    )
    Ticket.objects.filter(pk=later.pk).update(status=Status.RESOLVED)
    assert services.close_resolved_tickets(older_than=timedelta(days=7)) == 1
    imported.refresh_from_db()
    assert imported.status == Status.CLOSED


@pytest.mark.parametrize(("days", "closes"), [(7, True), (10, False), (0, False)])
def test_the_auto_close_job_follows_the_setting_and_zero_turns_it_off(
    only_jobs, alice, bob, settings, days, closes
):
    settings.AUTO_CLOSE_RESOLVED_DAYS = days
    ticket = resolve(make_ticket(requester=bob), alice, days=8)
    periodic.every(3600, name="close_resolved_tickets")(
        periodic.days_from_setting("AUTO_CLOSE_RESOLVED_DAYS", services.close_resolved_tickets)
    )
    assert periodic.run_due_jobs() == ["close_resolved_tickets"]
    ticket.refresh_from_db()
    assert (ticket.status == Status.CLOSED) is closes


# Pruning


def ago(**delta):
    return timezone.now() - timedelta(**delta)


def test_done_runs_older_than_thirty_days_are_pruned_and_nothing_else(db):
    old_done = make_run(handler="a", state=RunState.DONE, finished_at=ago(days=31))
    recent_done = make_run(handler="b", state=RunState.DONE, finished_at=ago(days=29))
    old_failed = make_run(handler="c", state=RunState.FAILED, finished_at=ago(days=90))
    old_discarded = make_run(handler="d", state=RunState.DISCARDED, finished_at=ago(days=90))
    waiting = make_run(handler="e", due_at=ago(days=90))
    assert periodic.prune_done_runs() == 1
    assert set(HandlerRun.objects.values_list("pk", flat=True)) == {
        recent_done.pk,
        old_failed.pk,
        old_discarded.pk,
        waiting.pk,
    }
    assert Event.objects.filter(pk=old_done.event_id).exists()  # history stays


def test_pruning_deletes_in_chunks_and_leaves_the_rest_for_the_next_run(db, monkeypatch):
    monkeypatch.setattr(periodic, "DELETE_CHUNK", 2)
    event = Event.objects.create(kind=EventKind.UPDATED, via=Via.SYSTEM)
    for index in range(5):
        make_run(handler=f"h{index}", event=event, state=RunState.DONE, finished_at=ago(days=40))
    queryset = HandlerRun.objects.filter(state=RunState.DONE)
    assert periodic.delete_in_chunks(queryset, max_chunks=2) == 4
    assert periodic.delete_in_chunks(queryset, max_chunks=2) == 1


def test_finished_task_rows_older_than_a_week_are_pruned(db):
    def task_row(status: str, finished_at):
        tasks.run_due.enqueue([0])
        row = DBTaskResult.objects.latest("enqueued_at")
        DBTaskResult.objects.filter(pk=row.pk).update(status=status, finished_at=finished_at)
        return row.pk

    DBTaskResult.objects.all().delete()
    old_ok = task_row("SUCCESSFUL", ago(days=8))
    old_failed = task_row("FAILED", ago(days=8))
    recent = task_row("SUCCESSFUL", ago(days=6))
    waiting = task_row("READY", None)
    assert periodic.prune_finished_tasks() == 2
    assert set(DBTaskResult.objects.values_list("pk", flat=True)) == {recent, waiting}
    assert not DBTaskResult.objects.filter(pk__in=[old_ok, old_failed]).exists()


def test_heartbeats_of_workers_gone_for_a_day_are_pruned(db):
    for name, seen in (("gone", ago(days=1, seconds=1)), ("alive", ago(seconds=3))):
        WorkerHeartbeat.objects.create(
            worker_id=name, hostname="h", pid=1, started_at=ago(days=3), seen_at=seen
        )
    assert periodic.prune_heartbeats() == 1
    assert list(WorkerHeartbeat.objects.values_list("worker_id", flat=True)) == ["alive"]


def test_expired_sessions_are_cleared(db):
    expired, live = SessionStore(), SessionStore()
    expired.set_expiry(1)
    expired.create()
    live.create()
    Session.objects.filter(session_key=expired.session_key).update(expire_date=ago(seconds=5))
    periodic.clear_expired_sessions()
    assert list(Session.objects.values_list("session_key", flat=True)) == [live.session_key]


def test_the_housekeeping_jobs_are_registered_hourly():
    by_name = {job.name: job.seconds for job in periodic.jobs()}
    assert {
        "clear_expired_sessions": 3600,
        "prune_done_runs": 3600,
        "prune_finished_tasks": 3600,
        "prune_heartbeats": 3600,
    }.items() <= by_name.items()


def test_auto_close_is_registered_hourly():
    assert {j.name: j.seconds for j in periodic.jobs()}["close_resolved_tickets"] == 3600
