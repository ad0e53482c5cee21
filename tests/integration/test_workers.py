"""Several real workers drain one queue: every run executes once, never twice in parallel."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest

from supportdesk.events.models import HandlerRun, RunState, Via
from supportdesk.tickets import services
from tests.factories import make_ticket
from tests.integration import probe
from tests.integration.workers import Worker, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

CHANGES = 120


@pytest.fixture
def probe_handler():
    probe.register()
    yield
    probe.unregister()


def test_two_workers_run_each_run_exactly_once(probe_handler, alice, bob, tmp_path):
    log = tmp_path / "probe.log"
    env = {"PROBE_LOG": str(log), "SUPPORTDESK_TASK_SWEEP_SECONDS": "1"}
    workers = [Worker(tmp_path / f"w{n}", env=env) for n in range(2)]
    try:
        tickets = [make_ticket(requester=bob) for _ in range(6)]
        for n in range(CHANGES):
            ticket = tickets[n % len(tickets)]
            tickets[n % len(tickets)] = services.update_ticket(
                ticket, acting_user=alice, via=Via.API, changes={"title": f"Change {n}"}
            )
        runs = HandlerRun.objects.filter(handler=probe.NAME)
        assert runs.count() == CHANGES
        wait_until(
            lambda: not runs.exclude(state=RunState.DONE).exists(),
            timeout=90,
            what=f"{CHANGES} runs done; worker output: {workers[0].output()}",
        )
    finally:
        for worker in workers:
            worker.stop()

    executions: dict[int, list[tuple[int, float, float]]] = defaultdict(list)
    for line in log.read_text().splitlines():
        event_id, pid, started, ended = line.split()
        executions[int(event_id)].append((int(pid), float(started), float(ended)))
    assert len(executions) == CHANGES
    twice = {event: runs for event, runs in executions.items() if len(runs) > 1}
    assert twice == {}  # without a crash, at most once too
    assert set(runs.values_list("attempts", flat=True)) == {1}
    by_worker = Counter(pid for runs in executions.values() for pid, _, _ in runs)
    assert sum(by_worker.values()) == CHANGES
