"""Which ticket a message continues: references first, the subject tag only for insiders."""

from __future__ import annotations

import pytest

from supportdesk.intake.parse import parse_message
from supportdesk.intake.threads import find_ticket, referenced_ticket, strip_tag, tagged_ticket
from supportdesk.notify import ids
from tests.factories import make_ticket, make_user
from tests.intake.mail import deliver, plain

pytestmark = pytest.mark.django_db


def test_a_thread_root_of_another_domain_is_not_ours(bob):
    ticket = make_ticket(requester=bob)
    ours = parse_message(plain(sender="bob@acme.test", In_Reply_To=ids.thread_id(ticket.number)))
    theirs = parse_message(
        plain(sender="bob@acme.test", In_Reply_To=f"<ticket-{ticket.number}@evil.test>")
    )
    assert referenced_ticket(ours) == ticket
    assert referenced_ticket(theirs) is None


def test_in_reply_to_wins_over_older_references(bob):
    old, new = make_ticket(requester=bob), make_ticket(requester=bob)
    parsed = parse_message(
        plain(
            sender="bob@acme.test",
            In_Reply_To=ids.thread_id(new.number),
            References=f"{ids.thread_id(old.number)} {ids.thread_id(new.number)}",
        )
    )
    assert referenced_ticket(parsed) == new


def test_the_subject_tag_counts_for_requester_cc_agent_and_organization(bob, carol, alice, acme):
    ticket = make_ticket(requester=bob, ccs=["carol@globex.test"])
    colleague = make_user("eve@acme.test", org=acme)
    subject = f"Re: [#{ticket.number}] x"
    for insider in (bob, alice, colleague, carol):
        assert tagged_ticket(subject, insider) == ticket
    stranger = make_user("mallory@else.test")
    assert tagged_ticket(subject, stranger) is None
    # carol is CC'd but may not see another organization's ticket: it does not thread.
    parsed = parse_message(plain(sender="carol@globex.test", subject=subject))
    assert find_ticket(parsed, carol) is None
    assert find_ticket(parsed, bob) == ticket


def test_a_received_message_id_threads_only_once_it_made_a_ticket(bob):
    first = deliver(plain(sender="bob@acme.test", message_id="<root@acme.test>"))
    parsed = parse_message(plain(sender="bob@acme.test", In_Reply_To="<root@acme.test>"))
    assert referenced_ticket(parsed) == first.ticket
    unknown = parse_message(plain(sender="bob@acme.test", In_Reply_To="<nothing@acme.test>"))
    assert referenced_ticket(unknown) is None


@pytest.mark.parametrize(
    ("subject", "title"),
    [("Re: [#1042] Disk full", "Disk full"), ("RE: Fwd: AW: hello", "hello"), ("[#7]", "")],
)
def test_titles_lose_reply_prefixes_and_tags(subject, title):
    assert strip_tag(subject) == title
