"""Who is mailed about each change: the outbox runs for real (mail written to files), and the
delivery rows it leaves say who got what."""

from __future__ import annotations

import pytest

from supportdesk.accounts.models import User
from supportdesk.events import tasks
from supportdesk.events.models import Event, EventKind, HandlerRun, RunState, Via
from supportdesk.notify.models import DeliveryState, MailDelivery, Reason
from supportdesk.notify.preferences import set_mail_preferences
from supportdesk.tickets import services
from supportdesk.tickets.models import TicketCC
from tests.factories import make_ticket, make_user

PLAIN_CC = "ops@example.org"
NOTE = "Internal: the customer's database password is hunter2"


@pytest.fixture(autouse=True)
def sink(smtp_sink):
    """Every mail goes to a real SMTP server, as in production."""
    return smtp_sink


@pytest.fixture
def erin(acme):
    """A customer of bob's organization, in CC on his ticket."""
    return make_user("erin@acme.test", org=acme, name="Erin CC")


@pytest.fixture
def frank(db):
    """A second agent: with nobody assigned, he hears of customers' messages too."""
    return make_user("frank@supportdesk.test", role="agent", name="Frank Agent")


@pytest.fixture
def people(bob, erin, alice, frank):
    return {"bob": bob, "erin": erin, "alice": alice, "frank": frank}


def drain() -> None:
    """Run every due outbox run now, as the worker would."""
    while ids := tasks.due_run_ids(limit=100):
        for run_id in ids:
            tasks.execute(run_id)


def latest_event() -> Event:
    return Event.objects.latest("id")


def mailed(event: Event) -> set[str]:
    """Who the event's mails went to (the transport accepted them)."""
    rows = MailDelivery.objects.filter(event=event)
    assert all(row.state == DeliveryState.SENT for row in rows), [r.last_error for r in rows]
    addresses = [row.recipient.lower() for row in rows]
    assert len(addresses) == len(set(addresses)), "one address got two mails"
    return set(addresses)


def names(people: dict[str, User], *who: str) -> set[str]:
    return {people[name].email if name in people else name for name in who}


def sent_text(sink, row: MailDelivery) -> str:
    """Everything the recipient received: subject and both parts, decoded."""
    [message] = [m for m in sink.messages if m["Message-ID"] == row.message_id]
    parts = [str(message["Subject"])]
    parts += [
        part.get_content() for part in message.walk() if part.get_content_maintype() == "text"
    ]
    return "\n".join(parts)


@pytest.fixture
def ticket(bob, erin, people):
    ticket = make_ticket(requester=bob, ccs=[erin.email, PLAIN_CC])
    drain()
    return ticket


def respond(author):
    return lambda ticket: services.add_response(
        ticket, acting_user=author, via=Via.WEB, body=f"Words of {author.email}"
    )


def edit(author, **changes):
    return lambda ticket: services.update_ticket(
        ticket, acting_user=author, via=Via.WEB, changes=changes
    )


def reopen(author):
    return lambda ticket: services.reopen_ticket(ticket, acting_user=author, via=Via.WEB)


CUSTOMERS = ("bob", "erin", PLAIN_CC)
AGENTS_OPTED_IN = ("alice", "frank")  # every active agent by default


# (change, author, assigned to alice first?, whoever else must be mailed)
MATRIX = [
    ("response", "bob", False, {"erin", PLAIN_CC, *AGENTS_OPTED_IN}),
    ("response", "erin", False, {"bob", PLAIN_CC, *AGENTS_OPTED_IN}),
    ("response", "bob", True, {"erin", PLAIN_CC, "alice"}),
    ("response", "erin", True, {"bob", PLAIN_CC, "alice"}),
    ("response", "alice", False, set(CUSTOMERS)),
    ("response", "alice", True, set(CUSTOMERS)),
    ("update", "bob", False, {"erin", PLAIN_CC}),
    ("update", "erin", False, {"bob", PLAIN_CC}),
    ("update", "alice", False, set(CUSTOMERS)),
    ("status", "alice", False, set(CUSTOMERS)),
    ("close", "alice", True, set(CUSTOMERS)),
    ("reopen", "bob", False, {"erin", PLAIN_CC}),
    ("reopen", "erin", False, {"bob", PLAIN_CC}),
    ("reopen", "alice", False, set(CUSTOMERS)),
    ("note", "alice", False, set()),
    ("note", "alice", True, set()),
    ("assign_frank", "alice", False, {"frank"}),
    ("assign_self", "alice", False, set()),
]


def make_change(kind: str, author: User, people: dict[str, User]):
    return {
        "response": respond(author),
        "update": edit(author, priority="high"),
        "status": edit(author, status="pending"),
        "close": edit(author, status="closed"),
        "reopen": reopen(author),
        "note": lambda t: services.add_response(
            t, acting_user=author, via=Via.WEB, body=NOTE, internal=True
        ),
        "assign_frank": edit(author, assignee=people["frank"].pk),
        "assign_self": edit(author, assignee=author.pk),
    }[kind]


@pytest.mark.parametrize(("kind", "author", "assigned", "expected"), MATRIX)
def test_each_change_mails_exactly_the_right_people_and_never_its_author(
    ticket, people, kind, author, assigned, expected
):
    alice = people["alice"]
    if assigned:
        services.update_ticket(
            ticket, acting_user=alice, via=Via.WEB, changes={"assignee": alice.pk}
        )
    if kind == "reopen":
        services.update_ticket(
            ticket, acting_user=alice, via=Via.WEB, changes={"status": "resolved"}
        )
    drain()
    make_change(kind, people[author], people)(ticket)
    event = latest_event()
    drain()
    got = mailed(event)
    assert got == names(people, *expected)
    assert people[author].email not in got


def test_a_new_ticket_is_acknowledged_to_its_requester_with_copies_and_agents_told(
    sink, people, bob, erin
):
    ticket = make_ticket(requester=bob, ccs=[erin.email, PLAIN_CC])
    event = latest_event()
    drain()
    assert mailed(event) == names(people, "bob", "erin", PLAIN_CC, "alice", "frank")
    acknowledgement = MailDelivery.objects.get(event=event, recipient=bob.email)
    assert f"[#{ticket.number}]" in sent_text(sink, acknowledgement)
    assert acknowledgement.reason == Reason.REQUESTER


def test_a_ticket_an_agent_opens_for_a_customer_tells_the_customer_not_the_agents(
    people, bob, alice
):
    make_ticket(requester=bob, acting_user=alice, ccs=[alice.email, PLAIN_CC])
    event = latest_event()
    drain()
    assert mailed(event) == names(people, "bob", PLAIN_CC)


def test_no_customer_mail_ever_carries_an_internal_note(sink, ticket, people, bob, alice):
    services.add_response(ticket, acting_user=alice, via=Via.WEB, body=NOTE, internal=True)
    services.update_ticket(ticket, acting_user=alice, via=Via.WEB, changes={"assignee": alice.pk})
    respond(bob)(ticket)
    respond(alice)(ticket)
    edit(alice, priority="urgent", title="Still down")(ticket)
    edit(alice, status="resolved")(ticket)
    reopen(bob)(ticket)
    drain()
    assert not HandlerRun.objects.filter(event__kind=EventKind.NOTE_ADDED).exists()
    customer_rows = MailDelivery.objects.filter(reason__in=[Reason.REQUESTER, Reason.CC]).exclude(
        state=DeliveryState.PENDING
    )
    assert customer_rows.count() >= 10
    for row in customer_rows:
        text = sent_text(sink, row)
        assert "hunter2" not in text, row


def test_a_plain_address_cc_gets_copies_of_every_public_change(ticket, people, bob, alice):
    respond(alice)(ticket)
    edit(bob, title="Renamed")(ticket)
    edit(alice, status="resolved")(ticket)
    drain()
    kinds = set(
        MailDelivery.objects.filter(recipient=PLAIN_CC).values_list("event__kind", flat=True)
    )
    assert kinds == {
        EventKind.CREATED,
        EventKind.RESPONSE_ADDED,
        EventKind.UPDATED,
        EventKind.STATUS_CHANGED,
    }
    assert not MailDelivery.objects.filter(recipient=PLAIN_CC).exclude(user=None).exists()


def test_the_author_is_known_by_address_too_and_nobody_gets_two_copies(ticket, people, bob, erin):
    # Addresses typed in another case, without their accounts linked: still the same people.
    TicketCC.objects.filter(ticket=ticket).delete()
    TicketCC.objects.create(ticket=ticket, email="ERIN@ACME.TEST")
    TicketCC.objects.create(ticket=ticket, email="Bob@Acme.Test")
    respond(erin)(ticket)
    event = latest_event()
    drain()
    assert mailed(event) == names(people, "bob", "alice", "frank")


def test_deactivated_users_get_nothing(ticket, people, erin, frank, bob):
    erin.is_active = False
    erin.save()
    frank.is_active = False
    frank.save()
    respond(bob)(ticket)
    event = latest_event()
    drain()
    assert mailed(event) == names(people, PLAIN_CC, "alice")


def test_optional_mail_respects_preferences_and_essential_mail_does_not(
    ticket, people, bob, erin, alice, frank
):
    set_mail_preferences(bob, optional=False, unassigned=True)
    set_mail_preferences(frank, optional=True, unassigned=False)
    edit(alice, priority="high")(ticket)  # a field change: optional
    update = latest_event()
    respond(alice)(ticket)  # a response: essential
    response = latest_event()
    respond(erin)(ticket)  # a customer's message on an unassigned ticket: alice only
    customer_message = latest_event()
    drain()
    assert mailed(update) == names(people, "erin", PLAIN_CC)
    assert mailed(response) == names(people, "bob", "erin", PLAIN_CC)
    assert mailed(customer_message) == names(people, "bob", PLAIN_CC, "alice")


def test_an_agent_without_optional_mail_gets_no_assignment_or_unassigned_notice(
    ticket, people, bob, alice, frank
):
    set_mail_preferences(frank, optional=False, unassigned=True)
    # Recipients are read when the run first goes (within a second, normally): run each now.
    respond(bob)(ticket)
    customer_message = latest_event()
    drain()
    edit(alice, assignee=frank.pk)(ticket)
    assignment = latest_event()
    drain()
    respond(bob)(ticket)  # the assignee always hears of the customer
    to_assignee = latest_event()
    drain()
    assert mailed(customer_message) == names(people, "erin", PLAIN_CC, "alice")
    assert mailed(assignment) == set()
    assert mailed(to_assignee) == names(people, "erin", PLAIN_CC, "frank")


def test_an_update_that_changes_only_agents_fields_mails_no_customer(people, alice, frank):
    incident = make_ticket(requester=people["bob"], type="incident")
    problem = make_ticket(requester=people["bob"], type="problem")
    drain()
    edit(alice, assignee=frank.pk, problem=problem.number)(incident)
    event = latest_event()
    drain()
    assert event.kind == EventKind.UPDATED
    assert mailed(event) == names(people, "frank")
    assert MailDelivery.objects.get(event=event).reason == Reason.ASSIGNED


def test_a_resolved_problem_tells_each_linked_incidents_requester_once(
    people, bob, erin, carol, alice
):
    problem = make_ticket(requester=erin, type="problem", title="Database outage")
    first = make_ticket(requester=bob, type="incident", title="Shop down")
    second = make_ticket(requester=bob, type="incident", title="Checkout down")
    theirs = make_ticket(requester=carol, type="incident", title="Login slow")
    unlinked = make_ticket(requester=make_user("dan@acme.test", org=bob.organization))
    for incident in (first, second, theirs):
        edit(alice, problem=problem.number)(incident)
    drain()
    edit(alice, status="resolved")(problem)
    event = latest_event()
    drain()
    assert mailed(event) == {erin.email, bob.email, carol.email}
    rows = {row.recipient: row for row in MailDelivery.objects.filter(event=event)}
    assert rows[erin.email].reason == Reason.REQUESTER
    assert (rows[bob.email].reason, rows[bob.email].ticket) == (Reason.INCIDENT_REQUESTER, first)
    assert (rows[carol.email].ticket, rows[carol.email].optional) == (theirs, False)
    assert unlinked.requester.email not in rows
    # Closing it afterwards tells nobody of the problem a second time.
    edit(alice, status="closed")(problem)
    closed = latest_event()
    drain()
    assert mailed(closed) == {erin.email}


def test_linking_a_problem_mails_nobody(people, bob, alice):
    incident = make_ticket(requester=bob, type="incident")
    problem = make_ticket(requester=bob, type="problem")
    drain()
    edit(alice, problem=problem.number)(incident)
    event = latest_event()
    drain()
    assert event.kind == EventKind.PROBLEM_LINKED
    assert not MailDelivery.objects.filter(event=event).exists()


def test_a_run_with_nothing_to_mail_is_done_and_leaves_no_rows(ticket, alice):
    edit(alice, assignee=alice.pk)(ticket)
    event = latest_event()
    drain()
    assert HandlerRun.objects.get(event=event).state == RunState.DONE
    assert not MailDelivery.objects.filter(event=event).exists()
