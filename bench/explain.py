"""Show the SQL behind each measured page on the seeded database, slowest first.

`bench/run` leaves its database in bench/var; then

    .venv/bin/python bench/explain.py [--home bench/var] [--top 3]

renders each page in-process with Django's test client as the benchmark's customer and agent,
records every query (Django's CaptureQueriesContext), times each one again on its own (best
of five) and prints the slowest with SQLite's EXPLAIN QUERY PLAN; with --profile also where
the rest of the time goes. It writes one session row
into the database (the test client's login) and nothing else.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def best_of(cursor: object, sql: str, params: object, runs: int = 5) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        cursor.execute(sql, params)  # type: ignore[attr-defined]
        cursor.fetchall()  # type: ignore[attr-defined]
        best = min(best, time.perf_counter() - started)
    return best * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=ROOT / "bench" / "var")
    parser.add_argument("--top", type=int, default=3, help="slowest queries shown per page")
    parser.add_argument(
        "--profile", action="store_true", help="also print where the Python time goes (cProfile)"
    )
    args = parser.parse_args()
    os.environ["SUPPORTDESK_HOME"] = str(args.home.resolve())
    os.environ.pop("DATABASE_URL", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "supportdesk.settings"

    import django

    django.setup()
    import measure
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    expected = measure.Expected.read(args.home.resolve() / "supportdesk.sqlite3")
    from supportdesk.accounts.models import User

    own = [
        t.number for t in expected.tickets.values() if t.organization_id == expected.organization_id
    ]
    personas = {
        "customer": User.objects.get(email=expected.customer_email),
        "agent": User.objects.get(email=expected.agent_email),
    }
    paths = [
        ("customer", "/tickets/"),
        ("customer", "/tickets/?view=all"),
        ("customer", f"/tickets/{own[len(own) // 2]}/"),
        ("agent", "/agent/all/"),
        ("agent", "/agent/unassigned/"),
        ("agent", f"/tickets/{list(expected.tickets)[len(expected.tickets) // 2]}/"),
    ]
    for persona, path in paths:
        client = Client(HTTP_HOST="127.0.0.1")
        client.force_login(personas[persona])
        client.get(path)  # warm caches: the measured server is warm too
        started = time.perf_counter()
        with CaptureQueriesContext(connection) as captured:
            response = client.get(path)
        total = (time.perf_counter() - started) * 1000
        timed = []
        with connection.cursor() as cursor:
            for query in captured.captured_queries:
                sql = query["sql"]
                if not sql.lstrip().upper().startswith("SELECT"):
                    continue
                # The captured text has parameters inlined, which SQLite accepts as is.
                timed.append((best_of(cursor, sql, ()), sql))
        timed.sort(reverse=True)
        print(
            f"\n== {persona} {path}: {response.status_code}, {total:.1f} ms in-process, "
            f"{len(captured)} queries, {sum(t for t, _ in timed):.1f} ms of SELECTs"
        )
        with connection.cursor() as cursor:
            for ms, sql in timed[: args.top]:
                print(f"\n  {ms:.2f} ms  {sql[:600]}{'…' if len(sql) > 600 else ''}")
                cursor.execute(f"EXPLAIN QUERY PLAN {sql}")
                for row in cursor.fetchall():
                    print(f"      plan: {row[-1]}")
        if args.profile:  # after the figures above: a request resets Django's query log
            profiler = cProfile.Profile()
            profiler.runcall(client.get, path)
            stats = pstats.Stats(profiler, stream=sys.stdout)
            stats.sort_stats("cumulative").print_stats("supportdesk|templatetags", 15)
            stats.sort_stats("tottime").print_stats(10)


if __name__ == "__main__":
    main()
