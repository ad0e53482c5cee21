"""A ticket's life in the browser: a customer opens it with the keyboard alone, an agent
answers and closes it, the customer sees the answer (never the internal note) and re-opens it."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Locator, Page, expect

from supportdesk.tickets.models import Status, Ticket
from tests.factories import PASSWORD, make_ticket

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

TICKET_PAGE = re.compile(r"/tickets/(\d+)/$")


def tab_to(page: Page, target: Locator, *, limit: int = 60) -> None:
    """Move the focus to `target` with the Tab key alone, as a keyboard user would."""
    element = target.element_handle()
    for _ in range(limit):
        if element.evaluate("element => element === document.activeElement"):
            return
        page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement && document.activeElement.outerHTML")
    pytest.fail(f"{limit} presses of Tab never reached {target}; the focus is on {focused}")


def test_a_customer_creates_a_ticket_with_an_attachment_using_the_keyboard_only(browse, bob, shop):
    page = browse()
    page.goto("/")
    page.wait_for_url("**/login/**")

    tab_to(page, page.get_by_label("Email"))
    page.keyboard.type(bob.email)
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password")).to_be_focused()
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url("**/tickets/")

    tab_to(page, page.locator("main").get_by_role("link", name="Create New Ticket").first)
    page.keyboard.press("Enter")
    page.wait_for_url("**/tickets/new/")

    # A closed <select> takes type-ahead: typing an option's name chooses it.
    tab_to(page, page.get_by_label("Type", exact=True))
    page.keyboard.type("Task")
    expect(page.get_by_label("Type", exact=True)).to_have_value("task")
    tab_to(page, page.get_by_label("Priority", exact=True))
    page.keyboard.type("High")
    expect(page.get_by_label("Priority", exact=True)).to_have_value("high")

    tab_to(page, page.get_by_label("Subject"))
    page.keyboard.type("Export to CSV drops the last row")
    tab_to(page, page.get_by_label("Description"))
    page.keyboard.type("Exporting 10 rows gives a file with 9.\nThe log is attached.")

    for tag in ("Bug", "Installation"):
        tab_to(page, page.get_by_label(tag, exact=True))
        page.keyboard.press("Space")
        expect(page.get_by_label(tag, exact=True)).to_be_checked()

    tab_to(page, page.get_by_label("CCs"))
    page.keyboard.type("ops@acme.test, lead@acme.test")

    # The file chooser is the operating system's: once the input has the keyboard focus,
    # Playwright hands it the file.
    attachments = page.get_by_label("Attachments")
    tab_to(page, attachments)
    attachments.set_input_files(
        files=[{"name": "export-log.txt", "mimeType": "text/plain", "buffer": b"row 10 lost\n"}]
    )

    tab_to(page, page.get_by_role("button", name="Create ticket"))
    page.keyboard.press("Enter")
    page.wait_for_url(TICKET_PAGE)

    number = int(TICKET_PAGE.search(page.url).group(1))
    expect(page.get_by_role("heading", level=1)).to_contain_text("Export to CSV drops the last row")
    expect(page.locator(".description").get_by_role("link", name="export-log.txt")).to_be_visible()
    assert page.console_errors == []

    ticket = Ticket.objects.get(number=number)
    assert ticket.title == "Export to CSV drops the last row"
    # Browsers send a textarea's line breaks as CRLF.
    assert ticket.description.replace("\r\n", "\n") == (
        "Exporting 10 rows gives a file with 9.\nThe log is attached."
    )
    assert ticket.requester == bob
    assert ticket.created_by == bob
    assert (ticket.type.key, ticket.priority.key) == ("task", "high")
    assert ticket.status == Status.OPEN
    assert sorted(tag.name for tag in ticket.tags.all()) == ["Bug", "Installation"]
    assert sorted(cc.email for cc in ticket.ccs.all()) == ["lead@acme.test", "ops@acme.test"]
    [attachment] = ticket.attachments.all()
    assert attachment.filename == "export-log.txt"
    assert attachment.response is None
    with attachment.file.open("rb") as stored:
        assert stored.read() == b"row 10 lost\n"


def test_an_agent_answers_and_closes_and_the_customer_sees_only_the_answer_and_reopens(
    browse, alice, bob
):
    ticket = make_ticket(requester=bob, title="Nightly backup did not run")
    url = f"/tickets/{ticket.number}/"
    answer = "The backup job was paused by maintenance; it runs again tonight."
    note = "Maintenance window forgot to resume cron on db-2."

    agent = browse(alice)
    agent.goto(url)
    agent.get_by_label("Response", exact=True).fill(answer)
    agent.get_by_role("button", name="Add Response").click()
    expect(agent.get_by_role("status")).to_contain_text(f"Response added to #{ticket.number}.")

    agent.get_by_label("Response", exact=True).fill(note)
    agent.get_by_label("Internal note").check()
    agent.get_by_role("button", name="Add Response").click()
    expect(agent.get_by_role("status")).to_contain_text(f"Internal note added to #{ticket.number}.")
    # The agent sees both, the note marked as internal.
    expect(agent.locator(".response:not(.internal)")).to_contain_text(answer)
    expect(agent.locator(".response.internal")).to_contain_text(note)

    agent.get_by_role("button", name="Close", exact=True).click()
    expect(agent.get_by_role("status")).to_contain_text(f"Ticket #{ticket.number} is closed.")
    expect(agent.locator(".facts .status")).to_have_text("Closed")
    assert agent.console_errors == []

    customer = browse(bob)
    customer.goto(url)
    expect(customer.locator(".facts .status")).to_have_text("Closed")
    expect(customer.locator(".conversation")).to_contain_text(answer)
    assert note not in customer.content()
    assert "db-2" not in customer.content()
    expect(customer.locator(".internal")).to_have_count(0)
    expect(customer.get_by_role("button", name="Close", exact=True)).to_have_count(0)

    customer.get_by_role("button", name="Re-open").click()
    expect(customer.get_by_role("status")).to_contain_text(
        f"Ticket #{ticket.number} is open again."
    )
    expect(customer.locator(".facts .status")).to_have_text("Open")
    expect(customer.get_by_role("button", name="Re-open")).to_have_count(0)
    assert note not in customer.content()
    assert customer.console_errors == []

    ticket.refresh_from_db()
    assert ticket.status == Status.OPEN
    assert [(r.body, r.is_internal) for r in ticket.responses.order_by("id")] == [
        (answer, False),
        (note, True),
    ]
