"""The spec: every operation covered by a test; the docs served locally; and one scenario
through the web and the API ending the same."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from django.test import Client

from supportdesk.events.models import Event
from supportdesk.tickets.models import Status, Ticket
from tests.api.conftest import api_client
from tests.factories import PASSWORD

HERE = Path(__file__).parent


DIRECTORY_OPERATIONS = (
    "get_me",
    "list_organizations",
    "list_types",
    "list_priorities",
    "list_tags",
)
DIRECTORY_TESTS = (
    "test_the_directory_shows_what_the_caller_may_see",
    "test_the_directory_answers_each_persona_what_it_may_see",
    "test_a_read_only_token_reads_the_directory_and_writes_nothing",
    "test_expired_revoked_and_deactivated_tokens_get_401_on_the_directory",
)
MAIL_OPERATIONS = (
    "list_mail_messages",
    "get_mail_message",
    "download_mail_message",
    "accept_mail_message",
    "reject_mail_message",
    "reprocess_mail_message",
    "delete_mail_message",
)
MAIL_TESTS = (
    "test_customers_get_404_on_every_mail_operation",
    "test_anonymous_gets_401_on_every_mail_operation",
    "test_wrong_states_get_a_clear_4xx_and_change_nothing",
)

# Each operation of the spec, with the tests that call it as every persona and as another
# organization. A new operation fails the test below until it is added here with its tests.
COVERED_BY = {
    "list_tickets": ["test_cursor_pages_are_stable_under_inserts", "test_forged_cursors_are_400"],
    "create_ticket": ["test_a_customer_creates_a_ticket_and_reads_it_back"],
    "get_ticket": ["test_another_organizations_ticket_is_404_on_every_endpoint"],
    "update_ticket": ["test_a_stale_if_match_gets_412_and_changes_nothing"],
    "reopen_ticket": ["test_reopen_is_the_one_status_change_a_customer_makes"],
    "list_events": ["test_history_hides_internal_events_from_customers"],
    "list_responses": ["test_internal_notes_are_listed_to_agents_only"],
    "create_response": [
        "test_a_repeated_response_post_adds_one_response",
        "test_a_response_carries_its_files",
        "test_a_repeated_multipart_response_adds_one_response",
    ],
    "list_attachments": [
        "test_another_organizations_ticket_is_404_on_every_endpoint",
        "test_an_agent_lists_and_downloads_a_customers_files",
    ],
    "upload_attachments": ["test_attachments_upload_and_download_with_the_same_access_as_the_page"],
    "download_attachment": [
        "test_attachments_upload_and_download_with_the_same_access_as_the_page",
        "test_an_agent_lists_and_downloads_a_customers_files",
    ],
    **dict.fromkeys(DIRECTORY_OPERATIONS, DIRECTORY_TESTS),
    **dict.fromkeys(MAIL_OPERATIONS, MAIL_TESTS),
}


def test_every_operation_in_the_openapi_document_is_exercised_by_a_test():
    spec = Client().get("/api/v1/openapi.json").json()
    operations = {
        op["operationId"]: f"{method.upper()} {path}"
        for path, methods in spec["paths"].items()
        for method, op in methods.items()
    }
    uncovered = sorted(f"{operations[o]} ({o})" for o in set(operations) - set(COVERED_BY))
    assert uncovered == [], f"Operations without a test: {uncovered}"
    sources = "\n".join(p.read_text() for p in HERE.glob("test_*.py"))
    missing = [
        name for names in COVERED_BY.values() for name in names if f"def {name}(" not in sources
    ]
    assert missing == []
    assert set(COVERED_BY) == set(operations), "COVERED_BY names an operation that is gone"


def test_the_openapi_document_has_no_duplicate_keys():
    """Python's json keeps the last of two equal keys; the docs page's YAML parser refuses
    the whole document (an int and a str status code once made such a pair)."""
    duplicates = []

    def pairs(items):
        keys = [key for key, _value in items]
        duplicates.extend(key for key in set(keys) if keys.count(key) > 1)
        return dict(items)

    json.loads(Client().get("/api/v1/openapi.json").content, object_pairs_hook=pairs)
    assert duplicates == []


def test_the_docs_page_loads_only_local_assets():
    page = Client().get("/api/v1/docs")
    assert page.status_code == 200
    html = page.content.decode()
    assert "/static/ninja/swagger-ui-bundle.js" in html
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "script-src 'self'" in page["Content-Security-Policy"]


def _via_web(bob, alice):
    browser = Client()
    browser.login(email=bob.email, password=PASSWORD)
    browser.post(
        "/tickets/new/",
        {"type": "question", "priority": "normal", "title": "Same", "description": "d"},
    )
    ticket = Ticket.objects.latest("id")
    browser.post(f"/tickets/{ticket.number}/respond/", {"body": "more"})
    agent = Client()
    agent.login(email=alice.email, password=PASSWORD)
    agent.post(f"/tickets/{ticket.number}/close/")
    browser.post(f"/tickets/{ticket.number}/reopen/")
    return ticket


def _via_api(bob, alice):
    customer, agent = api_client(bob), api_client(alice)
    number = customer.post(
        "/tickets", {"type": "question", "priority": "normal", "title": "Same", "description": "d"}
    ).json()["number"]
    customer.post(f"/tickets/{number}/responses", {"body": "more"})
    agent.patch(f"/tickets/{number}", {"status": "closed"})
    customer.post(f"/tickets/{number}/reopen")
    return Ticket.objects.get(number=number)


@pytest.mark.parametrize("scenario", [_via_web, _via_api])
def test_the_same_scenario_ends_the_same_on_web_and_api(scenario, bob, alice):
    ticket = scenario(bob, alice)
    ticket.refresh_from_db()
    assert (ticket.status, ticket.title, ticket.version) == (Status.OPEN, "Same", 3)
    assert list(ticket.responses.values_list("body", flat=True)) == ["more"]
    history = [
        (e.kind, e.actor_id, e.changes) for e in Event.objects.filter(ticket=ticket).order_by("id")
    ]
    assert [h[0] for h in history] == ["created", "response_added", "status_changed", "reopened"]
    assert history[2][2] == {"status": ["Open", "Closed"]}
    assert history[3][2] == {"status": ["Closed", "Open"]}
