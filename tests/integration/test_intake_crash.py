"""The gateway and the worker SIGKILLed mid-batch lose and double no mail.

A 250 is a promise: the message is stored and will be processed once. A sender that got no
answer sends the same bytes again, and the copy we may already have kept must not become a
second ticket. Both kills land at the worst moment, chosen by the processes' own hooks
(workers.IntakeProcess): the gateway dies after a store committed and before its 250, the
worker after a message's ticket committed and before its run was marked done.
"""

from __future__ import annotations

import smtplib
import threading
import time
from collections import Counter
from email.message import EmailMessage

import pytest
from django.conf import settings

from supportdesk.events.models import Event, EventKind, HandlerRun, RunState
from supportdesk.intake.mailboxes import ensure_default_mailboxes
from supportdesk.intake.models import InboundMessage, MessageState
from supportdesk.notify.ids import message_id
from supportdesk.tickets.models import Ticket
from tests.integration.workers import IntakeProcess, port_open, wait_until
from tests.smtp_sink import HOST, free_port

pytestmark = pytest.mark.django_db(transaction=True)

# A batch of 1,000 mails (about a minute here); the kills land in its middle, and every path
# they open is taken: stored without a 250, refused while the gateway is down, a run taken
# over. bench/run-intake sends 10,000.
SENDERS = 4
MAILS_PER_SENDER = 250
GATEWAY_DIES_AFTER = 300  # stored messages
WORKER_DIES_AFTER = 200  # processed messages


class Sender(threading.Thread):
    """A customer's mail server: one connection, reopened after any failure, and the same
    bytes sent again until they get a 250."""

    def __init__(self, port: int, mails: list[bytes], sysops: str) -> None:
        super().__init__(daemon=True)
        self.port, self.mails, self.sysops = port, mails, sysops
        self.accepted: list[bytes] = []
        self.failures = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            client: smtplib.SMTP | None = None
            for raw in self.mails:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        if client is None:
                            client = smtplib.SMTP(HOST, self.port, timeout=30)
                        client.sendmail("bob@acme.test", [self.sysops], raw)
                        self.accepted.append(raw)
                        break
                    except (smtplib.SMTPException, OSError):
                        self.failures += 1
                        if client is not None:
                            client.close()
                        client = None
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.05)
            if client is not None:
                client.quit()
        except BaseException as error:  # noqa: BLE001  (reported by the test)
            self.error = error


def mails(sender: int, sysops: str) -> list[bytes]:
    made = []
    for n in range(MAILS_PER_SENDER):
        mail = EmailMessage()
        mail["From"] = "Bob Customer <bob@acme.test>"
        mail["To"] = sysops
        mail["Subject"] = f"Alert {sender}-{n}"
        mail["Message-ID"] = f"<alert-{sender}-{n}@acme.test>"
        mail.set_content(f"Check {sender}-{n} failed.")
        made.append(bytes(mail))
    return made


def test_killed_gateway_and_worker_lose_and_double_no_mail(smtp_sink, bob, tmp_path):
    ensure_default_mailboxes()  # the transactional flush removed the migration's rows
    sysops = f"sysops@{settings.MAIL_DOMAIN}"
    home = tmp_path / "home"  # shared: the workers read the raw files the gateways wrote
    env = {
        "SUPPORTDESK_EMAIL_URL": smtp_sink.url,
        "SUPPORTDESK_MAIL_DOMAIN": settings.MAIL_DOMAIN,
        "SUPPORTDESK_TASK_LEASE_SECONDS": "2",
        "SUPPORTDESK_TASK_SWEEP_SECONDS": "1",
        # One customer sends the whole batch: the flood guard would hold it.
        "SUPPORTDESK_MAIL_NEW_TICKETS_PER_HOUR": "0",
    }
    port = free_port()
    smtpd = ["smtpd", "--host", HOST, "--port", str(port)]
    gateway_marker, worker_marker = tmp_path / "gateway-blocked", tmp_path / "worker-blocked"
    processes = [
        IntakeProcess(home, smtpd, env={**env, "CRASH_MARKER": str(gateway_marker),
                      "CRASH_STORE_BLOCK_AFTER": str(GATEWAY_DIES_AFTER)}),
        IntakeProcess(home, ["worker"], env={**env, "CRASH_MARKER": str(worker_marker),
                      "CRASH_PROCESS_BLOCK_AFTER": str(WORKER_DIES_AFTER)}),
    ]  # fmt: skip
    try:
        wait_until(lambda: port_open(HOST, port), timeout=30, what="the gateway to listen")
        senders = [Sender(port, mails(s, sysops), sysops) for s in range(SENDERS)]
        for sender in senders:
            sender.start()

        wait_until(gateway_marker.exists, timeout=60, what="the gateway to block")
        processes[0].kill()
        processes.append(IntakeProcess(home, smtpd, env=env))
        wait_until(worker_marker.exists, timeout=60, what="the worker to block")
        processes[1].kill()
        processes.append(IntakeProcess(home, ["worker"], env=env))

        for sender in senders:
            sender.join(120)
            assert not sender.is_alive()
            assert sender.error is None, sender.error
        wait_until(
            lambda: (
                not InboundMessage.objects.filter(state=MessageState.STORED).exists()
                and not HandlerRun.objects.exclude(state=RunState.DONE).exists()
            ),
            timeout=120,  # the worker runs at nice 10: on a busy machine it gets the CPU last
            what=f"every message processed; worker: {processes[-1].output()}",
        )
    finally:
        for process in processes:
            process.stop()

    sent = Counter(raw for sender in senders for raw in sender.accepted)
    assert len(sent) == SENDERS * MAILS_PER_SENDER
    assert set(sent.values()) == {1}
    assert sum(sender.failures for sender in senders) >= 1  # the unanswered mail was resent
    expected_ids = {f"<alert-{s}-{n}@acme.test>" for s in range(SENDERS)
                    for n in range(MAILS_PER_SENDER)}  # fmt: skip

    # Every accepted mail is exactly one ticket; copies that came twice are duplicates.
    rows = InboundMessage.objects.all()
    assert set(rows.values_list("state", flat=True)) <= {
        MessageState.PROCESSED,
        MessageState.DUPLICATE,
    }
    made = rows.filter(state=MessageState.PROCESSED)
    assert Counter(made.values_list("message_id", flat=True)) == Counter(expected_ids)
    assert made.filter(ticket__isnull=False, response__isnull=True).count() == len(expected_ids)
    assert Ticket.objects.count() == len(expected_ids)
    assert len(set(made.values_list("ticket_id", flat=True))) == len(expected_ids)
    titles = Counter(Ticket.objects.values_list("title", flat=True))
    assert titles == Counter(f"Alert {s}-{n}" for s in range(SENDERS)
                             for n in range(MAILS_PER_SENDER))  # fmt: skip
    assert {t.priority.key for t in Ticket.objects.select_related("priority")} == {"urgent"}

    # The message stored before the gateway died got no 250 and came again: kept twice,
    # one ticket.
    copies = InboundMessage.objects.filter(message_id=gateway_marker.read_text())
    assert copies.count() >= 2
    assert copies.filter(state=MessageState.PROCESSED).count() == 1

    # The message processed when the worker died: its run was taken over and did nothing more.
    interrupted = InboundMessage.objects.get(pk=int(worker_marker.read_text()))
    assert interrupted.state == MessageState.PROCESSED
    assert interrupted.ticket_id is not None
    run = HandlerRun.objects.get(
        handler="process_on_mail_received", event__changes__message__1=interrupted.pk
    )
    assert run.state == RunState.DONE
    assert run.attempts >= 2

    # Every ticket's acknowledgement went out (at least once: a repeat keeps its Message-ID).
    acknowledgements = {
        message_id(event.pk, bob.email) for event in Event.objects.filter(kind=EventKind.CREATED)
    }
    assert len(acknowledgements) == len(expected_ids)
    wait_until(
        lambda: acknowledgements <= set(smtp_sink.message_ids()),
        timeout=30,
        what="every acknowledgement in the sink",
    )
