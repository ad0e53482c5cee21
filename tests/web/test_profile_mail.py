"""Mail preferences on the profile page: what each user is offered, and that they are kept."""

from __future__ import annotations

import re

from supportdesk.events.models import Event, Via
from supportdesk.notify.deliveries import planned
from supportdesk.tickets import services
from tests.factories import make_ticket

OPTIONAL = "Mail me about field changes and other optional notices"
UNASSIGNED = "Mail me about customer responses on unassigned tickets"


def is_ticked(html: str, name: str) -> bool:
    [tag] = re.findall(rf'<input type="checkbox" name="{name}"[^>]*>', html)
    return " checked" in tag


def profile_post(client, **fields):
    data = {"form": "profile", "name": "", "time_zone": "UTC"}
    data.update({name: "on" for name, on in fields.items() if on})
    return client.post("/profile/", data)


def test_a_customer_is_offered_optional_mail_only_and_it_starts_on(as_bob):
    html = as_bob.get("/profile/").content.decode()
    assert OPTIONAL in html
    assert UNASSIGNED not in html
    assert is_ticked(html, "mail_optional")


def test_an_agent_is_offered_both_and_both_start_on(as_alice):
    html = as_alice.get("/profile/").content.decode()
    assert OPTIONAL in html
    assert UNASSIGNED in html
    assert is_ticked(html, "mail_optional")
    assert is_ticked(html, "mail_unassigned")


def test_unticking_a_box_turns_that_mail_off_and_ticking_it_on_again(as_alice, alice):
    assert profile_post(as_alice, mail_optional=True).status_code == 302
    alice.refresh_from_db()
    assert (alice.mail_optional, alice.mail_unassigned) == (True, False)
    html = as_alice.get("/profile/").content.decode()
    assert is_ticked(html, "mail_optional")
    assert not is_ticked(html, "mail_unassigned")

    assert profile_post(as_alice, mail_unassigned=True).status_code == 302
    alice.refresh_from_db()
    assert (alice.mail_optional, alice.mail_unassigned) == (False, True)


def test_a_customer_cannot_sign_up_for_agents_notices(as_bob, bob):
    bob.mail_unassigned = False
    bob.save()
    assert profile_post(as_bob, mail_optional=False, mail_unassigned=True).status_code == 302
    bob.refresh_from_db()
    assert (bob.mail_optional, bob.mail_unassigned) == (False, False)


def test_a_saved_preference_changes_who_is_mailed(as_bob, bob, alice):
    ticket = make_ticket(requester=bob)
    profile_post(as_bob, mail_optional=False)
    services.update_ticket(ticket, acting_user=alice, via=Via.WEB, changes={"priority": "high"})
    assert [row.recipient for row in planned(Event.objects.latest("id"))] == []
    services.add_response(ticket, acting_user=alice, via=Via.WEB, body="An answer")
    assert [row.recipient for row in planned(Event.objects.latest("id"))] == [bob.email]
