from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from supportdesk.events.models import RunState, WorkerHeartbeat
from tests.events.runs import make_run

NOW = "2026-03-02 09:00:00+00:00"


@pytest.fixture
def clock(db, time_machine):
    time_machine.move_to(NOW, tick=False)
    return timezone.now()


def heartbeat(name: str, seen_at) -> WorkerHeartbeat:
    return WorkerHeartbeat.objects.create(
        worker_id=name, hostname="host", pid=1, started_at=seen_at, seen_at=seen_at
    )


def test_healthz_answers_ok_without_login(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["database"]) == ("ok", "ok")


def test_healthz_answers_503_when_the_database_fails(client, db):
    with mock.patch.object(connection, "cursor", side_effect=OperationalError("gone")):
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "error", "database": "error"}


def test_no_worker_ever_seen_is_reported_but_keeps_the_web_in_rotation(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["worker"] == {"ok": False, "last_seen_seconds": None, "alive": 0}


def test_the_freshest_heartbeat_counts_within_three_sweep_intervals(client, clock, settings):
    settings.TASK_SWEEP_SECONDS = 5
    heartbeat("a", clock - timedelta(seconds=14))
    heartbeat("b", clock - timedelta(seconds=40))
    assert client.get("/healthz").json()["worker"] == {
        "ok": True,
        "last_seen_seconds": 14.0,
        "alive": 1,
    }


def test_a_silent_worker_is_not_ok_and_the_answer_is_still_200(client, clock, settings):
    settings.TASK_SWEEP_SECONDS = 5
    heartbeat("a", clock - timedelta(seconds=16))
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["worker"] == {"ok": False, "last_seen_seconds": 16.0, "alive": 0}


def test_the_queue_figures(client, clock):
    make_run(handler="due_fresh", due_at=clock - timedelta(seconds=3))
    make_run(handler="due_retry", attempts=2, due_at=clock - timedelta(seconds=75))
    make_run(handler="later_retry", attempts=1, due_at=clock + timedelta(minutes=5))
    make_run(handler="not_due_yet", due_at=clock + timedelta(seconds=1))
    make_run(handler="running", state=RunState.RUNNING, lease_until=clock + timedelta(minutes=1))
    make_run(handler="stuck", state=RunState.RUNNING, lease_until=clock - timedelta(seconds=1))
    make_run(handler="failed", state=RunState.FAILED, attempts=10)
    make_run(handler="done", state=RunState.DONE, attempts=1, due_at=clock - timedelta(days=1))
    make_run(handler="discarded", state=RunState.DISCARDED, due_at=clock - timedelta(days=1))
    assert client.get("/healthz").json()["queue"] == {
        "due": 2,
        "running": 2,
        "stuck": 1,
        "retrying": 2,
        "failed": 1,
        "oldest_due_seconds": 75.0,
    }


def test_an_empty_queue(client, db):
    assert client.get("/healthz").json()["queue"] == {
        "due": 0,
        "running": 0,
        "stuck": 0,
        "retrying": 0,
        "failed": 0,
        "oldest_due_seconds": None,
    }


def test_healthz_costs_two_queries_however_long_the_queue(client, db):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/healthz").status_code == 200
        return len(captured)

    heartbeat("a", timezone.now())
    make_run(handler="h0", state=RunState.FAILED)
    few = queries()
    for index in range(1, 30):
        make_run(handler=f"h{index}", state=[RunState.PENDING, RunState.FAILED][index % 2])
        heartbeat(f"w{index}", timezone.now())
    assert queries() == few == 2


def test_the_mail_spool_is_reported_and_never_made(client, db, settings, tmp_path):
    settings.MAIL_SPOOL_PATH = tmp_path / "spool.sqlite3"
    assert client.get("/healthz").json()["mail_spool"] == {"waiting": 0, "oldest_seconds": None}
    assert not settings.MAIL_SPOOL_PATH.exists()  # no gateway ran: nothing waits


def test_mail_waiting_in_the_spool_is_reported_with_its_age(client, db, settings, tmp_path):
    from datetime import UTC, datetime

    from supportdesk.intake.models import InboundMessage
    from supportdesk.intake.spool import Spool

    settings.MAIL_SPOOL_PATH = tmp_path / "spool.sqlite3"
    gateway = Spool()
    try:
        with gateway.transaction():
            gateway.insert([InboundMessage(source="smtp", raw="a.eml", size=1, sha256="0")] * 2)
        ten_minutes_ago = (datetime.now(UTC) - timedelta(minutes=10)).isoformat()
        gateway._db.execute("UPDATE spooled SET received_at = ? WHERE id = 1", (ten_minutes_ago,))
    finally:
        gateway.close()
    figures = client.get("/healthz").json()["mail_spool"]
    assert figures["waiting"] == 2
    assert 600 <= figures["oldest_seconds"] < 660


def test_an_unreadable_spool_is_reported_and_the_answer_is_still_200(
    client, db, settings, tmp_path
):
    settings.MAIL_SPOOL_PATH = tmp_path / "spool.sqlite3"
    settings.MAIL_SPOOL_PATH.write_bytes(b"not a database" * 100)
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["mail_spool"]["waiting"] is None
