"""Every form control has a label a screen reader announces, and pages fit a 375 px phone."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import PHONE

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

# A control is labelled by <label for=id>, a <label> around it, aria-label, or
# aria-labelledby naming elements that exist; each with some text.
UNLABELLED_CONTROLS = """
() => {
  const exempt = new Set(["hidden", "submit", "button", "reset", "image"]);
  const text = (element) => (element && element.textContent || "").trim();
  const labels = [...document.querySelectorAll("label")];
  const controls = [...document.querySelectorAll("input, select, textarea")]
    .filter((control) => !(control.tagName === "INPUT" && exempt.has(control.type)));
  const unlabelled = controls.filter((control) => {
    const byFor = control.id && labels.some((l) => l.htmlFor === control.id && text(l));
    const wrapped = text(control.closest("label"));
    const ariaLabel = (control.getAttribute("aria-label") || "").trim();
    const ids = (control.getAttribute("aria-labelledby") || "").split(/\\s+/).filter(Boolean);
    const labelledBy = ids.length > 0 && ids.every((id) => text(document.getElementById(id)));
    return !(byFor || wrapped || ariaLabel || labelledBy);
  });
  return {count: controls.length, unlabelled: unlabelled.map((c) => c.outerHTML.slice(0, 160))};
}
"""

# The elements that stick out past the right edge of the viewport, to name them on failure.
WIDEST = """
() => [...document.body.querySelectorAll("*")]
  .filter((element) => element.getBoundingClientRect().right > window.innerWidth + 0.5)
  .slice(0, 5)
  .map((element) => `${element.tagName.toLowerCase()}.${element.className}`
       + ` (right edge ${Math.round(element.getBoundingClientRect().right)} px)`)
"""


def test_every_form_control_on_every_page_has_a_label(browse, site_pages):
    pages = {}
    problems = {}
    for name, user, path in site_pages:
        if user not in pages:
            pages[user] = browse(user)
        page = pages[user]
        response = page.goto(path)
        assert response.status == 200, f"{name}: {path} answered {response.status}"
        found = page.evaluate(UNLABELLED_CONTROLS)
        if found["count"] == 0:
            problems[name] = f"no form controls found on {path}"
        elif found["unlabelled"]:
            problems[name] = found["unlabelled"]
    assert problems == {}


def test_the_label_check_finds_controls_without_a_label(page):
    """The check above, against controls that a screen reader would announce without a name."""
    page.goto("/login/")
    assert page.evaluate(UNLABELLED_CONTROLS)["unlabelled"] == []
    page.evaluate(
        """() => document.querySelector("main").insertAdjacentHTML("beforeend",
             '<input name="bare"><label for="empty"> </label><textarea id="empty"></textarea>'
             + '<select aria-labelledby="missing"></select>'
             + '<input type="hidden" name="fine"><input type="submit" value="Fine">')"""
    )
    assert len(page.evaluate(UNLABELLED_CONTROLS)["unlabelled"]) == 3


@pytest.mark.parametrize("who", ["customer", "agent"])
def test_pages_fit_a_375_px_wide_screen_without_sideways_scrolling(browse, desk, bob, alice, who):
    ticket = desk["ticket"]
    user, queue = {"customer": (bob, "/tickets/?view=all"), "agent": (alice, "/agent/open/")}[who]
    # Each page with what must be on it, so that an empty or broken page cannot pass.
    pages = [
        (queue, ticket.title),
        ("/tickets/new/", "Create New Ticket"),
        (f"/tickets/{ticket.number}/", "We are looking at the proxy logs."),
    ]
    page = browse(user, viewport=PHONE)
    too_wide = {}
    for path, content in pages:
        page.goto(path)
        expect(page.locator("main")).to_contain_text(content)
        width = page.evaluate("document.documentElement.scrollWidth")
        if width > PHONE["width"]:
            too_wide[path] = (width, page.evaluate(WIDEST))
    assert too_wide == {}
