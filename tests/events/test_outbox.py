"""The outbox: runs written with their event, claimed once, retried with backoff, swept."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from supportdesk.errors import DeliveryError
from supportdesk.events import registry, tasks
from supportdesk.events.models import Event, EventKind, HandlerRun, RunState, Via
from supportdesk.tickets import services
from tests.factories import make_ticket

SEEN: list[int] = []
OUTCOMES: list[BaseException | None] = []


@pytest.fixture
def probe(monkeypatch):
    """A handler on every edit that records the events it saw and raises what it is told;
    the only handler registered while the test runs (mail has its own tests)."""
    SEEN.clear()
    OUTCOMES.clear()
    monkeypatch.setattr(registry, "_handlers", {})
    monkeypatch.setattr(registry, "_by_kind", {})

    def probe_on_updated(event: Event) -> None:
        SEEN.append(event.pk)
        outcome = OUTCOMES.pop(0) if OUTCOMES else None
        if outcome is not None:
            raise outcome

    registry.register(EventKind.UPDATED, name="probe_on_updated")(probe_on_updated)
    return probe_on_updated


def edit(ticket, user, title="Changed"):
    return services.update_ticket(ticket, acting_user=user, via=Via.WEB, changes={"title": title})


def edited_runs(alice, bob, count: int) -> list[int]:
    """A ticket of Bob's edited `count` times by Alice: the ids of its runs, in order."""
    ticket = make_ticket(requester=bob)
    for n in range(count):
        ticket = edit(ticket, alice, title=f"Title {n}")
    return list(HandlerRun.objects.order_by("pk").values_list("pk", flat=True))


def only_run() -> HandlerRun:
    return HandlerRun.objects.get(handler="probe_on_updated")


def test_a_change_writes_one_run_per_handler_and_a_wake_up_in_its_transaction(probe, alice, bob):
    ticket = make_ticket(requester=bob)
    tasks_before = DBTaskResult.objects.count()
    edit(ticket, alice)
    run = only_run()
    assert (run.state, run.attempts, run.event.kind) == (RunState.PENDING, 0, EventKind.UPDATED)
    assert list(run.event.runs.values_list("handler", flat=True)) == ["probe_on_updated"]
    assert DBTaskResult.objects.count() == tasks_before + 1  # one wake-up for all of them


def test_a_rolled_back_change_leaves_no_run_and_no_wake_up(probe, alice, bob):
    ticket = make_ticket(requester=bob)
    tasks_before = DBTaskResult.objects.count()

    @transaction.atomic
    def change_then_fail() -> None:
        edit(ticket, alice)
        raise ZeroDivisionError

    runs_before = HandlerRun.objects.count()
    with pytest.raises(ZeroDivisionError):
        change_then_fail()
    assert HandlerRun.objects.count() == runs_before
    assert DBTaskResult.objects.count() == tasks_before


def test_a_run_is_claimed_once_and_marked_done(probe, alice, bob):
    edit(make_ticket(requester=bob), alice)
    run = only_run()
    assert tasks.execute(run.pk) == 1
    assert tasks.execute(run.pk) == 0  # done: nobody runs it again
    run.refresh_from_db()
    assert (run.state, run.attempts, run.lease_until) == (RunState.DONE, 1, None)
    assert [run.event_id] == SEEN


def test_a_retryable_failure_backs_off_then_succeeds(probe, alice, bob):
    edit(make_ticket(requester=bob), alice)
    run = only_run()
    OUTCOMES.append(DeliveryError("421 try later", retry_after=30))
    before = timezone.now()
    tasks.execute(run.pk)
    run.refresh_from_db()
    assert run.state == RunState.PENDING
    assert run.last_error == "421 try later"
    assert run.due_at >= before + timedelta(seconds=30)  # Retry-After honoured
    assert tasks.execute(run.pk) == 0  # not due yet
    HandlerRun.objects.filter(pk=run.pk).update(due_at=timezone.now())
    assert tasks.execute(run.pk) == 1
    run.refresh_from_db()
    assert (run.state, run.attempts) == (RunState.DONE, 2)


def test_a_permanent_failure_fails_at_once_and_an_admin_can_retry_it(probe, alice, bob):
    edit(make_ticket(requester=bob), alice)
    run = only_run()
    OUTCOMES.append(DeliveryError("550 no such user", permanent=True))
    tasks.execute(run.pk)
    run.refresh_from_db()
    assert (run.state, run.last_error) == (RunState.FAILED, "550 no such user")
    tasks.retry(run)
    assert run.state == RunState.PENDING
    assert tasks.execute(run.pk) == 1
    run.refresh_from_db()
    assert run.state == RunState.DONE


def test_attempts_are_limited_and_a_bug_counts_as_retryable(probe, alice, bob, settings):
    settings.TASK_MAX_ATTEMPTS = 2
    edit(make_ticket(requester=bob), alice)
    run = only_run()
    OUTCOMES.extend([KeyError("bug"), KeyError("bug")])
    tasks.execute(run.pk)
    run.refresh_from_db()
    assert run.state == RunState.PENDING
    assert "KeyError" in run.last_error
    HandlerRun.objects.filter(pk=run.pk).update(due_at=timezone.now())
    tasks.execute(run.pk)
    run.refresh_from_db()
    assert (run.state, run.attempts) == (RunState.FAILED, 2)


def test_an_expired_lease_is_taken_over_and_the_old_claim_cannot_settle(probe, alice, bob):
    edit(make_ticket(requester=bob), alice)
    run = only_run()
    first = tasks.claim(run.pk)
    assert first is not None
    assert tasks.claim(run.pk) is None  # leased
    HandlerRun.objects.filter(pk=run.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert tasks.sweep() == 1  # the sweeper wakes it
    second = tasks.claim(run.pk)
    assert second is not None
    assert second.attempts == 2
    assert not tasks._settle(first, state=RunState.DONE)  # the first worker lost its claim
    assert tasks._settle(second, state=RunState.DONE)


def test_the_sweep_wakes_a_run_whose_wake_up_was_lost(probe, alice, bob, settings):
    edit(make_ticket(requester=bob), alice)
    assert only_run().state == RunState.PENDING
    DBTaskResult.objects.all().delete()  # the wake-up is gone
    assert tasks.sweep() == 0  # still within the grace period: its wake-up may be coming
    later = timezone.now() + timedelta(seconds=settings.TASK_SWEEP_SECONDS + 1)
    assert tasks.sweep(now=later) == 1
    assert DBTaskResult.objects.count() == 1


def test_a_wake_up_drains_other_due_runs(probe, alice, bob):
    ids = edited_runs(alice, bob, 3)
    assert len(ids) == 3
    assert tasks.run_due.call([ids[0]]) == 3
    assert set(HandlerRun.objects.values_list("state", flat=True)) == {RunState.DONE}


def test_an_unknown_handler_fails_visibly(alice, bob):
    ticket = make_ticket(requester=bob)
    event = Event.objects.filter(ticket=ticket).first()
    run = HandlerRun.objects.create(event=event, handler="gone_on_created")
    tasks.execute(run.pk)
    run.refresh_from_db()
    assert run.state == RunState.FAILED
    assert "gone_on_created" in run.last_error


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    for attempts in range(1, 6):
        delay = tasks.backoff(attempts)
        nominal = tasks.BACKOFF_FIRST_SECONDS * 2 ** (attempts - 1)
        assert nominal / 2 <= delay <= nominal
    assert tasks.backoff(100) <= tasks.BACKOFF_MAX_SECONDS
    assert tasks.backoff(1, retry_after=120) == 120


def test_on_sqlite_a_waiting_wake_up_serves_later_changes(probe, alice, bob):
    ticket = make_ticket(requester=bob)
    ticket = edit(ticket, alice, title="First")
    waiting = DBTaskResult.objects.count()
    edit(ticket, alice, title="Second")
    added = DBTaskResult.objects.count() - waiting
    assert added == (0 if connection.vendor == "sqlite" else 1)
    assert tasks.run_due.call([]) == 2  # the one wake-up drains both runs


def test_a_full_batch_leaves_a_wake_up_for_the_rest(probe, alice, bob, monkeypatch):
    monkeypatch.setattr(tasks, "BATCH", 2)
    ticket = make_ticket(requester=bob)
    for n in range(3):
        ticket = edit(ticket, alice, title=f"Title {n}")
    DBTaskResult.objects.all().delete()
    assert tasks.run_due.call([]) == 2
    assert DBTaskResult.objects.ready().count() == 1  # for the third
    assert tasks.run_due.call([]) == 1
    assert DBTaskResult.objects.ready().count() == 1  # nothing more was enqueued


def test_a_dead_workers_leases_end_at_the_next_sweep_and_a_live_ones_do_not(probe, alice, bob):
    """A worker killed on this machine leaves no process: its runs are taken over at once,
    not when their lease runs out. A live process, and another machine's, keep theirs."""
    import socket
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # exited and reaped: its pid names no process now
    host = socket.gethostname()
    owners = {
        "dead": f"{host}:{gone.pid}",
        "alive": f"{host}:{os.getppid()}",
        "elsewhere": f"another-{host}:{gone.pid}",
    }
    ticket = make_ticket(requester=bob)
    runs = {}
    for name, owner in owners.items():
        ticket = edit(ticket, alice, title=name)
        run = HandlerRun.objects.order_by("-pk").first()
        assert tasks.claim(run.pk) is not None
        HandlerRun.objects.filter(pk=run.pk).update(leased_by=owner)
        runs[name] = run.pk
    assert tasks.sweep() == 1
    claimable = set(tasks.due_run_ids(limit=10))
    assert runs["dead"] in claimable
    assert runs["alive"] not in claimable
    assert runs["elsewhere"] not in claimable
    taken = tasks.claim(runs["dead"])
    assert taken is not None
    assert taken.attempts == 2


def test_a_worker_id_fits_its_column_whatever_the_host_name(monkeypatch):
    import socket

    monkeypatch.setattr(socket, "gethostname", lambda: "h" * 300)
    name = tasks.worker_id()
    assert len(name) == tasks.WORKER_ID_MAX
    assert name.endswith(f":{os.getpid()}")
    assert not tasks._is_dead_here(name)  # this very process


def test_runs_are_claimed_together_once_and_their_success_settles_only_for_their_claim(
    probe, alice, bob
):
    ids = edited_runs(alice, bob, 3)
    with CaptureQueriesContext(connection) as queries:
        first = tasks.claim_many(list(reversed(ids)))
    assert [run.pk for run in first] == list(reversed(ids))  # in the order asked
    assert len(queries) == 2  # one UPDATE for all, one SELECT of their events
    assert all(run.event.pk == run.event_id for run in first)
    assert tasks.claim_many(ids) == []  # leased: nobody else gets them

    # The first claim's lease runs out on one run, and another claim takes it over.
    HandlerRun.objects.filter(pk=ids[0]).update(lease_until=timezone.now() - timedelta(seconds=1))
    (second,) = tasks.claim_many([ids[0]])
    assert tasks._settle_done(first) == 2  # the run taken over keeps its new claim
    states = dict(HandlerRun.objects.values_list("pk", "state"))
    assert states == {ids[0]: RunState.RUNNING, ids[1]: RunState.DONE, ids[2]: RunState.DONE}
    assert tasks._settle_done([second]) == 1
    assert HandlerRun.objects.get(pk=ids[0]).state == RunState.DONE


def test_a_failure_in_a_claimed_group_is_written_alone_and_the_others_succeed(probe, alice, bob):
    ids = edited_runs(alice, bob, 3)
    OUTCOMES.extend([None, DeliveryError("later", retry_after=60), None])
    assert tasks.execute_many(ids) == 3
    states = dict(HandlerRun.objects.values_list("pk", "state"))
    assert states == {ids[0]: RunState.DONE, ids[1]: RunState.PENDING, ids[2]: RunState.DONE}
    assert HandlerRun.objects.get(pk=ids[1]).last_error == "later"


def test_a_bulk_handlers_runs_are_taken_after_every_other_due_run(probe, alice, bob, monkeypatch):
    """Stored mail is processed by a bulk handler: a backlog of it must not hold back the
    follow-ups of changes already made (an acknowledgement, a page), even newer ones."""
    monkeypatch.setattr(registry, "_bulk", set())
    calls: list[str] = []
    registry.register(EventKind.CREATED, name="bulk_on_created", bulk=True)(
        lambda event: calls.append("bulk")
    )
    monkeypatch.setitem(registry._handlers, "probe_on_updated", lambda event: calls.append("probe"))
    ticket = make_ticket(requester=bob)  # a bulk run, due first
    ticket = edit(ticket, alice, title="Later")  # a run of an ordinary handler, due after it
    bulk_run = HandlerRun.objects.get(handler="bulk_on_created")
    probe_run = only_run()
    assert bulk_run.due_at <= probe_run.due_at
    assert tasks.due_run_ids(limit=10) == [probe_run.pk, bulk_run.pk]
    assert tasks.due_run_ids(limit=1) == [probe_run.pk]
    assert tasks.run_due.call([]) == 2
    assert calls == ["probe", "bulk"]
    assert registry.bulk_handlers() == {"bulk_on_created"}
    registry.unregister("bulk_on_created")
    assert registry.bulk_handlers() == frozenset()


def test_stored_mail_is_processed_by_a_bulk_handler():
    assert "process_on_mail_received" in registry.bulk_handlers()
    assert "mail_on_created" not in registry.bulk_handlers()


@pytest.fixture
def batch(probe, monkeypatch):
    """A batch function for the probe: records the events of each call, raises when told."""
    monkeypatch.setattr(registry, "_batches", {})
    calls: list[list[int]] = []
    failing: list[bool] = []

    def probe_many(events):
        calls.append([event.pk for event in events])
        if failing:
            raise RuntimeError("the batch failed")

    registry.register_batch("probe_on_updated")(probe_many)
    return calls, failing


def test_runs_of_a_handler_claimed_together_go_to_its_batch_function(batch, alice, bob):
    calls, _ = batch
    runs = [HandlerRun.objects.get(pk=pk) for pk in edited_runs(alice, bob, 3)]
    assert tasks.execute_many([run.pk for run in runs]) == 3
    assert calls == [[run.event_id for run in runs]]  # once, the events in order
    assert SEEN == []  # not the handler
    assert set(HandlerRun.objects.values_list("state", flat=True)) == {RunState.DONE}


def test_a_lone_run_goes_to_the_handler_not_the_batch_function(batch, alice, bob):
    calls, _ = batch
    edit(make_ticket(requester=bob), alice)
    assert tasks.execute_many([only_run().pk]) == 1
    assert (calls, SEEN) == ([], [only_run().event_id])
    assert only_run().state == RunState.DONE


def test_a_batch_that_raises_is_run_again_one_by_one_with_each_failure_on_its_run(
    batch, alice, bob
):
    calls, failing = batch
    failing.append(True)
    ids = edited_runs(alice, bob, 3)
    OUTCOMES.extend([None, DeliveryError("later", retry_after=60), None])
    assert tasks.execute_many(ids) == 3
    assert len(calls) == 1
    assert len(SEEN) == 3  # each alone, after the batch failed
    states = dict(HandlerRun.objects.values_list("pk", "state"))
    assert states == {ids[0]: RunState.DONE, ids[1]: RunState.PENDING, ids[2]: RunState.DONE}
    assert HandlerRun.objects.get(pk=ids[1]).last_error == "later"


def test_stored_mail_and_every_mail_handler_have_a_batch_function():
    assert registry.batch_handler("process_on_mail_received") is not None
    assert registry.batch_handler("mail_on_created") is not None
    assert registry.batch_handler("mail_on_response_added") is not None
    assert registry.batch_handler("no_such_handler") is None


def test_the_failures_a_batch_returns_are_written_on_their_runs_and_the_rest_are_done(
    probe, alice, bob, monkeypatch
):
    monkeypatch.setattr(registry, "_batches", {})
    runs = [HandlerRun.objects.get(pk=pk) for pk in edited_runs(alice, bob, 4)]
    events = [run.event_id for run in runs]
    failures = {
        events[1]: DeliveryError("busy", retry_after=60),
        events[2]: DeliveryError("no such user", permanent=True),
        events[3]: ValueError("a bug"),
    }
    registry.register_batch("probe_on_updated")(lambda given: failures)
    assert tasks.execute_many([run.pk for run in runs]) == 4
    after = {run.pk: run for run in HandlerRun.objects.all()}
    assert [after[run.pk].state for run in runs] == [
        RunState.DONE, RunState.PENDING, RunState.FAILED, RunState.PENDING,
    ]  # fmt: skip
    assert [after[run.pk].last_error for run in runs[1:]] == [
        "busy", "no such user", "ValueError: a bug",
    ]  # fmt: skip
    assert after[runs[1].pk].due_at >= timezone.now() + timedelta(seconds=59)
    assert SEEN == []  # nothing was run again one by one
