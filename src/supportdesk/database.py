"""Keep the query planner informed.

SQLite plans with statistics that only ANALYZE collects, and never collects them by itself:
without them it picks the (assignee, status) index for the unassigned queue and sorts
thousands of rows, instead of reading the first page off an index in display order
(measured in bench/). PostgreSQL's autovacuum keeps its own statistics, so there is nothing
to do there.
"""

from __future__ import annotations

from django.db import connection
from django.db.backends.utils import CursorWrapper

# Statistics are refreshed when the ticket count has more than doubled or halved since they
# were taken; below this many tickets any plan is fast and the check is skipped.
MIN_ROWS = 1000


def _analyzed_and_current_rows(cursor: CursorWrapper) -> tuple[int, int]:
    cursor.execute(
        "SELECT stat FROM sqlite_stat1 WHERE tbl = 'tickets_ticket' AND idx IS NOT NULL LIMIT 1"
    )
    row = cursor.fetchone()
    analyzed = int(str(row[0]).split()[0]) if row else 0
    cursor.execute("SELECT count(*) FROM tickets_ticket")
    return analyzed, int(cursor.fetchone()[0])


def update_statistics(*, schema_changed: bool = False, min_rows: int = MIN_ROWS) -> str:
    """ANALYZE when SQLite has no statistics, the schema changed (a new index has none) or
    the tickets have grown or shrunk a lot since; else the cheap `PRAGMA optimize`. A full
    ANALYZE of 100,000 tickets takes about half a second."""
    if connection.vendor != "sqlite":
        return "skipped"
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'")
        stale = schema_changed or cursor.fetchone() is None
        if not stale:
            analyzed, current = _analyzed_and_current_rows(cursor)
            stale = max(analyzed, current) >= min_rows and (
                current > 2 * analyzed or analyzed > 2 * current
            )
        if stale:
            cursor.execute("ANALYZE")
            return "analyzed"
        cursor.execute("PRAGMA optimize")
        return "optimized"
