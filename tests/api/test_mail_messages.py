"""Inbound mail through the API: agents list and decide; customers learn nothing."""

from __future__ import annotations

import pytest

from supportdesk.intake.models import InboundMessage, MessageState
from supportdesk.tickets.models import Ticket
from tests.intake.mail import deliver, held_message, plain, quarantined_message


@pytest.fixture
def held(acme):
    return held_message(acme)


@pytest.fixture
def processed(bob):
    message = deliver(plain(sender=bob.email, subject="Printer on fire"))
    assert message.state == MessageState.PROCESSED
    return message


@pytest.fixture
def quarantined(bob):
    return quarantined_message(bob)


def test_an_agent_lists_messages_by_state_with_their_fields(as_alice, held, processed):
    everything = as_alice.get("/mail/messages")
    assert everything.status_code == 200
    items = everything.json()["items"]
    assert [m["id"] for m in items] == [processed.pk, held.pk]  # newest first
    only_held = as_alice.get("/mail/messages", {"state": "held"}).json()["items"]
    assert [m["id"] for m in only_held] == [held.pk]
    item = only_held[0]
    assert item["state"] == "held"
    assert item["source"] == "smtp"
    assert item["mailbox"].startswith("support@")
    assert item["from_address"] == "new@example.org"
    assert item["subject"] == "Who am I"
    assert item["message_id"] == held.message_id
    assert item["ticket"] is None
    done = as_alice.get(f"/mail/messages/{processed.pk}").json()
    assert done["ticket"] == processed.ticket.number
    assert done["processed_at"] is not None


def test_message_pages_follow_the_cursor_without_gaps_or_repeats(as_alice, bob):
    made = [deliver(plain(sender=bob.email, subject=f"Mail {i}")).pk for i in range(5)]
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        body = as_alice.get("/mail/messages", params).json()
        seen += [m["id"] for m in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
        # A message arriving meanwhile lands on the first page, not in the middle.
        if pages == 1:
            deliver(plain(sender=bob.email, subject="Late"))
    assert seen == sorted(made, reverse=True)
    assert pages == 3


def test_forged_mail_cursors_and_unknown_states_are_refused(as_alice, held):
    assert as_alice.get("/mail/messages", {"cursor": "forged"}).status_code == 400
    assert as_alice.get("/mail/messages", {"state": "lost"}).status_code == 422
    assert as_alice.get("/mail/messages", {"limit": 0}).status_code == 422


def test_an_agent_accepts_and_rejects_held_mail(as_alice, held, acme):
    accepted = as_alice.post(f"/mail/messages/{held.pk}/accept")
    assert accepted.status_code == 200, accepted.content
    assert accepted.json()["state"] == "processed"
    ticket = Ticket.objects.get(number=accepted.json()["ticket"])
    assert ticket.title == "Who am I"
    assert ticket.organization == acme
    again = as_alice.post(f"/mail/messages/{held.pk}/reject")
    assert again.status_code == 422
    assert again["Content-Type"] == "application/problem+json"
    assert "held" in again.json()["detail"]


def test_accept_names_the_organization_of_an_unknown_domain(as_alice, globex):
    message = deliver(plain(sender="someone@nowhere.test", subject="Lost soul"))
    assert message.state == MessageState.HELD
    without = as_alice.post(f"/mail/messages/{message.pk}/accept")
    assert without.status_code == 422
    message.refresh_from_db()
    assert message.state == MessageState.HELD
    bad = as_alice.post(f"/mail/messages/{message.pk}/accept", {"organization": 10**9})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "organization"
    assert as_alice.post(f"/mail/messages/{message.pk}/accept", {"nope": 1}).status_code == 422
    named = as_alice.post(f"/mail/messages/{message.pk}/accept", {"organization": globex.pk})
    assert named.status_code == 200, named.content
    assert Ticket.objects.get(number=named.json()["ticket"]).organization == globex


def test_rejected_mail_is_kept_and_can_then_be_deleted(as_alice, held):
    rejected = as_alice.post(f"/mail/messages/{held.pk}/reject")
    assert rejected.status_code == 200
    assert rejected.json()["state"] == "rejected"
    assert as_alice.get("/mail/messages", {"state": "rejected"}).json()["items"][0]["id"] == held.pk
    deleted = as_alice.client.delete(f"/api/v1/mail/messages/{held.pk}", **as_alice.headers)
    assert deleted.status_code == 204
    assert not InboundMessage.objects.filter(pk=held.pk).exists()
    gone = as_alice.get(f"/mail/messages/{held.pk}")
    assert gone.status_code == 404
    assert gone["Content-Type"] == "application/problem+json"


def test_quarantined_mail_is_reprocessed(as_alice, quarantined):
    answer = as_alice.post(f"/mail/messages/{quarantined.pk}/reprocess")
    assert answer.status_code == 200, answer.content
    assert answer.json()["state"] == "processed"
    assert answer.json()["error"] == ""
    assert Ticket.objects.get(number=answer.json()["ticket"]).title == "Try me again"


def test_the_raw_message_downloads_as_received(as_alice, processed):
    answer = as_alice.get(f"/mail/messages/{processed.pk}/raw")
    assert answer.status_code == 200
    assert answer["Content-Type"] == "message/rfc822"
    assert "attachment" in answer["Content-Disposition"]
    body = b"".join(answer.streaming_content)
    assert body == plain(sender=processed.from_address, subject="Printer on fire")


def test_wrong_states_get_a_clear_4xx_and_change_nothing(as_alice, processed, held):
    for action in ("accept", "reject", "reprocess"):
        answer = as_alice.post(f"/mail/messages/{processed.pk}/{action}")
        assert answer.status_code == 422, action
        assert answer.json()["errors"][0]["field"] == "state"
    kept = as_alice.client.delete(f"/api/v1/mail/messages/{processed.pk}", **as_alice.headers)
    assert kept.status_code == 422
    assert as_alice.post(f"/mail/messages/{held.pk}/reprocess").status_code == 422
    processed.refresh_from_db()
    held.refresh_from_db()
    assert (processed.state, held.state) == (MessageState.PROCESSED, MessageState.HELD)


@pytest.mark.parametrize("message_id", [0, 999999, 2**40])
def test_unknown_message_ids_are_404(as_alice, message_id):
    assert as_alice.get(f"/mail/messages/{message_id}").status_code == 404
    assert as_alice.get(f"/mail/messages/{message_id}/raw").status_code == 404
    for action in ("accept", "reject", "reprocess"):
        assert as_alice.post(f"/mail/messages/{message_id}/{action}").status_code == 404
    assert as_alice.get("/mail/messages/not-a-number").status_code in (404, 422)


@pytest.mark.parametrize("persona", ["as_bob", "as_carol"])
def test_customers_get_404_on_every_mail_operation(persona, request, held, processed):
    client = request.getfixturevalue(persona)
    answers = [
        client.get("/mail/messages"),
        client.get(f"/mail/messages/{held.pk}"),
        client.get(f"/mail/messages/{processed.pk}/raw"),
        client.post(f"/mail/messages/{held.pk}/accept"),
        client.post(f"/mail/messages/{held.pk}/reject"),
        client.post(f"/mail/messages/{processed.pk}/reprocess"),
        client.client.delete(f"/api/v1/mail/messages/{held.pk}", **client.headers),
    ]
    assert [a.status_code for a in answers] == [404] * len(answers)
    assert all(a["Content-Type"] == "application/problem+json" for a in answers)
    assert all("Who am I" not in a.content.decode() for a in answers)
    held.refresh_from_db()
    assert held.state == MessageState.HELD


def test_anonymous_gets_401_on_every_mail_operation(anonymous, held):
    answers = [
        anonymous.get("/mail/messages"),
        anonymous.get(f"/mail/messages/{held.pk}"),
        anonymous.get(f"/mail/messages/{held.pk}/raw"),
        anonymous.post(f"/mail/messages/{held.pk}/accept"),
        anonymous.post(f"/mail/messages/{held.pk}/reject"),
        anonymous.post(f"/mail/messages/{held.pk}/reprocess"),
        anonymous.client.delete(f"/api/v1/mail/messages/{held.pk}"),
    ]
    assert [a.status_code for a in answers] == [401] * len(answers)
    held.refresh_from_db()
    assert held.state == MessageState.HELD
