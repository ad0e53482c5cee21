"""The planner's statistics: collected once on SQLite, refreshed cheaply after."""

import pytest
from django.db import connection

from supportdesk.database import update_statistics


@pytest.mark.django_db
def test_statistics_are_collected_once_then_refreshed():
    if connection.vendor != "sqlite":
        assert update_statistics() == "skipped"
        return
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS sqlite_stat1")
    assert update_statistics() == "analyzed"
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'")
        assert cursor.fetchone() == (1,)
    assert update_statistics() == "optimized"
    assert update_statistics(schema_changed=True) == "analyzed"
