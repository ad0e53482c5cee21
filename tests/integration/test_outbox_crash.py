"""A worker killed mid-handler loses no mail: its runs are taken over when their lease ends.

Delivery is at least once with a stable key: the mail that the SMTP server accepted just
before the kill is sent again by the next worker, with the same Message-ID, so repeats are
at most one per kill, and every mail recorded as sent is in the sink.
"""

from __future__ import annotations

from collections import Counter

import pytest

from supportdesk.events.models import Event, EventKind, HandlerRun, RunState, Via
from supportdesk.notify.ids import message_id
from supportdesk.tickets import services
from tests.factories import make_ticket
from tests.integration.workers import Worker, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

CHANGES = 200
CC = "watcher@example.net"
LEASE_SECONDS = "2"


def expected_message_ids(requester_email: str, agent_email: str) -> set[str]:
    """Independently of notify's own rules: each acknowledgement (the requester opened the
    ticket with the CC on it) goes to the requester, the plain-address CC and the one agent
    (nobody is assigned), and each agent's public response to the requester and the CC."""
    created = Event.objects.filter(kind=EventKind.CREATED)
    responses = Event.objects.filter(kind=EventKind.RESPONSE_ADDED)
    return {
        message_id(e.pk, address) for e in created for address in (requester_email, CC, agent_email)
    } | {message_id(e.pk, address) for e in responses for address in (requester_email, CC)}


def test_a_worker_killed_mid_handler_loses_no_mail(smtp_sink, alice, bob, tmp_path):
    from supportdesk.notify.models import MailDelivery

    env = {
        "SUPPORTDESK_EMAIL_URL": smtp_sink.url,
        "SUPPORTDESK_TASK_LEASE_SECONDS": LEASE_SECONDS,
        "SUPPORTDESK_TASK_SWEEP_SECONDS": "1",
    }
    marker = tmp_path / "blocked"
    doomed = Worker(
        tmp_path / "doomed",
        env={**env, "CRASH_BLOCK_AFTER": "25", "CRASH_MARKER": str(marker)},
    )
    survivor = None
    try:
        tickets = [make_ticket(requester=bob, ccs=[CC]) for _ in range(10)]
        killed_runs: list[int] = []
        for n in range(CHANGES):
            services.add_response(
                tickets[n % len(tickets)], acting_user=alice, via=Via.WEB, body=f"Update {n}"
            )
            if not killed_runs and marker.exists():
                killed_runs = list(
                    HandlerRun.objects.filter(
                        state=RunState.RUNNING, leased_by__endswith=f":{marker.read_text()}"
                    ).values_list("pk", flat=True)
                )
                doomed.kill()
                survivor = Worker(tmp_path / "survivor", env=env)
        if not killed_runs:
            wait_until(marker.exists, timeout=60, what=f"the block: {doomed.output()}")
            killed_runs = list(
                HandlerRun.objects.filter(
                    state=RunState.RUNNING, leased_by__endswith=f":{marker.read_text()}"
                ).values_list("pk", flat=True)
            )
            doomed.kill()
            survivor = Worker(tmp_path / "survivor", env=env)
        assert killed_runs, "the killed worker held no run"

        expected = expected_message_ids(bob.email, alice.email)
        assert len(expected) == 3 * 10 + 2 * CHANGES
        runs = HandlerRun.objects.all()
        wait_until(
            lambda: not runs.exclude(state=RunState.DONE).exists(),
            timeout=180,
            what=f"every run done; survivor: {survivor.output() if survivor else ''}",
        )
        assert smtp_sink.wait_for(len(expected), timeout=30)
    finally:
        doomed.stop()
        if survivor is not None:
            survivor.stop()

    received = Counter(smtp_sink.message_ids())
    assert expected <= set(received)
    assert set(received) <= expected  # nothing else was mailed
    repeats = sum(count - 1 for count in received.values())
    assert repeats <= 1  # one kill: at most the one mail accepted before it
    recovered = HandlerRun.objects.filter(pk__in=killed_runs)
    assert {run.state for run in recovered} == {RunState.DONE}
    assert all(run.attempts >= 2 for run in recovered)  # taken over after the lease ran out
    sent = set(MailDelivery.objects.filter(state="sent").values_list("message_id", flat=True))
    assert sent == expected  # recorded as sent means in the sink, and all of them were
