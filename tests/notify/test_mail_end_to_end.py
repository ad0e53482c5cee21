"""Mail out end to end: a change, the outbox run, a real SMTP server (aiosmtpd), the delivery
rows, and the agents' Mail panel on the ticket page."""

from __future__ import annotations

from collections import Counter

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from supportdesk.events import tasks
from supportdesk.events.models import Event, HandlerRun, RunState, Via
from supportdesk.notify.models import DeliveryState, MailDelivery
from supportdesk.tickets import services
from tests.factories import make_ticket
from tests.web.pages import logged_in

PLAIN_CC = "ops@example.org"


def drain() -> None:
    while ids := tasks.due_run_ids(limit=100):
        for run_id in ids:
            tasks.execute(run_id)


def retry_now(run: HandlerRun) -> None:
    """The backoff has passed: the sweeper would hand the run to a worker now."""
    HandlerRun.objects.filter(pk=run.pk).update(due_at=timezone.now())
    assert tasks.execute(run.pk) == 1


def rows(event: Event) -> dict[str, MailDelivery]:
    return {row.recipient: row for row in MailDelivery.objects.filter(event=event)}


def mail_run(event: Event) -> HandlerRun:
    return HandlerRun.objects.get(event=event, handler__startswith="mail_on_")


@pytest.fixture
def opened(bob, alice, smtp_sink):
    """Bob's new ticket with a plain-address CC; its acknowledgement's event, not yet run."""
    ticket = make_ticket(requester=bob, ccs=[PLAIN_CC])
    return ticket, Event.objects.latest("id")


def test_each_mail_arrives_once_with_the_message_id_of_its_row(opened, smtp_sink, bob, alice):
    ticket, event = opened
    drain()
    sent = rows(event)
    assert set(sent) == {bob.email, PLAIN_CC, alice.email}
    assert all(row.state == DeliveryState.SENT and row.sent_at for row in sent.values())
    assert sorted(smtp_sink.message_ids()) == sorted(row.message_id for row in sent.values())
    assert sorted(smtp_sink.recipients()) == sorted(sent)  # one recipient per mail
    for message in smtp_sink.messages:
        assert message["Subject"].endswith(f"[#{ticket.number}] {ticket.title}")
    assert mail_run(event).state == RunState.DONE


def test_a_550_for_one_recipient_fails_that_mail_alone_and_agents_see_it(
    opened, smtp_sink, bob, alice
):
    ticket, event = opened
    smtp_sink.reject_recipient(PLAIN_CC, 550, "5.1.1 No such mailbox here")
    drain()
    sent = rows(event)
    assert sent[PLAIN_CC].state == DeliveryState.FAILED
    assert "550 5.1.1 No such mailbox here" in sent[PLAIN_CC].last_error
    assert (sent[bob.email].state, sent[alice.email].state) == (DeliveryState.SENT,) * 2
    assert sorted(smtp_sink.recipients()) == sorted([bob.email, alice.email])
    assert mail_run(event).state == RunState.DONE  # a refused address is not worth a retry

    page = logged_in(alice).get(f"/tickets/{ticket.number}/").content.decode()
    panel = page.split('id="mail-heading"')[1]
    assert "Failed" in panel
    assert "550 5.1.1 No such mailbox here" in panel
    assert "Sent" in panel
    customer_page = logged_in(bob).get(f"/tickets/{ticket.number}/").content.decode()
    assert 'id="mail-heading"' not in customer_page
    assert "No such mailbox" not in customer_page


def test_a_retry_sends_only_what_was_not_sent_with_the_same_message_ids(
    opened, smtp_sink, bob, alice
):
    ticket, event = opened
    smtp_sink.reject_recipient(PLAIN_CC, 451, "4.3.0 Mailbox busy")
    drain()
    first = rows(event)
    assert first[PLAIN_CC].state == DeliveryState.RETRYING
    assert first[PLAIN_CC].attempts == 1
    assert "451 4.3.0 Mailbox busy" in first[PLAIN_CC].last_error
    run = mail_run(event)
    assert run.state == RunState.PENDING
    assert "451" in run.last_error
    page = logged_in(alice).get(f"/tickets/{ticket.number}/").content.decode()
    assert "Retrying" in page
    assert "Mailbox busy" in page

    smtp_sink.accept()
    retry_now(run)
    after = rows(event)
    assert all(row.state == DeliveryState.SENT for row in after.values())
    assert after[PLAIN_CC].attempts == 2
    assert after[bob.email].attempts == 1  # not sent again
    arrived = Counter(smtp_sink.message_ids())
    assert set(arrived.values()) == {1}
    assert set(arrived) == {row.message_id for row in first.values()}


def test_an_outage_then_421_then_recovery_delivers_every_mail_once(opened, smtp_sink):
    _ticket, event = opened
    smtp_sink.refuse_connections()
    drain()
    run = mail_run(event)
    assert {row.state for row in rows(event).values()} == {DeliveryState.RETRYING}
    assert "Connection" in run.last_error or "refused" in run.last_error.lower()

    smtp_sink.resume()
    smtp_sink.answer_all(421, "4.7.0 Too busy")
    retry_now(run)
    assert {row.state for row in rows(event).values()} == {DeliveryState.RETRYING}
    assert "421" in rows(event)[PLAIN_CC].last_error

    smtp_sink.accept()
    retry_now(run)
    planned = {row.message_id for row in rows(event).values()}
    assert {row.state for row in rows(event).values()} == {DeliveryState.SENT}
    assert sorted(smtp_sink.message_ids()) == sorted(planned)
    run.refresh_from_db()
    assert (run.state, run.attempts) == (RunState.DONE, 3)


def test_on_the_last_attempt_a_mail_still_refused_is_marked_failed(
    opened, smtp_sink, settings, bob
):
    settings.TASK_MAX_ATTEMPTS = 1
    _ticket, event = opened
    smtp_sink.reject_recipient(PLAIN_CC, 451)
    drain()
    failed = rows(event)[PLAIN_CC]
    assert failed.state == DeliveryState.FAILED
    assert failed.last_error.startswith("Gave up, attempts: 1: ")
    assert "451" in failed.last_error
    assert rows(event)[bob.email].state == DeliveryState.SENT
    run = mail_run(event)
    assert run.state == RunState.FAILED  # listed for admins among the failed runs

    # The admin retries the run once the server is well: only that mail goes, and goes once.
    smtp_sink.accept()
    tasks.retry(run)
    drain()
    assert rows(event)[PLAIN_CC].state == DeliveryState.SENT
    assert Counter(smtp_sink.message_ids())[failed.message_id] == 1
    assert len(smtp_sink.messages) == len(rows(event))
    run.refresh_from_db()
    assert run.state == RunState.DONE


def test_when_every_mail_is_refused_for_good_the_run_fails_and_a_retry_tries_again(
    opened, smtp_sink, bob, alice
):
    """Refused for every address at once (a blocked sender, wrong credentials): the server's
    fault more than the addresses'. Admins see the failed run and retry it once it is fixed."""
    _ticket, event = opened
    smtp_sink.answer_all(554, "5.7.1 Sender blocked")
    drain()
    run = mail_run(event)
    assert run.state == RunState.FAILED
    assert "554 5.7.1 Sender blocked" in run.last_error
    assert {row.state for row in rows(event).values()} == {DeliveryState.FAILED}

    smtp_sink.accept()
    tasks.retry(run)
    drain()
    assert {row.state for row in rows(event).values()} == {DeliveryState.SENT}
    assert sorted(smtp_sink.recipients()) == sorted([bob.email, PLAIN_CC, alice.email])


def test_a_mail_whose_sent_mark_was_lost_goes_again_with_the_same_message_id(
    opened, smtp_sink, bob
):
    _ticket, event = opened
    drain()
    count = len(smtp_sink.messages)
    # A worker killed after the server's 250 and before its commit: the row still says
    # pending and the run's lease runs out, so another worker runs it again.
    row = rows(event)[bob.email]
    MailDelivery.objects.filter(pk=row.pk).update(state=DeliveryState.PENDING, sent_at=None)
    HandlerRun.objects.filter(event=event).update(state=RunState.PENDING, due_at=timezone.now())
    drain()
    ids = smtp_sink.message_ids()
    assert len(ids) == count + 1
    assert ids[-1] == row.message_id
    assert Counter(ids)[row.message_id] == 2


def test_an_internal_note_writes_no_mail_run(opened, smtp_sink, alice):
    ticket, _event = opened
    drain()
    before = len(smtp_sink.messages)
    services.add_response(ticket, acting_user=alice, via=Via.WEB, body="secret", internal=True)
    drain()
    note = Event.objects.latest("id")
    assert not HandlerRun.objects.filter(event=note).exists()
    assert len(smtp_sink.messages) == before


def queries_for(client, url: str) -> int:
    with CaptureQueriesContext(connection) as context:
        response = client.get(url)
    assert response.status_code == 200
    return len(context.captured_queries)


def exchange(ticket, count: int, *, customer, agent) -> None:
    for number in range(count):
        author = agent if number % 2 else customer
        services.add_response(ticket, acting_user=author, via=Via.WEB, body=f"Message {number}")
    drain()


def test_the_mail_panel_costs_one_query_however_many_mails(opened, smtp_sink, bob, alice):
    ticket, _event = opened
    exchange(ticket, 3, customer=bob, agent=alice)
    client = logged_in(alice)
    url = f"/tickets/{ticket.number}/"
    few = queries_for(client, url)
    shown = MailDelivery.objects.filter(ticket=ticket).count()
    exchange(ticket, 27, customer=bob, agent=alice)
    assert MailDelivery.objects.filter(ticket=ticket).count() > shown * 5
    assert queries_for(client, url) == few
    page = client.get(url).content.decode()
    assert page.count('class="mail-sent"') == MailDelivery.objects.filter(ticket=ticket).count()


def test_the_runs_one_wake_up_drains_share_one_smtp_connection(bob, smtp_sink):
    for n in range(3):
        make_ticket(requester=bob, title=f"Ticket {n}")
    assert tasks.run_due.func([]) == 3
    assert smtp_sink.wait_for(3)
    assert len({delivery.peer for delivery in smtp_sink.deliveries}) == 1


def test_the_event_as_deliver_loads_it_equals_the_orms_select_related(bob, alice):
    """deliveries._loaded is written by hand for speed: every relation the mails read must
    be what select_related() would give, and a relation that is empty must stay empty."""
    from supportdesk.notify import deliveries

    def values(instance):
        if instance is None:
            return None
        return {
            f.attname: getattr(instance, f.attname) for f in type(instance)._meta.concrete_fields
        }

    problem = make_ticket(requester=bob, type="problem", title="Outage")
    incident = make_ticket(requester=bob, type="incident", title="Down")
    services.update_ticket(
        incident,
        acting_user=alice,
        via=Via.WEB,
        changes={"assignee": alice.pk, "problem": problem.number},
    )
    services.add_response(incident, acting_user=alice, via=Via.WEB, body="Looking")
    full = Event.objects.latest("id")  # every relation set
    bare = Event.objects.filter(ticket=problem).earliest("id")  # no assignee, problem, response
    for event in (full, bare):
        loaded = deliveries._loaded(Event(pk=event.pk))
        orm = Event.objects.select_related(
            "ticket__requester", "ticket__assignee", "ticket__type", "ticket__priority",
            "ticket__problem", "actor", "response__author",
        ).get(pk=event.pk)  # fmt: skip
        with CaptureQueriesContext(connection) as queries:
            pairs = [
                (loaded, orm),
                (loaded.ticket, orm.ticket),
                (loaded.ticket.requester, orm.ticket.requester),
                (loaded.ticket.assignee, orm.ticket.assignee),
                (loaded.ticket.type, orm.ticket.type),
                (loaded.ticket.priority, orm.ticket.priority),
                (loaded.ticket.problem, orm.ticket.problem),
                (loaded.actor, orm.actor),
                (loaded.response, orm.response),
                (loaded.response and loaded.response.author, orm.response and orm.response.author),
            ]
        assert len(queries) == 0  # everything came with the one query
        for mine, theirs in pairs:
            assert values(mine) == values(theirs)
    assert full.response is not None  # the test covers a response and its author
    assert loaded.ticket.assignee is None  # and, for the bare event, empty relations


def test_runs_claimed_together_plan_in_one_statement_and_send_each_mail_once(bob, alice, smtp_sink):
    tickets = [make_ticket(requester=bob, title=f"Ticket {n}", ccs=[PLAIN_CC]) for n in range(3)]
    runs = list(HandlerRun.objects.filter(handler="mail_on_created").order_by("pk"))
    with CaptureQueriesContext(connection) as queries:
        assert tasks.execute_many([run.pk for run in runs]) == 3
    planned = [q["sql"] for q in queries.captured_queries if "INSERT INTO" in q["sql"]]
    assert len(planned) == 1  # the three events' nine rows
    assert {run.state for run in HandlerRun.objects.filter(pk__in=[r.pk for r in runs])} == {
        RunState.DONE
    }
    sent = MailDelivery.objects.filter(ticket__in=tickets)
    assert sent.count() == 9
    assert {row.state for row in sent} == {DeliveryState.SENT}
    assert smtp_sink.wait_for(9)
    assert Counter(smtp_sink.message_ids()) == Counter({row.message_id: 1 for row in sent})
    assert len({delivery.peer for delivery in smtp_sink.deliveries}) == 1  # one connection


def test_in_a_batch_each_runs_failure_is_its_own(bob, carol, alice, smtp_sink):
    """Every mail of Carol's ticket is refused for good (hers and Alice's, the agent's), one
    of Bob's: her run fails, his is done, as each would end alone."""
    make_ticket(requester=bob, title="Goes")
    make_ticket(requester=carol, title="Refused")
    runs = {
        run.event.ticket.title: run
        for run in HandlerRun.objects.filter(handler="mail_on_created").select_related(
            "event__ticket"
        )
    }
    smtp_sink.reject_recipient(carol.email, 550)
    smtp_sink.reject_recipient(alice.email, 550)
    assert tasks.execute_many([run.pk for run in runs.values()]) == 2
    after = {title: HandlerRun.objects.get(pk=run.pk) for title, run in runs.items()}
    assert after["Refused"].state == RunState.FAILED
    assert "Every mail tried (2) was refused" in after["Refused"].last_error
    assert after["Goes"].state == RunState.DONE
    states = {
        (row.event.ticket.title, row.recipient): row.state
        for row in MailDelivery.objects.select_related("event__ticket")
    }
    assert states == {
        ("Goes", bob.email): DeliveryState.SENT,
        ("Goes", alice.email): DeliveryState.FAILED,
        ("Refused", carol.email): DeliveryState.FAILED,
        ("Refused", alice.email): DeliveryState.FAILED,
    }
