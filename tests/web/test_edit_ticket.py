from __future__ import annotations

from supportdesk.events.models import Event, Via
from supportdesk.tickets import services
from supportdesk.tickets.models import Status
from tests.factories import make_ticket, make_user
from tests.web.pages import customer_form_data, edit_form_data


def edit(client, ticket, data):
    return client.post(f"/tickets/{ticket.number}/edit/", data)


def test_the_customer_form_has_no_status_or_agent_fields(as_bob, bob):
    ticket = make_ticket(requester=bob)
    html = as_bob.get(f"/tickets/{ticket.number}/edit/").content.decode()
    assert 'name="title"' in html
    assert f'name="version" value="{ticket.version}"' in html
    for name in ("status", "assignee", "problem", "requester"):
        assert f'name="{name}"' not in html


def test_the_agent_form_has_status_assignee_problem_and_requester(as_alice, bob):
    ticket = make_ticket(requester=bob)
    html = as_alice.get(f"/tickets/{ticket.number}/edit/").content.decode()
    for name in ("status", "assignee", "problem", "requester"):
        assert f'<label for="id_{name}">' in html


def test_a_customer_edits_the_fields_they_set(as_bob, bob, shop):
    ticket = make_ticket(requester=bob)
    staging = shop.environments.get(name="Staging")
    response = edit(
        as_bob,
        ticket,
        customer_form_data(
            ticket,
            title="New title",
            priority="urgent",
            tags=["Bug", "Question"],
            application=shop.pk,
            environments=[staging.pk],
            ccs="a@example.org; b@example.org",
        ),
    )
    assert response.status_code == 302
    ticket.refresh_from_db()
    assert (ticket.title, ticket.priority.key, ticket.application) == ("New title", "urgent", shop)
    assert [t.name for t in ticket.tags.all()] == ["Bug", "Question"]
    assert list(ticket.environments.all()) == [staging]
    assert [c.email for c in ticket.ccs.all()] == ["a@example.org", "b@example.org"]
    changes = ticket.events.latest("id").changes
    assert set(changes) == {"title", "priority", "tags", "application", "environments", "ccs"}


def test_an_unchanged_form_changes_nothing(as_bob, bob):
    ticket = make_ticket(requester=bob, ccs=["a@example.org"], tags=["Bug"])
    response = edit(as_bob, ticket, customer_form_data(ticket))
    assert response.status_code == 302
    assert "Nothing was changed." in as_bob.get(response.url).content.decode()
    ticket.refresh_from_db()
    assert ticket.version == 1
    assert ticket.events.count() == 1


def test_a_stale_edit_is_refused_naming_what_changed_and_saves_nothing(as_bob, bob, alice):
    ticket = make_ticket(requester=bob)
    stale = customer_form_data(ticket, title="My new title")
    services.update_ticket(ticket, acting_user=alice, via=Via.WEB, changes={"priority": "high"})
    response = edit(as_bob, ticket, stale)
    assert response.status_code == 400
    errors = response.context["form"].non_field_errors()
    assert any("priority" in error and "Alice Agent" in error for error in errors), errors
    assert "changed since you opened it" in response.content.decode()
    ticket.refresh_from_db()
    assert (ticket.title, ticket.priority.key, ticket.version) == ("Cannot log in", "high", 2)


def test_a_forged_status_from_a_customer_is_refused(as_bob, bob):
    ticket = make_ticket(requester=bob)
    response = edit(as_bob, ticket, customer_form_data(ticket, status=Status.CLOSED, title="X"))
    assert response.status_code == 403
    assert "You cannot change status." in response.content.decode()
    ticket.refresh_from_db()
    assert (ticket.status, ticket.title, ticket.version) == (Status.OPEN, "Cannot log in", 1)


def test_a_forged_assignee_from_a_customer_is_refused(as_bob, bob, alice):
    ticket = make_ticket(requester=bob)
    response = edit(as_bob, ticket, customer_form_data(ticket, assignee=alice.pk))
    assert response.status_code == 403
    ticket.refresh_from_db()
    assert ticket.assignee is None


def test_an_agent_changes_status_assignee_and_requester(as_alice, alice, bob, acme):
    colleague = make_user("eve@acme.test", org=acme)
    ticket = make_ticket(requester=bob)
    response = edit(
        as_alice,
        ticket,
        edit_form_data(
            ticket,
            status=Status.PENDING,
            assignee=alice.pk,
            requester=colleague.email,
        ),
    )
    assert response.status_code == 302
    ticket.refresh_from_db()
    assert (ticket.status, ticket.assignee, ticket.requester) == (Status.PENDING, alice, colleague)


def test_an_agent_links_an_incident_to_a_problem(as_alice, bob):
    problem = make_ticket(requester=bob, type="problem")
    incident = make_ticket(requester=bob, type="incident")
    edit(as_alice, incident, edit_form_data(incident, problem=problem.number))
    incident.refresh_from_db()
    assert incident.problem == problem


def test_a_refused_value_is_shown_on_its_field(as_alice, bob):
    question = make_ticket(requester=bob, type="question")
    other = make_ticket(requester=bob, type="question")
    response = edit(as_alice, question, edit_form_data(question, problem=other.number))
    assert response.status_code == 400
    assert "Only an incident links to a problem." in response.context["form"].errors["problem"]
    assert Event.objects.filter(ticket=question).count() == 1


def test_a_requester_of_another_organization_is_refused(as_alice, bob, carol):
    ticket = make_ticket(requester=bob)
    response = edit(as_alice, ticket, edit_form_data(ticket, requester=carol.email))
    assert "requester" in response.context["form"].errors
    ticket.refresh_from_db()
    assert ticket.requester == bob


def test_a_nul_byte_or_empty_title_in_an_edit_names_the_field(as_bob, bob):
    ticket = make_ticket(requester=bob)
    for title in ("bad\x00title", ""):
        response = edit(as_bob, ticket, customer_form_data(ticket, title=title))
        assert "title" in response.context["form"].errors
    ticket.refresh_from_db()
    assert ticket.title == "Cannot log in"


def test_script_in_an_edited_title_is_shown_as_text(as_bob, bob):
    ticket = make_ticket(requester=bob)
    edit(as_bob, ticket, customer_form_data(ticket, title="<script>alert(1)</script>"))
    html = as_bob.get(f"/tickets/{ticket.number}/").content.decode()
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
