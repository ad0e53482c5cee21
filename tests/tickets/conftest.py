"""Fixtures for ticket service tests: tickets of bob's, another organization's application."""

from __future__ import annotations

import pytest

from supportdesk.tickets.models import Status
from tests.factories import make_app, make_ticket


@pytest.fixture
def ticket(bob):
    """An open question of bob's (Acme)."""
    return make_ticket(requester=bob, title="Cannot log in")


@pytest.fixture
def pending_ticket(bob, alice):
    return make_ticket(requester=bob, status=Status.PENDING, agent=alice)


@pytest.fixture
def globex_app(globex):
    return make_app(globex, "Portal", environments=("Production",))
