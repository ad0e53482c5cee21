"""Clients logged in as each persona."""

from __future__ import annotations

import pytest

from tests.web.pages import logged_in


@pytest.fixture
def as_bob(bob):
    return logged_in(bob)


@pytest.fixture
def as_carol(carol):
    return logged_in(carol)


@pytest.fixture
def as_alice(alice):
    return logged_in(alice)
