from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from supportdesk.events.models import Event
from supportdesk.tickets.models import Attachment, Channel, Ticket
from tests.factories import make_app


def form(**changes) -> dict:
    data = {
        "type": "incident",
        "priority": "high",
        "application": "",
        "title": "Checkout is down",
        "description": "Since **09:00**.",
        "tags": ["Bug"],
        "ccs": "ops@example.org,\nlead@example.org",
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


def test_the_form_offers_every_field_with_a_label(as_bob, shop):
    html = as_bob.get("/tickets/new/").content.decode()
    for name in (
        "type",
        "priority",
        "application",
        "environments",
        "title",
        "description",
        "ccs",
        "attachments",
    ):
        assert f'<label for="id_{name}">' in html
    assert "<legend>Tags</legend>" in html
    assert 'name="requester"' not in html  # customers open tickets for themselves
    assert 'name="attachments" multiple' in html
    assert 'hx-get="/tickets/environments/"' in html


def test_a_customer_creates_a_ticket_with_an_attachment(as_bob, bob, shop):
    production = shop.environments.get(name="Production")
    upload = SimpleUploadedFile("trace.log", b"line 1\nline 2\n", content_type="text/plain")
    response = as_bob.post(
        "/tickets/new/",
        form(
            application=shop.pk,
            environments=[production.pk],
            attachments=[upload],
        ),
    )
    ticket = Ticket.objects.get()
    assert response.status_code == 302
    assert response.url == f"/tickets/{ticket.number}/"
    assert (ticket.title, ticket.type.key, ticket.priority.key) == (
        "Checkout is down",
        "incident",
        "high",
    )
    assert ticket.requester == bob
    assert ticket.application == shop
    assert list(ticket.environments.all()) == [production]
    assert [t.name for t in ticket.tags.all()] == ["Bug"]
    assert sorted(c.email for c in ticket.ccs.all()) == ["lead@example.org", "ops@example.org"]
    attachment = ticket.attachments.get()
    assert (attachment.filename, attachment.size) == ("trace.log", 14)
    page = as_bob.get(response.url).content.decode()
    assert f"Ticket #{ticket.number} is created." in page
    assert "<strong>09:00</strong>" in page
    assert "trace.log" in page


def test_an_agent_logs_a_phone_call_as_a_ticket_for_a_customer(as_alice, alice, bob):
    response = as_alice.post("/tickets/new/", form(requester=bob.email, channel="phone"))
    assert response.status_code == 302
    ticket = Ticket.objects.get()
    assert (ticket.requester, ticket.created_by, ticket.channel) == (bob, alice, Channel.PHONE)
    assert ticket.organization == bob.organization


def test_an_agent_must_name_a_known_requester(as_alice):
    response = as_alice.post("/tickets/new/", form(requester="nobody@example.test"))
    assert "requester" in response.context["form"].errors
    response = as_alice.post("/tickets/new/", form(requester=""))
    assert "requester" in response.context["form"].errors
    assert not Ticket.objects.exists()


def assert_refused(response, field: str) -> None:
    assert response.status_code == 400
    assert field in response.context["form"].errors, response.context["form"].errors
    assert not Ticket.objects.exists()
    assert not Event.objects.exists()
    assert not Attachment.objects.exists()


def test_a_missing_title_names_the_field(as_bob):
    assert_refused(as_bob.post("/tickets/new/", form(title="")), "title")


def test_an_environment_of_another_organizations_application_is_refused(as_bob, shop, globex):
    foreign = make_app(globex, "Intranet").environments.first()
    response = as_bob.post("/tickets/new/", form(application=shop.pk, environments=[foreign.pk]))
    assert_refused(response, "environments")


def test_another_organizations_application_is_refused(as_bob, globex):
    foreign = make_app(globex, "Intranet")
    assert_refused(as_bob.post("/tickets/new/", form(application=foreign.pk)), "application")


def test_an_environment_of_another_application_is_refused_by_the_service(as_bob, acme, shop):
    other = make_app(acme, "Billing").environments.first()
    response = as_bob.post("/tickets/new/", form(application=shop.pk, environments=[other.pk]))
    assert_refused(response, "environments")
    assert "Shop" in str(response.context["form"].errors["environments"])


@pytest.mark.parametrize("field", ["title", "description", "ccs"])
def test_a_nul_byte_in_a_text_field_names_the_field(as_bob, field):
    value = {"ccs": "ops@exam\x00ple.org"}.get(field, "bad\x00text")
    assert_refused(as_bob.post("/tickets/new/", form(**{field: value})), field)


def test_a_nul_byte_in_the_requester_names_the_field(as_alice):
    assert_refused(as_alice.post("/tickets/new/", form(requester="b\x00b@acme.test")), "requester")


def test_a_bad_cc_address_names_the_field(as_bob):
    response = as_bob.post("/tickets/new/", form(ccs="ops@example.org, not-an-address"))
    assert_refused(response, "ccs")
    assert "not-an-address" in response.content.decode()


def test_an_oversized_upload_names_the_field(as_bob, settings):
    settings.UPLOAD_MAX_BYTES = 10
    upload = SimpleUploadedFile("big.bin", b"x" * 11)
    response = as_bob.post("/tickets/new/", form(attachments=[upload]))
    assert_refused(response, "attachments")
    assert "big.bin is larger than" in response.content.decode()


def test_an_empty_upload_names_the_field(as_bob):
    upload = SimpleUploadedFile("empty.txt", b"")
    response = as_bob.post("/tickets/new/", form(attachments=[upload]))
    assert_refused(response, "attachments")
    assert "empty.txt is empty" in response.content.decode()


def test_an_unknown_type_names_the_field(as_bob):
    assert_refused(as_bob.post("/tickets/new/", form(type="rumour")), "type")


def test_a_customer_cannot_forge_a_channel_or_requester(as_bob, carol):
    response = as_bob.post("/tickets/new/", form(requester=carol.email, channel="phone"))
    assert response.status_code == 302  # fields a customer does not have are not read
    ticket = Ticket.objects.get()
    assert (ticket.requester.email, ticket.channel) == ("bob@acme.test", Channel.WEB)


def test_script_typed_into_fields_is_shown_as_text(as_bob, as_alice):
    script = "<script>alert(1)</script>"
    response = as_bob.post(
        "/tickets/new/",
        form(
            title=f"XSS {script}",
            description=f"Typed {script} here",
            ccs="ops@example.org",
        ),
    )
    ticket = Ticket.objects.get()
    assert ticket.title == f"XSS {script}"  # kept as typed
    for client in (as_bob, as_alice):
        for url in (response.url, "/tickets/?view=all", f"/tickets/{ticket.number}/edit/"):
            html = client.get(url).content.decode()
            assert "<script>alert" not in html
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;script&gt;" in as_alice.get("/agent/open/").content.decode()


def test_script_typed_as_a_cc_is_shown_as_text_in_the_error(as_bob):
    response = as_bob.post("/tickets/new/", form(ccs="<script>alert(1)</script>"))
    assert_refused(response, "ccs")
    html = response.content.decode()
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_the_form_defaults_to_a_normal_question_not_an_urgent_incident(as_bob):
    form = as_bob.get("/tickets/new/").context["form"]
    assert (form["type"].value(), form["priority"].value()) == ("question", "normal")
