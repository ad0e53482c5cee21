"""The agent workspace's inbound mail page: held, quarantined and rejected mail, and the
buttons that decide on it."""

from __future__ import annotations

import re
import zoneinfo

import pytest
from django.utils import timezone

from supportdesk.intake.models import InboundMessage, MessageState
from supportdesk.tickets.models import Ticket
from tests.intake.mail import deliver, held_message, plain, quarantined_message
from tests.web.pages import logged_in

PAGE = "/agent/mail/"


@pytest.fixture
def held(acme):
    return held_message(acme)


@pytest.fixture
def quarantined(bob):
    return quarantined_message(bob)


def _follow(client, url, **data):
    return client.post(url, data, follow=True)


def test_held_mail_is_listed_first_with_labelled_buttons(as_alice, held, quarantined):
    page = as_alice.get(PAGE)
    assert page.status_code == 200
    html = page.content.decode()
    assert "Who am I" in html
    assert "new@example.org" in html
    assert "Try me again" not in html  # another tab
    assert f'action="/agent/mail/{held.pk}/accept/"' in html
    assert f'action="/agent/mail/{held.pk}/reject/"' in html
    assert f'aria-label="Accept message {held.pk} from new@example.org"' in html
    assert "csrfmiddlewaretoken" in html
    tab = as_alice.get(PAGE, {"state": "quarantined"}).content.decode()
    assert "Try me again" in tab
    assert "Parser exploded" in tab
    assert f'action="/agent/mail/{quarantined.pk}/reprocess/"' in tab
    assert f'action="/agent/mail/{quarantined.pk}/delete/"' in tab
    assert "Who am I" not in tab


def test_the_link_is_in_the_agents_navigation_only(as_alice, as_bob):
    assert f'href="{PAGE}"' in as_alice.get("/tickets/").content.decode()
    assert f'href="{PAGE}"' not in as_bob.get("/tickets/").content.decode()


def test_empty_tabs_say_so(as_alice):
    assert "No held mail" in as_alice.get(PAGE).content.decode()
    assert "No quarantined mail" in as_alice.get(PAGE, {"state": "quarantined"}).content.decode()
    assert "No rejected mail" in as_alice.get(PAGE, {"state": "rejected"}).content.decode()


def test_times_are_in_the_agents_zone(alice, held):
    alice.time_zone = "Asia/Tokyo"
    alice.save()
    html = logged_in(alice).get(PAGE).content.decode()
    tokyo = timezone.localtime(held.received_at, zoneinfo.ZoneInfo("Asia/Tokyo"))
    assert tokyo.strftime("%H:%M") in html
    assert (
        timezone.localtime(held.received_at, zoneinfo.ZoneInfo("UTC")).strftime("%H:%M") not in html
    )


def test_accepting_held_mail_opens_its_ticket(as_alice, held, acme):
    page = _follow(as_alice, f"/agent/mail/{held.pk}/accept/")
    assert page.redirect_chain[-1][0] == f"{PAGE}?state=held"
    held.refresh_from_db()
    assert held.state == MessageState.PROCESSED
    assert f"#{held.ticket.number}" in page.content.decode()
    assert held.ticket.organization == acme
    assert "No held mail" in page.content.decode()


def test_rejecting_held_mail_keeps_it_under_rejected(as_alice, held):
    page = _follow(as_alice, f"/agent/mail/{held.pk}/reject/")
    assert "Message rejected" in page.content.decode()
    held.refresh_from_db()
    assert held.state == MessageState.REJECTED
    assert "Who am I" in as_alice.get(PAGE, {"state": "rejected"}).content.decode()


def test_quarantined_mail_is_reprocessed_or_deleted(as_alice, quarantined, bob):
    page = _follow(as_alice, f"/agent/mail/{quarantined.pk}/reprocess/")
    assert "processed again" in page.content.decode()
    quarantined.refresh_from_db()
    assert quarantined.state == MessageState.PROCESSED
    assert Ticket.objects.filter(title="Try me again", requester=bob).count() == 1
    other = deliver(plain(sender=bob.email, subject="Junk"))
    InboundMessage.objects.filter(pk=other.pk).update(state=MessageState.QUARANTINED)
    page = _follow(as_alice, f"/agent/mail/{other.pk}/delete/")
    assert "Message deleted" in page.content.decode()
    assert not InboundMessage.objects.filter(pk=other.pk).exists()


def test_a_wrong_state_answers_with_a_message_and_changes_nothing(as_alice, quarantined, held):
    page = _follow(as_alice, f"/agent/mail/{quarantined.pk}/accept/")
    assert page.status_code == 200
    assert re.search(
        r"message-error[^>]*>Only a held message can be accepted", page.content.decode()
    )
    quarantined.refresh_from_db()
    assert quarantined.state == MessageState.QUARANTINED
    _follow(as_alice, f"/agent/mail/{held.pk}/delete/")  # held mail may go as spam
    assert not InboundMessage.objects.filter(pk=held.pk).exists()


def test_actions_are_post_only_and_unknown_ones_404(as_alice, held):
    assert as_alice.get(f"/agent/mail/{held.pk}/accept/").status_code == 405
    assert as_alice.post(f"/agent/mail/{held.pk}/explode/").status_code == 404
    assert as_alice.post(f"/agent/mail/{10**9}/accept/").status_code == 404
    held.refresh_from_db()
    assert held.state == MessageState.HELD


def test_pages_of_held_mail(as_alice, acme):
    acme.mail_domains = "example.org"
    acme.save()
    for i in range(27):
        deliver(plain(sender=f"s{i}@example.org", subject=f"Held {i:02d}"))
    first = as_alice.get(PAGE).content.decode()
    assert "Page 1 of 2 (27 messages)" in first
    assert "Held 26" in first
    assert "Held 01" not in first
    second = as_alice.get(PAGE, {"page": 2}).content.decode()
    assert "Held 01" in second
    assert "Held 00" in second
    assert "Held 26" not in second


@pytest.mark.parametrize("persona", ["as_bob", "as_carol"])
def test_customers_get_404(persona, request, held):
    client = request.getfixturevalue(persona)
    assert client.get(PAGE).status_code == 404
    for action in ("accept", "reject", "reprocess", "delete"):
        assert client.post(f"/agent/mail/{held.pk}/{action}/").status_code == 404
    held.refresh_from_db()
    assert held.state == MessageState.HELD


def test_anonymous_is_sent_to_login(client, held):
    assert "login" in client.get(PAGE)["Location"]
    assert "login" in client.post(f"/agent/mail/{held.pk}/reject/")["Location"]
    held.refresh_from_db()
    assert held.state == MessageState.HELD


@pytest.fixture
def stranger(db):
    """Held mail from a domain no organization names: the agent must say whose it is."""
    message = deliver(plain(sender="Someone@Nowhere.Example", subject="Whose am I"))
    assert message.state == MessageState.HELD
    return message


def test_held_mail_offers_every_organization_by_name(as_alice, held, acme, globex):
    globex.name = "<b>Globex</b>"
    globex.save()
    html = as_alice.get(PAGE).content.decode()
    datalist = re.search(r'<datalist id="organization-names">(.*?)</datalist>', html, re.S)
    assert datalist is not None
    assert re.findall(r'<option value="([^"]*)">', datalist.group(1)) == [
        "&lt;b&gt;Globex&lt;/b&gt;",
        acme.name,
    ]  # by name, escaped
    assert 'list="organization-names"' in html
    assert f'<label for="organization-{held.pk}"' in html
    assert "organization-names" not in as_alice.get(PAGE, {"state": "rejected"}).content.decode()


def test_accepting_mail_from_an_unknown_domain_needs_an_organization(as_alice, stranger):
    page = _follow(as_alice, f"/agent/mail/{stranger.pk}/accept/")
    assert "Choose the organization someone@nowhere.example belongs to." in page.content.decode()
    stranger.refresh_from_db()
    assert stranger.state == MessageState.HELD


def test_an_organization_that_does_not_exist_is_refused(as_alice, stranger):
    page = _follow(as_alice, f"/agent/mail/{stranger.pk}/accept/", organization="Initech")
    assert "There is no organization named Initech." in page.content.decode()
    stranger.refresh_from_db()
    assert stranger.state == MessageState.HELD
    assert not Ticket.objects.exists()


def test_the_named_organization_gets_the_sender_and_the_ticket(as_alice, stranger, acme, globex):
    page = _follow(
        as_alice, f"/agent/mail/{stranger.pk}/accept/", organization=f"  {globex.name.upper()} "
    )
    stranger.refresh_from_db()
    assert stranger.state == MessageState.PROCESSED
    assert f"#{stranger.ticket.number}" in page.content.decode()
    assert stranger.ticket.organization == globex
    assert stranger.ticket.requester.email == "someone@nowhere.example"
    assert stranger.ticket.requester.organization == globex
