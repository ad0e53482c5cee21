"""The API's docs page in a real browser: it renders the operations from the project's own
assets, with no request leaving this machine, no CSP violation and no console error."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import csp_violations

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def test_the_api_docs_page_loads_from_this_machine_only(page, live_server):
    requested = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto("/api/v1/docs")
    page.wait_for_selector(".opblock-summary-path", timeout=15_000)
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert "/api/v1/tickets/{number}" in [p.strip().replace("\u200b", "") for p in paths]
    page.wait_for_load_state("networkidle")
    hosts = {urlsplit(url).hostname for url in requested if not url.startswith("data:")}
    assert hosts, requested
    assert hosts <= {"localhost", "127.0.0.1"}, requested  # the live server, on loopback
    assert any(url.endswith("/api/v1/openapi.json") for url in requested)
    assert csp_violations(page) == []
    assert page.console_errors == []
    assert [m for m in page.console_messages if "Refused" in m] == []
