"""Keep the query planner informed.

SQLite plans with statistics that only ANALYZE collects, and never collects them by itself:
without them it picks the (assignee, status) index for the unassigned queue and sorts
thousands of rows, instead of reading the first page off the open-tickets index (measured in
bench/). PostgreSQL's autovacuum keeps its own statistics, so there is nothing to do there.
"""

from __future__ import annotations

from django.db import connection


def update_statistics(*, schema_changed: bool = False) -> str:
    """ANALYZE when SQLite has no statistics or the schema changed (a new index has none),
    else the cheap `PRAGMA optimize`. A full ANALYZE of 100,000 tickets takes about a second."""
    if connection.vendor != "sqlite":
        return "skipped"
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'")
        if schema_changed or cursor.fetchone() is None:
            cursor.execute("ANALYZE")
            return "analyzed"
        cursor.execute("PRAGMA optimize")
        return "optimized"
