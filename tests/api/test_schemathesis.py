"""schemathesis over the whole OpenAPI document, in process, as a customer and as an agent.

Every operation gets the document's examples and generated requests, part of them aimed at
the persona's real tickets and files, so that the checks see successful answers as well as
refusals. Each response must be in the document (status code, content type, body), none may
be a 5xx, and every operation must answer at least one 2xx: a run that only ever met 401 or
404 would prove nothing.
"""

from __future__ import annotations

from collections import defaultdict

import pytest
import schemathesis
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from supportdesk.accounts.services import create_token
from supportdesk.events.models import Via
from supportdesk.intake.models import InboundMessage, MessageState
from supportdesk.tickets import services
from supportdesk.tickets.models import Status
from supportdesk.wsgi import application
from tests.factories import make_ticket
from tests.intake.mail import held_message, quarantined_message

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
EXAMPLES_PER_OPERATION = 20


def _real_tickets(requester, agent):
    """An open ticket with a file and a response, and a closed one to re-open."""
    ticket = make_ticket(requester=requester, title="Printer on fire")
    services.add_response(ticket, acting_user=requester, via=Via.WEB, body="Still burning.")
    (attachment,) = services.add_attachments(
        ticket,
        [SimpleUploadedFile("log.txt", b"smoke\n", content_type="text/plain")],
        acting_user=requester,
        via=Via.WEB,
    )
    closed = make_ticket(requester=requester, status=Status.CLOSED, agent=agent, title="Done")
    return {"number": ticket.number, "attachment_id": attachment.pk}, closed.number


# Agents' only: a customer must get 404 from each, so no 2xx is expected of them.
AGENT_ONLY_TAGS = frozenset({"mail"})


def _real_mail(organization, requester):
    """A message in the state each mail operation acts on: held ones (an unknown sender at
    the organization's domain) to accept and reject, a quarantined one to reprocess, and a
    rejected one to delete."""

    def held(subject):
        return held_message(organization, sender=f"{subject.lower()}@example.org").pk

    quarantined = quarantined_message(requester, subject="Quarantined", error="Test failure")
    rejected = held("Rejected")
    InboundMessage.objects.filter(pk=rejected).update(state=MessageState.REJECTED)
    return {
        "accept_mail_message": held("Accept"),
        "reject_mail_message": held("Reject"),
        "reprocess_mail_message": quarantined.pk,
        "delete_mail_message": rejected,
        "get_mail_message": quarantined.pk,
        "download_mail_message": quarantined.pk,
    }


@pytest.fixture
def _connection_kept_open():
    """The WSGI handler closes the database connection after each request, which would end
    the test's transaction; Django's test client holds these signals back the same way."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.mark.usefixtures("_connection_kept_open")
@pytest.mark.parametrize("persona", ["bob", "alice"])
def test_every_operation_answers_as_documented(persona, request, bob, alice, settings):
    settings.API_RATE_LIMIT = 0  # hundreds of requests a minute are the point here
    user = request.getfixturevalue(persona)
    real, closed_number = _real_tickets(bob, alice)
    mail = _real_mail(bob.organization, bob)
    _token, secret = create_token(user)
    auth = {"Authorization": f"Bearer {secret}"}
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", application)

    statuses: dict[str, list[int]] = defaultdict(list)
    failures: dict[str, str] = {}
    agent_only: set[str] = set()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 16
    for operation in operations:
        names = {p.name for p in operation.path_parameters}
        operation_id = operation.definition.raw["operationId"]
        real["message_id"] = mail.get(operation_id, 0)
        aimed = {name: real[name] for name in names}
        if not user.is_agent and AGENT_ONLY_TAGS & set(operation.definition.raw["tags"]):
            agent_only.add(operation.label)
        if operation_id == "reopen_ticket":
            aimed = {"number": closed_number}
        # The document's own examples, generated requests aimed at real objects, and
        # generated requests with generated path parameters.
        strategies = operation.get_strategies_from_examples(path_parameters=aimed or None)
        if aimed:
            strategies.append(operation.as_strategy(headers=auth, path_parameters=aimed))
        strategies.append(operation.as_strategy(headers=auth))
        if operation_id == "create_ticket" and user.is_agent:  # an agent names the customer
            body = {
                "type": "incident",
                "priority": "high",
                "title": "Disk full",
                "requester": bob.email,
            }
            strategies.append(operation.as_strategy(headers=auth, body=body))
        _fuzz(st.one_of(strategies), auth, statuses[operation.label], failures, operation.label)

    assert failures == {}, "\n\n".join(failures.values())
    without_success = sorted(
        label
        for label, codes in statuses.items()
        if label not in agent_only and not any(200 <= c < 300 for c in codes)
    )
    assert without_success == [], {label: sorted(set(statuses[label])) for label in without_success}
    assert len(statuses) == len(operations)
    # 422: request validation comes before the agent check, and reveals nothing.
    refused = {label: set(statuses[label]) - {404, 422} for label in agent_only}
    assert {label: codes for label, codes in refused.items() if codes} == {}


def _fuzz(strategy, auth, statuses, failures, label):
    """Run the generated cases of one operation; the first failing check is kept, not shrunk
    (shrinking a stateful run costs minutes and the report already names the request)."""

    @given(case=strategy)
    @hypothesis_settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case):
        try:
            response = case.call_and_validate(headers=auth, checks=CHECKS)
        except FailureGroup as failure:
            failures.setdefault(label, f"{label}: {failure}")
        else:
            statuses.append(response.status_code)

    run()
