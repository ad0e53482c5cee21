"""Who edits what: customers every field they set but the status; agents everything."""

from __future__ import annotations

import pytest

from supportdesk.errors import Conflict, Forbidden, InvalidChange
from supportdesk.events.models import EventKind, Via
from supportdesk.tickets import services
from supportdesk.tickets.access import visible_problem
from supportdesk.tickets.models import Status, Ticket
from tests.factories import make_ticket, make_user


def edit(ticket, user, expected_version=None, **changes):
    return services.update_ticket(
        ticket, acting_user=user, via=Via.WEB, changes=changes, expected_version=expected_version
    )


def customer_changes(shop):
    production = shop.environments.get(name="Production")
    return {
        "type": ("incident", "type", "Incident"),
        "priority": ("urgent", "priority", "Urgent"),
        "title": ("Checkout fails", "title", "Checkout fails"),
        "description": ("Since the deploy.", "description", "Since the deploy."),
        "tags": (["bug"], "tags", ["Bug"]),
        "ccs": (["ops@example.org"], "ccs", ["ops@example.org"]),
        "application": (shop.pk, "application", "Shop"),
        "environments": ([production.pk], "environments", ["Production"]),
    }


@pytest.mark.parametrize(
    "field",
    ["type", "priority", "title", "description", "tags", "ccs", "application", "environments"],
)
def test_a_customer_edits_each_field_they_set(bob, shop, field):
    ticket = make_ticket(requester=bob, application=shop.pk if field == "environments" else None)
    value, name, shown = customer_changes(shop)[field]
    edited = edit(ticket, bob, expected_version=ticket.version, **{field: value})
    assert edited.version == ticket.version + 1
    assert edited.last_updated_by == bob
    event = edited.events.latest("id")
    assert event.kind == EventKind.UPDATED
    assert event.changes[name][1] == shown


@pytest.mark.parametrize("status", [Status.PENDING, Status.RESOLVED, Status.CLOSED, Status.OPEN])
def test_a_customer_never_changes_the_status_of_an_open_ticket(bob, ticket, status):
    with pytest.raises(Forbidden) as refused:
        edit(ticket, bob, status=status)
    assert refused.value.field == "status"
    assert Ticket.objects.get(pk=ticket.pk).version == ticket.version


@pytest.mark.parametrize("done", [Status.RESOLVED, Status.CLOSED])
def test_a_customer_reopens_a_resolved_or_closed_ticket(bob, alice, done):
    ticket = make_ticket(requester=bob, status=done, agent=alice)
    reopened = services.reopen_ticket(ticket, acting_user=bob, via=Via.WEB)
    assert reopened.status == Status.OPEN
    assert reopened.closed_at is None
    event = reopened.events.latest("id")
    assert event.kind == EventKind.REOPENED
    assert event.changes == {"status": [done.label, "Open"]}
    assert event.actor == bob


def test_a_customer_reopens_through_an_edit_together_with_other_fields(bob, alice):
    ticket = make_ticket(requester=bob, status=Status.CLOSED, agent=alice)
    edited = edit(ticket, bob, status=Status.OPEN, title="Back again")
    assert (edited.status, edited.title) == (Status.OPEN, "Back again")
    event = edited.events.latest("id")
    assert event.kind == EventKind.REOPENED
    assert set(event.changes) == {"status", "title"}


def test_a_customer_cannot_move_a_closed_ticket_anywhere_but_open(bob, alice):
    ticket = make_ticket(requester=bob, status=Status.CLOSED, agent=alice)
    with pytest.raises(Forbidden):
        edit(ticket, bob, status=Status.PENDING)


def test_an_open_ticket_cannot_be_reopened(bob, ticket):
    with pytest.raises(InvalidChange) as refused:
        services.reopen_ticket(ticket, acting_user=bob, via=Via.WEB)
    assert refused.value.field == "status"


@pytest.mark.parametrize("field", ["assignee", "problem", "requester"])
def test_agents_only_fields_are_forbidden_to_customers(bob, alice, ticket, field):
    value = {"assignee": alice.pk, "problem": 1, "requester": bob}[field]
    with pytest.raises(Forbidden) as refused:
        edit(ticket, bob, **{field: value})
    assert refused.value.field == field
    assert Ticket.objects.get(pk=ticket.pk).version == 1


def test_an_unknown_field_is_refused(alice, ticket):
    with pytest.raises(InvalidChange) as refused:
        edit(ticket, alice, organization=1)
    assert refused.value.field == "organization"


def test_an_agent_changes_everything_and_closes(alice, bob, ticket, shop):
    colleague = make_user("eve@acme.test", org=bob.organization)
    edited = edit(
        ticket,
        alice,
        type="incident",
        priority="high",
        title="Login broken for SSO users",
        tags=["Bug"],
        ccs=["ops@example.org"],
        application=shop.pk,
        assignee=alice.pk,
        requester=colleague,
        status=Status.CLOSED,
    )
    assert edited.status == Status.CLOSED
    assert edited.closed_at is not None
    assert edited.assignee == alice
    assert edited.requester == colleague
    assert edited.events.latest("id").changes["status"] == ["Open", "Closed"]


def test_an_agent_cannot_hand_a_ticket_to_another_organization(alice, carol, ticket):
    with pytest.raises(InvalidChange) as refused:
        edit(ticket, alice, requester=carol)
    assert refused.value.field == "requester"


@pytest.mark.parametrize("assignee", ["customer", "unknown"])
def test_tickets_are_assigned_to_agents_only(alice, bob, ticket, assignee):
    value = {"customer": bob.pk, "unknown": 987654}[assignee]
    with pytest.raises(InvalidChange) as refused:
        edit(ticket, alice, assignee=value)
    assert refused.value.field == "assignee"


def test_a_single_field_change_gets_its_own_event_kind(alice, ticket):
    assert edit(ticket, alice, assignee=alice).events.latest("id").kind == EventKind.ASSIGNED
    edited = edit(ticket, alice, status=Status.PENDING)
    assert edited.events.latest("id").kind == EventKind.STATUS_CHANGED


def test_an_edit_that_changes_nothing_writes_no_event(bob, ticket):
    before = ticket.events.count()
    same = edit(ticket, bob, title=ticket.title, priority="normal", tags=[], ccs=[])
    assert same.version == ticket.version
    assert ticket.events.count() == before


def test_a_new_application_drops_the_old_ones_environments(bob, shop):
    production = shop.environments.get(name="Production")
    ticket = make_ticket(requester=bob, application=shop.pk, environments=[production.pk])
    edited = edit(ticket, bob, application=None)
    assert edited.application is None
    assert not edited.environments.exists()
    assert edited.events.latest("id").changes["environments"] == [["Production"], []]


def test_another_organizations_environment_is_refused_on_edit(bob, shop, globex_app):
    ticket = make_ticket(requester=bob, application=shop.pk)
    with pytest.raises(InvalidChange) as refused:
        edit(ticket, bob, environments=[globex_app.environments.get().pk])
    assert refused.value.field == "environments"
    assert not Ticket.objects.get(pk=ticket.pk).environments.exists()


class TestStaleEdits:
    def test_an_edit_from_a_stale_copy_is_refused_naming_what_changed(self, bob, alice, ticket):
        copy_version = ticket.version
        edit(ticket, alice, priority="urgent", expected_version=copy_version)
        with pytest.raises(Conflict) as conflict:
            edit(ticket, bob, title="Mine", expected_version=copy_version)
        assert conflict.value.changed == ["priority"]
        assert "priority" in str(conflict.value)
        saved = Ticket.objects.get(pk=ticket.pk)
        assert saved.title == "Cannot log in"
        assert saved.priority.key == "urgent"
        assert saved.events.count() == 2

    def test_a_fresh_copy_is_accepted(self, bob, alice, ticket):
        edited = edit(ticket, alice, priority="urgent", expected_version=1)
        assert edit(ticket, bob, title="Mine", expected_version=edited.version).title == "Mine"

    def test_adding_a_response_never_conflicts(self, bob, alice, ticket):
        edit(ticket, alice, priority="urgent")
        stale = ticket  # still at version 1 in memory
        response = services.add_response(stale, acting_user=bob, via=Via.WEB, body="Any news?")
        assert response.pk is not None

    def test_a_response_does_not_make_an_open_copy_stale(self, bob, alice, ticket):
        services.add_response(ticket, acting_user=alice, via=Via.WEB, body="Looking")
        services.add_response(ticket, acting_user=alice, via=Via.WEB, body="Hm", internal=True)
        assert edit(ticket, bob, title="Mine", expected_version=1).title == "Mine"

    def test_internal_notes_are_not_named_to_a_customer(self, bob, alice, ticket):
        edit(ticket, alice, priority="high")
        services.add_response(ticket, acting_user=alice, via=Via.WEB, body="Psst", internal=True)
        with pytest.raises(Conflict) as conflict:
            edit(ticket, bob, title="Mine", expected_version=1)
        assert conflict.value.changed == ["priority"]


class TestProblemLinks:
    def test_an_incident_links_to_a_problem(self, alice, bob):
        problem = make_ticket(requester=bob, type="problem", title="Database failover")
        incident = make_ticket(requester=bob, type="incident")
        linked = edit(incident, alice, problem=f"#{problem.number}")
        assert linked.problem == problem
        event = linked.events.latest("id")
        assert event.kind == EventKind.PROBLEM_LINKED
        assert event.changes == {"problem": [None, f"#{problem.number}"]}

    @pytest.mark.parametrize(("source", "target"), [("question", "problem"), ("incident", "task")])
    def test_only_an_incident_links_and_only_to_a_problem(self, alice, bob, source, target):
        other = make_ticket(requester=bob, type=target)
        ticket = make_ticket(requester=bob, type=source)
        with pytest.raises(InvalidChange) as refused:
            edit(ticket, alice, problem=other.number)
        assert refused.value.field == "problem"

    @pytest.mark.parametrize("number", [999_999, "abc", "12\x00"])
    def test_an_unknown_problem_number_is_refused(self, alice, bob, number):
        incident = make_ticket(requester=bob, type="incident")
        with pytest.raises(InvalidChange) as refused:
            edit(incident, alice, problem=number)
        assert refused.value.field == "problem"

    def test_an_incident_that_becomes_a_question_loses_its_link(self, alice, bob):
        problem = make_ticket(requester=bob, type="problem")
        incident = edit(make_ticket(requester=bob, type="incident"), alice, problem=problem)
        question = edit(incident, bob, type="question")
        assert question.problem is None
        assert question.events.latest("id").changes["problem"] == [f"#{problem.number}", None]

    def test_a_customer_sees_their_own_organizations_problem(self, alice, bob):
        problem = make_ticket(requester=bob, type="problem", title="Database failover")
        incident = edit(make_ticket(requester=bob, type="incident"), alice, problem=problem)
        view = visible_problem(bob, incident)
        assert (view.number, view.title, view.status) == (
            problem.number,
            "Database failover",
            "open",
        )

    def test_another_organizations_problem_shows_its_status_only(self, alice, bob, carol):
        problem = make_ticket(requester=carol, type="problem", title="Globex secret")
        incident = edit(make_ticket(requester=bob, type="incident"), alice, problem=problem)
        edit(problem, alice, status=Status.RESOLVED)
        incident.refresh_from_db()
        view = visible_problem(bob, incident)
        assert (view.number, view.title) == (None, None)
        assert (view.status, view.status_label) == ("resolved", "Resolved")
        assert visible_problem(alice, incident).title == "Globex secret"

    def test_an_unlinked_ticket_has_no_problem_to_show(self, bob, ticket):
        assert visible_problem(bob, ticket) is None


def test_saving_a_description_unchanged_from_a_browser_changes_nothing(bob):
    """Browsers send textarea line breaks as CRLF; stored text uses LF on every channel."""
    ticket = make_ticket(requester=bob, description="line one\nline two")
    saved = services.update_ticket(
        ticket,
        acting_user=bob,
        via=Via.WEB,
        changes={"description": "line one\r\nline two"},
        expected_version=ticket.version,
    )
    assert saved.version == ticket.version
    assert saved.description == "line one\nline two"
    assert list(saved.events.values_list("kind", flat=True)) == ["created"]
