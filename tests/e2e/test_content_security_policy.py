"""Every page sends a Content-Security-Policy that forbids inline and evaluated script, and
the pages work under it: nothing is blocked, htmx included."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, Response, expect

from tests.e2e.conftest import csp_violations

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

FAILED_404 = "Failed to load resource: the server responded with a status of 404"


def directives(policy: str) -> dict[str, list[str]]:
    parsed = {}
    for directive in filter(None, (part.strip() for part in policy.split(";"))):
        name, *sources = directive.split()
        parsed[name.lower()] = sources
    return parsed


def policy_problems(response: Response) -> list[str]:
    policy = response.headers.get("content-security-policy")
    if not policy:
        return ["no Content-Security-Policy header"]
    problems = []
    script_src = directives(policy).get("script-src", directives(policy).get("default-src", []))
    if "'self'" not in script_src:
        problems.append(f"script-src is {script_src}, without 'self'")
    problems.extend(
        f"the policy allows {unsafe}"
        for unsafe in ("'unsafe-inline'", "'unsafe-eval'")
        if unsafe in policy
    )
    return problems


def blocked(page: Page) -> list[str]:
    """What the browser refused or failed on in the current document."""
    refused = [m for m in page.console_messages if "Refused to" in m]
    return [*csp_violations(page), *refused, *page.console_errors]


def test_every_page_sends_the_policy_and_nothing_on_it_is_blocked(browse, site_pages, bob):
    pages = {}
    problems = {}
    for name, user, path in [*site_pages, ("not found", bob, "/tickets/999999/")]:
        if user not in pages:
            pages[user] = browse(user)
        page = pages[user]
        page.console_messages.clear()
        page.console_errors.clear()
        response = page.goto(path)
        expected_status = 404 if name == "not found" else 200
        found = policy_problems(response)
        if response.status != expected_status:
            found.append(f"answered {response.status}")
        # A 404 document is reported on the console as a failed load; that is the page
        # working as meant, not something blocked.
        found.extend(
            message
            for message in blocked(page)
            if not (expected_status == 404 and message.startswith(FAILED_404))
        )
        # htmx, served from our own origin, must have run on every page, whether it uses it
        # or not.
        if page.evaluate("typeof window.htmx") != "object":
            found.append("htmx did not load")
        if found:
            problems[f"{name} ({path})"] = found
    assert problems == {}


def test_htmx_loads_the_environments_of_the_chosen_application_under_the_policy(
    browse, desk, bob, alice
):
    page = browse(bob)
    response = page.goto("/tickets/new/")
    assert policy_problems(response) == []
    environments = page.locator("#id_environments option")
    # Without a choice (or without script) every environment of the organization is offered.
    expect(environments).to_have_text(["Live", "Production", "Staging"])

    with page.expect_response("**/tickets/environments/**") as reload:
        page.get_by_label("Application").select_option(label="Portal")
    assert reload.value.ok
    expect(environments).to_have_text(["Live"])
    page.get_by_label("Application").select_option(label="Shop")
    expect(environments).to_have_text(["Production", "Staging"])
    assert blocked(page) == []

    # An agent names the customer first; the environments are those of the customer's
    # application.
    page = browse(alice)
    page.goto("/tickets/new/")
    page.get_by_label("Requester").fill(bob.email)
    page.get_by_label("Application").select_option(label="Portal")
    expect(page.locator("#id_environments option")).to_have_text(["Live"])
    assert blocked(page) == []
