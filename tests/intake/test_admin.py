"""Mail in for admins: mailboxes and messages listed, held mail accepted or rejected,
processed mail kept; nobody but admins gets in."""

from __future__ import annotations

import pytest
from django.test import Client

from supportdesk.intake.models import InboundMessage, MessageState
from supportdesk.tickets.models import Ticket
from tests.intake.mail import deliver, plain

MESSAGES = "/admin/intake/inboundmessage/"
MAILBOXES = "/admin/intake/mailbox/"


@pytest.fixture
def as_dave(dave):
    client = Client()
    client.force_login(dave)
    return client


def act(client: Client, action: str, *messages: InboundMessage):
    return client.post(
        MESSAGES,
        {"action": action, "_selected_action": [m.pk for m in messages]},
        follow=True,
    )


def test_admins_see_mailboxes_and_messages_by_state(as_dave, bob):
    held = deliver(plain(sender="stranger@example.org", subject="Who am I"))
    done = deliver(plain(sender=bob.email, subject="Printer on fire"))
    assert (held.state, done.state) == (MessageState.HELD, MessageState.PROCESSED)
    page = as_dave.get(MESSAGES).content.decode()
    assert "Who am I" in page
    assert "Printer on fire" in page
    held_only = as_dave.get(MESSAGES, {"state__exact": "held"}).content.decode()
    assert "Who am I" in held_only
    assert "Printer on fire" not in held_only
    assert "support@" in as_dave.get(MAILBOXES).content.decode()
    assert as_dave.get(f"{MESSAGES}{held.pk}/change/").status_code == 200


def test_held_mail_is_accepted_or_rejected_and_processed_mail_is_kept(as_dave, acme, bob):
    acme.mail_domains = "example.org"
    acme.save()
    first = deliver(plain(sender="first@example.org", subject="Accept me"))
    second = deliver(plain(sender="second@example.org", subject="Reject me"))
    done = deliver(plain(sender=bob.email, subject="Keep me"))
    assert act(as_dave, "accept_messages", first).status_code == 200
    first.refresh_from_db()
    assert first.state == MessageState.PROCESSED
    assert Ticket.objects.filter(title="Accept me", organization=acme).exists()
    act(as_dave, "reject_messages", second)
    second.refresh_from_db()
    assert second.state == MessageState.REJECTED
    page = act(as_dave, "delete_messages", done, second).content.decode()
    assert "Left as they were" in page  # the processed one is kept
    assert InboundMessage.objects.filter(pk=done.pk).exists()
    assert not InboundMessage.objects.filter(pk=second.pk).exists()


@pytest.mark.parametrize("persona", ["alice", "bob", "carol"])
def test_only_admins_get_in(persona, request):
    client = Client()
    client.force_login(request.getfixturevalue(persona))
    for url in (MESSAGES, MAILBOXES):
        response = client.get(url)
        assert response.status_code in (302, 403)
        assert "/login/" in response.get("Location", "/login/")
