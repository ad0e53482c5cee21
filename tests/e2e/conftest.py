"""Browser tests: Playwright driving Debian's Chromium against pytest-django's live server.

Playwright's own browser download is never used: the tests need /usr/bin/chromium, which
`make test` installs. Without it a developer's run skips these tests; CI fails.

Every page a test opens records, for the test to check:
- `page.console_errors`: console errors and uncaught exceptions;
- `page.console_messages`: every console message (Chromium reports a blocked resource with
  "Refused to ...");
- `csp_violations(page)`: the `securitypolicyviolation` events of the current document.

Test modules here mark themselves `browser` and
`django_db(transaction=True, serialized_rollback=True)`: the live server needs committed
data, and the flush after a transactional test empties the tables the migrations seeded
(types, priorities, tags), which the serialized rollback restores before the next one.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from supportdesk.events.models import Via
from supportdesk.tickets import services
from tests.conftest import require
from tests.factories import make_app, make_ticket

CHROMIUM = os.environ.get("SUPPORTDESK_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
DESKTOP = {"width": 1200, "height": 900}
PHONE = {"width": 375, "height": 800}

# Playwright's sync API runs an event loop in this thread; the ORM calls from the test body
# are still synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

# Runs before any script of every document: a blocked script, style or request shows up
# here even when the browser prints nothing.
RECORD_CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(
    `${event.violatedDirective} blocked ${event.blockedURI || "inline"}`
    + ` at ${event.sourceFile || event.documentURI}:${event.lineNumber}`
  );
});
"""


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    require(
        shutil.which(CHROMIUM) is not None or os.path.exists(CHROMIUM),
        f"Chromium not found at {CHROMIUM}; `make test` installs it",
    )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield browser
        browser.close()


def session_cookie(user: object, url: str) -> dict[str, str]:
    """A signed-in session for `user`, as the browser cookie Django would have set."""
    client = Client()
    client.force_login(user)
    name = settings.SESSION_COOKIE_NAME
    return {"name": name, "value": client.cookies[name].value, "url": url}


@pytest.fixture
def browse(browser: Browser, live_server) -> Iterator[Callable[..., Page]]:
    """Open a page in a fresh browser context (its own cookies), signed in as `user` if given.

    `browse(bob)` for a signed-in customer, `browse()` for an anonymous visitor,
    `browse(bob, viewport=PHONE)` for a narrow screen.
    """
    contexts = []

    def open_page(user: object = None, *, viewport: dict[str, int] = DESKTOP) -> Page:
        context = browser.new_context(base_url=live_server.url, viewport=viewport)
        context.set_default_timeout(10_000)
        context.add_init_script(RECORD_CSP_VIOLATIONS)
        if user is not None:
            context.add_cookies([session_cookie(user, live_server.url)])
        contexts.append(context)
        page = context.new_page()
        page.console_errors = []
        page.console_messages = []

        def on_console(message: ConsoleMessage) -> None:
            page.console_messages.append(f"{message.type}: {message.text}")
            if message.type == "error":
                page.console_errors.append(message.text)

        page.on("console", on_console)
        page.on("pageerror", lambda error: page.console_errors.append(str(error)))
        return page

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture
def page(browse: Callable[..., Page]) -> Page:
    """An anonymous visitor's page."""
    return browse()


def csp_violations(page: Page) -> list[str]:
    """The Content-Security-Policy violations reported in the current document."""
    return page.evaluate("window.__cspViolations || []")


@pytest.fixture
def desk(acme, shop, bob, alice, carol):
    """A small desk: Acme with two applications, bob's tickets (one answered, with an
    attachment, tags and an internal note) and one of carol's; every page has data to show."""
    portal = make_app(acme, "Portal", environments=("Live",))
    ticket = make_ticket(
        requester=bob,
        type="incident",
        priority="high",
        title="Checkout returns 502 after the payment provider redirects back to the shop",
        description=(
            "Since this morning every payment ends on a 502.\n\n"
            "The callback was https://shop.acme.test/checkout/callback?session="
            + "a1b2c3d4" * 12
            + "\n\n```\nupstream prematurely closed connection while reading response header\n```"
        ),
        application=shop.pk,
        environments=[shop.environments.get(name="Production").pk],
        tags=["Bug", "Installation"],
        ccs=["ops@acme.test"],
        attachments=[
            SimpleUploadedFile("checkout-trace-from-the-production-proxy.har", b'{"log": {}}')
        ],
    )
    services.add_response(
        ticket, acting_user=alice, via=Via.WEB, body="We are looking at the proxy logs."
    )
    services.add_response(
        ticket, acting_user=alice, via=Via.WEB, body="Proxy timeout is 5 s.", internal=True
    )
    others = [
        make_ticket(requester=bob, title="Invoice PDF is empty", application=portal.pk),
        make_ticket(requester=bob, title="How do I add a user?", status="closed", agent=alice),
    ]
    carols = make_ticket(requester=carol, title="Globex VPN is down")
    return {"ticket": ticket, "others": others, "carols": carols, "portal": portal}


@pytest.fixture
def site_pages(desk, bob, alice):
    """Every page with a form, as (name, user, path): what the label and CSP tests visit."""
    number = desk["ticket"].number
    return [
        ("login", None, "/login/"),
        ("password reset", None, "/password-reset/"),
        ("panel", bob, "/tickets/"),
        ("panel, filtered", bob, "/tickets/?view=all&q=checkout&type=incident&tag=Bug"),
        ("new ticket as customer", bob, "/tickets/new/"),
        ("ticket as customer", bob, f"/tickets/{number}/"),
        ("edit as customer", bob, f"/tickets/{number}/edit/"),
        ("profile", bob, "/profile/"),
        ("new ticket as agent", alice, "/tickets/new/"),
        ("ticket as agent", alice, f"/tickets/{number}/"),
        ("edit as agent", alice, f"/tickets/{number}/edit/"),
        ("agent queue", alice, "/agent/unassigned/"),
        ("agent queue, all open", alice, "/agent/open/"),
    ]
