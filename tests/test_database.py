"""The planner's statistics: collected when missing, stale or outdated by a schema change."""

import pytest
from django.db import connection

from supportdesk.database import update_statistics
from tests.factories import make_ticket


def drop_statistics():
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS sqlite_stat1")


@pytest.mark.django_db
def test_statistics_are_collected_when_missing_then_refreshed_cheaply():
    if connection.vendor != "sqlite":
        assert update_statistics() == "skipped"
        return
    drop_statistics()
    assert update_statistics() == "analyzed"
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'")
        assert cursor.fetchone() == (1,)
    assert update_statistics() == "optimized"
    assert update_statistics(schema_changed=True) == "analyzed"


@pytest.mark.django_db
def test_statistics_are_taken_again_when_the_tickets_have_more_than_doubled(bob):
    if connection.vendor != "sqlite":
        assert update_statistics(min_rows=1) == "skipped"  # PostgreSQL keeps its own
        return
    for _ in range(2):
        make_ticket(requester=bob)
    drop_statistics()
    assert update_statistics() == "analyzed"
    make_ticket(requester=bob)
    assert update_statistics(min_rows=1) == "optimized"  # 3 is not more than twice 2
    make_ticket(requester=bob)
    make_ticket(requester=bob)
    assert update_statistics(min_rows=100) == "optimized"  # too few to matter
    assert update_statistics(min_rows=1) == "analyzed"  # 5 is more than twice 2
    assert update_statistics(min_rows=1) == "optimized"
