"""Mail in and out through the real pieces: the `supportdesk smtpd` gateway and a
`supportdesk worker`, each its own process on the test database, smtplib as the customer's
mail server and the aiosmtpd sink as our relay. Nothing between them is called directly: a
ticket exists only if the gateway stored the mail and the worker processed it, and a mail
was sent only if the sink received it.
"""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from email.utils import make_msgid

import pytest
from django.conf import settings

from supportdesk.events.models import Event, EventKind, Via
from supportdesk.intake.mailboxes import ensure_default_mailboxes
from supportdesk.intake.models import InboundMessage, MessageState
from supportdesk.notify.ids import message_id, thread_id
from supportdesk.tickets import services
from supportdesk.tickets.models import Response, Ticket
from tests.integration.workers import IntakeProcess, Worker, port_open, wait_until
from tests.smtp_sink import HOST, free_port

pytestmark = pytest.mark.django_db(transaction=True)

CC = "watcher@example.net"


def send(port: int, message: EmailMessage, *, recipient: str) -> None:
    """As the customer's server delivers: to our mailbox only (the CC's copy goes to the
    CC's own server); raises unless the gateway answered 250."""
    with smtplib.SMTP(HOST, port, timeout=30) as client:
        refused = client.send_message(message, from_addr="bob@acme.test", to_addrs=[recipient])
    assert not refused


def processed(message_id_: str) -> InboundMessage | None:
    return InboundMessage.objects.filter(
        message_id=message_id_, state=MessageState.PROCESSED
    ).first()


def sink_mail(sink, wanted: str):  # type: ignore[no-untyped-def]
    """The sink's delivery with this Message-ID, once it arrived."""
    found = [d for d in sink.deliveries if str(d.message["Message-ID"]) == wanted]
    return found[0] if found else None


def test_mail_to_sysops_opens_an_urgent_incident_and_the_conversation_threads(
    smtp_sink, alice, bob, tmp_path
):
    ensure_default_mailboxes()  # the transactional flush removed the migration's rows
    sysops = f"sysops@{settings.MAIL_DOMAIN}"
    home = tmp_path / "home"  # one home: the worker reads the raw files the gateway wrote
    env = {
        "SUPPORTDESK_EMAIL_URL": smtp_sink.url,
        "SUPPORTDESK_MAIL_DOMAIN": settings.MAIL_DOMAIN,
    }
    port = free_port()
    gateway = IntakeProcess(home, ["smtpd", "--host", HOST, "--port", str(port)], env=env)
    worker = Worker(home, env=env)
    try:
        wait_until(lambda: port_open(HOST, port), timeout=30, what="the gateway to listen")

        # 1. A new mail: an Urgent Incident for bob, with the CC on it.
        first = EmailMessage()
        first["From"] = "Bob Customer <bob@acme.test>"
        first["To"] = sysops
        first["Cc"] = CC
        first["Subject"] = "Database cluster down"
        first["Message-ID"] = opening_id = make_msgid(domain="acme.test")
        first.set_content("Since 10:02 the primary refuses every connection.")
        send(port, first, recipient=sysops)

        wait_until(
            lambda: processed(opening_id) is not None,
            timeout=30,
            what=f"the mail to become a ticket; worker: {worker.output()}",
        )
        ticket = Ticket.objects.get(pk=processed(opening_id).ticket_id)  # type: ignore[union-attr]
        assert Ticket.objects.count() == 1
        assert (ticket.type.key, ticket.priority.key) == ("incident", "urgent")
        assert ticket.requester == bob
        assert "refuses every connection" in ticket.description
        assert set(ticket.ccs.values_list("email", flat=True)) == {CC}

        # 2. The acknowledgement, through the sink: to bob, and a copy to the CC.
        created = Event.objects.get(ticket=ticket, kind=EventKind.CREATED)
        to_bob, to_cc = message_id(created.pk, bob.email), message_id(created.pk, CC)
        wait_until(
            lambda: sink_mail(smtp_sink, to_bob) and sink_mail(smtp_sink, to_cc),
            timeout=30,
            what=f"the acknowledgements; worker: {worker.output()}",
        )
        acknowledgement = sink_mail(smtp_sink, to_bob)
        assert acknowledgement.rcpt_tos == (bob.email,)
        assert sink_mail(smtp_sink, to_cc).rcpt_tos == (CC,)

        # 3. bob answers the acknowledgement: a response on the same ticket, no new ticket.
        reply = EmailMessage()
        reply["From"] = "Bob Customer <bob@acme.test>"
        reply["To"] = str(acknowledgement.message["From"])
        reply["Subject"] = f"Re: {acknowledgement.message['Subject']}"
        reply["Message-ID"] = reply_id = make_msgid(domain="acme.test")
        reply["In-Reply-To"] = to_bob
        reply["References"] = f"{thread_id(ticket.number)} {to_bob}"
        reply.set_content(
            "The replica is down now too.\n\n"
            f"On Monday, support wrote:\n> {acknowledgement.message['Subject']}\n"
        )
        send(port, reply, recipient=sysops)
        wait_until(
            lambda: processed(reply_id) is not None,
            timeout=30,
            what=f"the reply to be processed; worker: {worker.output()}",
        )
        stored_reply = processed(reply_id)
        assert stored_reply is not None
        assert stored_reply.response_id is not None
        assert stored_reply.ticket_id == ticket.pk
        assert Ticket.objects.count() == 1
        response = Response.objects.get(pk=stored_reply.response_id)
        assert response.ticket_id == ticket.pk
        assert response.author == bob
        assert "The replica is down now too." in response.body

        # 4. An agent's public response reaches bob and the CC.
        agents = services.add_response(
            ticket, acting_user=alice, via=Via.WEB, body="Failing over now."
        )
        answer = Event.objects.get(response=agents, kind=EventKind.RESPONSE_ADDED)
        for address in (bob.email, CC):
            wanted = message_id(answer.pk, address)
            wait_until(
                lambda wanted=wanted: sink_mail(smtp_sink, wanted) is not None,
                timeout=30,
                what=f"the agent's response to {address}; worker: {worker.output()}",
            )
            mailed = sink_mail(smtp_sink, wanted)
            assert mailed.rcpt_tos == (address,)
            assert "Failing over now." in mailed.message.get_body(("plain",)).get_content()
    finally:
        gateway.stop()
        worker.stop()
    assert gateway.process.returncode == 0, gateway.output()
