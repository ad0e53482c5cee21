from __future__ import annotations

from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile

from supportdesk.events.models import Via
from supportdesk.tickets import services
from supportdesk.tickets.models import Channel, Response, Status
from tests.factories import make_ticket


def file(name: str, content: bytes = b"data") -> ContentFile:
    return ContentFile(content, name=name)


def test_the_ticket_page_shows_the_fields_and_actions(as_bob, bob, shop):
    ticket = make_ticket(
        requester=bob,
        title="Slow checkout",
        tags=["Bug"],
        ccs=["ops@example.org"],
        application=shop.pk,
        environments=[shop.environments.get(name="Staging").pk],
    )
    html = as_bob.get(f"/tickets/{ticket.number}/").content.decode()
    for text in (
        "Slow checkout",
        "Open",
        "Created By",
        "Bob Customer",
        "Last Updated By",
        "Last Updated Time",
        "Bug",
        "ops@example.org",
        "Shop",
        "Staging",
        "<em>no</em>",
        "Update Ticket",
        "Add Response",
        "History",
    ):
        assert text in html, text
    assert f'action="/tickets/{ticket.number}/reopen/"' not in html  # open: nothing to re-open
    assert f'action="/tickets/{ticket.number}/close/"' not in html  # customers do not close


def test_an_unknown_number_and_another_organizations_ticket_are_404(as_bob, as_carol, bob):
    ticket = make_ticket(requester=bob)
    assert as_bob.get("/tickets/999999/").status_code == 404
    assert as_bob.get("/tickets/99999999999999999999/").status_code == 404
    for url in ("", "edit/", "respond/", "reopen/", "close/"):
        assert as_carol.get(f"/tickets/{ticket.number}/{url}").status_code == 404
        assert as_carol.post(f"/tickets/{ticket.number}/{url}", {"body": "x"}).status_code == 404
    response = as_carol.get(f"/tickets/{ticket.number}/")
    assert "Cannot log in" not in response.content.decode()


def test_a_customer_adds_a_response_with_an_attachment(as_bob, bob):
    ticket = make_ticket(requester=bob)
    response = as_bob.post(
        f"/tickets/{ticket.number}/respond/",
        {
            "body": "It is *still* broken",
            "attachments": [SimpleUploadedFile("shot.png", b"png")],
        },
    )
    added = Response.objects.get()
    assert response.status_code == 302
    assert response.url == f"/tickets/{ticket.number}/#response-{added.pk}"
    html = as_bob.get(f"/tickets/{ticket.number}/").content.decode()
    assert "It is <em>still</em> broken" in html
    assert "shot.png" in html
    assert "Response added" in html


def test_an_empty_response_names_the_field_and_adds_nothing(as_bob, bob):
    ticket = make_ticket(requester=bob)
    for body in ("", "   ", "a\x00b"):
        response = as_bob.post(f"/tickets/{ticket.number}/respond/", {"body": body})
        assert response.status_code == 400
        assert "body" in response.context["response_form"].errors
    assert not Response.objects.exists()


def test_a_requesters_response_moves_a_pending_ticket_to_open(as_bob, bob, alice):
    ticket = make_ticket(requester=bob, status=Status.PENDING)
    as_bob.post(f"/tickets/{ticket.number}/respond/", {"body": "Here is the log"})
    ticket.refresh_from_db()
    assert ticket.status == Status.OPEN


def test_an_internal_note_is_marked_for_agents_and_hidden_from_the_customer(as_alice, as_bob, bob):
    ticket = make_ticket(requester=bob)
    as_alice.post(
        f"/tickets/{ticket.number}/respond/",
        {
            "body": "Customer runs v1.2, secret detail",
            "internal": "on",
            "attachments": [SimpleUploadedFile("notes.txt", b"internal")],
        },
    )
    note = Response.objects.get()
    assert note.is_internal
    agent_page = as_alice.get(f"/tickets/{ticket.number}/").content.decode()
    assert "secret detail" in agent_page
    assert "Internal note</strong>" in agent_page
    customer_page = as_bob.get(f"/tickets/{ticket.number}/").content.decode()
    assert "secret detail" not in customer_page
    assert "notes.txt" not in customer_page
    assert "internal note" not in customer_page.lower()
    attachment = note.attachments.get()
    url = f"/tickets/{ticket.number}/attachments/{attachment.pk}/"
    assert as_bob.get(url).status_code == 404
    assert as_alice.get(url).status_code == 200


def test_a_customer_cannot_forge_an_internal_note(as_bob, bob):
    ticket = make_ticket(requester=bob)
    response = as_bob.post(f"/tickets/{ticket.number}/respond/", {"body": "x", "internal": "on"})
    assert response.status_code == 403
    assert "Only agents write internal notes." in response.content.decode()
    assert not Response.objects.exists()


def test_an_agent_logs_a_call_on_behalf_of_the_customer(as_alice, alice, bob):
    ticket = make_ticket(requester=bob)
    as_alice.post(
        f"/tickets/{ticket.number}/respond/",
        {
            "body": "Customer called: it works now",
            "channel": "phone",
            "on_behalf_of": bob.email,
        },
    )
    logged = Response.objects.get()
    assert (logged.author, logged.logged_by, logged.channel) == (bob, alice, Channel.PHONE)
    html = as_alice.get(f"/tickets/{ticket.number}/").content.decode()
    assert "logged by Alice Agent" in html


def test_a_call_for_another_organizations_customer_names_the_field(as_alice, bob, carol):
    ticket = make_ticket(requester=bob)
    response = as_alice.post(
        f"/tickets/{ticket.number}/respond/",
        {
            "body": "x",
            "channel": "phone",
            "on_behalf_of": carol.email,
        },
    )
    assert "on_behalf_of" in response.context["response_form"].errors
    assert not Response.objects.exists()


def test_a_customer_reopens_a_closed_ticket(as_bob, bob):
    ticket = make_ticket(requester=bob, status=Status.CLOSED)
    html = as_bob.get(f"/tickets/{ticket.number}/").content.decode()
    assert f'action="/tickets/{ticket.number}/reopen/"' in html
    assert as_bob.get(f"/tickets/{ticket.number}/reopen/").status_code == 405
    response = as_bob.post(f"/tickets/{ticket.number}/reopen/")
    assert response.status_code == 302
    ticket.refresh_from_db()
    assert ticket.status == Status.OPEN
    html = as_bob.get(response.url).content.decode()
    assert "is open again" in html
    assert 'Closed</span> → <span class="new">Open' in html


def test_reopening_an_open_ticket_says_why_and_changes_nothing(as_bob, bob):
    ticket = make_ticket(requester=bob)
    response = as_bob.post(f"/tickets/{ticket.number}/reopen/", follow=True)
    assert "is still open" in response.content.decode()
    ticket.refresh_from_db()
    assert ticket.version == 1


def test_an_agent_closes_a_ticket_and_a_customer_cannot(as_alice, as_bob, bob):
    ticket = make_ticket(requester=bob)
    assert as_bob.post(f"/tickets/{ticket.number}/close/").status_code == 403
    ticket.refresh_from_db()
    assert ticket.status == Status.OPEN
    response = as_alice.post(f"/tickets/{ticket.number}/close/")
    assert response.status_code == 302
    ticket.refresh_from_db()
    assert ticket.status == Status.CLOSED
    assert "is closed" in as_alice.get(response.url).content.decode()


def test_attachments_download_as_files_never_as_pages(as_bob, bob):
    ticket = make_ticket(requester=bob, attachments=[file("evil.html", b"<script>x</script>")])
    attachment = ticket.attachments.get()
    response = as_bob.get(f"/tickets/{ticket.number}/attachments/{attachment.pk}/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"] == 'attachment; filename="evil.html"'
    assert response["X-Content-Type-Options"] == "nosniff"
    assert b"".join(response.streaming_content) == b"<script>x</script>"


def test_a_safe_image_keeps_its_type_but_is_still_a_download(as_bob, bob):
    ticket = make_ticket(requester=bob, attachments=[file("shot.png", b"\x89PNG")])
    attachment = ticket.attachments.get()
    response = as_bob.get(f"/tickets/{ticket.number}/attachments/{attachment.pk}/")
    assert response["Content-Type"] == "image/png"
    assert response["Content-Disposition"].startswith("attachment;")


def test_attachments_of_other_tickets_and_organizations_are_404(as_bob, as_carol, bob):
    ticket = make_ticket(requester=bob, attachments=[file("a.txt")])
    other = make_ticket(requester=bob)
    attachment = ticket.attachments.get()
    assert as_carol.get(f"/tickets/{ticket.number}/attachments/{attachment.pk}/").status_code == 404
    assert as_bob.get(f"/tickets/{other.number}/attachments/{attachment.pk}/").status_code == 404
    assert as_bob.get(f"/tickets/{ticket.number}/attachments/999999/").status_code == 404


def test_a_linked_problem_of_another_organization_shows_only_that_it_exists(
    as_bob, as_alice, alice, bob, carol
):
    problem = make_ticket(requester=carol, type="problem", title="Globex storage bug")
    incident = make_ticket(requester=bob, type="incident")
    services.update_ticket(
        incident, acting_user=alice, via=Via.WEB, changes={"problem": problem.number}
    )
    customer_page = as_bob.get(f"/tickets/{incident.number}/").content.decode()
    assert "Linked to a known problem" in customer_page
    assert "Globex storage bug" not in customer_page
    assert "Globex storage bug" in as_alice.get(f"/tickets/{incident.number}/").content.decode()


def test_script_in_a_response_is_shown_as_text(as_bob, as_alice, bob):
    ticket = make_ticket(requester=bob)
    as_bob.post(f"/tickets/{ticket.number}/respond/", {"body": "<script>alert(1)</script>"})
    for client in (as_bob, as_alice):
        html = client.get(f"/tickets/{ticket.number}/").content.decode()
        assert "<script>alert" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_the_history_shows_each_change_from_and_to(as_alice, alice, bob):
    ticket = make_ticket(requester=bob)
    services.update_ticket(
        ticket, acting_user=alice, via=Via.WEB, changes={"priority": "urgent", "tags": ["Bug"]}
    )
    html = as_alice.get(f"/tickets/{ticket.number}/").content.decode()
    assert (
        'Priority</span>:\n            <span class="old">Normal</span> → <span class="new">Urgent</span>'
        in html
    )
    assert '<span class="old">—</span> → <span class="new">Bug</span>' in html
