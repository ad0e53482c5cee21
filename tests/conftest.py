"""Personas and shared fixtures.

alice is a support engineer, bob and carol are customers of two organizations: carol must
never see anything of bob's. dave is an admin.
"""

from __future__ import annotations

import os

import pytest
from django.apps import apps as django_apps

from supportdesk.tickets.models import TicketType
from supportdesk.tickets.vocabularies import ensure_builtins
from tests.factories import make_app, make_org, make_user

IN_CI = os.environ.get("CI", "").lower() == "true"


def require(condition: bool, reason: str) -> None:
    """Skip on a developer's machine when a prerequisite is missing; fail in CI."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: missing prerequisites fail instead of skipping)")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _builtin_vocabularies(request):
    """Transactional tests (live server, races) end with a flush that also deletes the rows
    the data migration made; a test that uses the database finds them in place again."""
    uses_db = request.node.get_closest_marker("django_db") is not None or bool(
        {"db", "transactional_db", "live_server"} & set(request.fixturenames)
    )
    if uses_db:
        request.getfixturevalue("_django_db_helper")
        if not TicketType.objects.exists():
            ensure_builtins(django_apps)


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    """Uploads of each test go to its own directory."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "files")},
        },
    }


@pytest.fixture
def acme(db):
    return make_org("Acme")


@pytest.fixture
def globex(db):
    return make_org("Globex")


@pytest.fixture
def shop(acme):
    return make_app(acme, "Shop")


@pytest.fixture
def alice(db):
    return make_user("alice@supportdesk.test", role="agent", name="Alice Agent")


@pytest.fixture
def dave(db):
    return make_user("dave@supportdesk.test", role="admin", name="Dave Admin")


@pytest.fixture
def bob(acme):
    return make_user("bob@acme.test", org=acme, name="Bob Customer")


@pytest.fixture
def carol(globex):
    return make_user("carol@globex.test", org=globex, name="Carol Other")


@pytest.fixture
def smtp_sink(settings):
    """A real SMTP server on 127.0.0.1 for this test; outbound mail goes to it."""
    from tests.smtp_sink import SmtpSink  # aiosmtpd is loaded only by tests that send mail

    sink = SmtpSink()
    settings.EMAIL_URL = sink.url
    try:
        yield sink
    finally:
        sink.stop()
