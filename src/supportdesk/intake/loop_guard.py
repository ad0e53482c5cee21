"""Mail written by machines: never answered, never the start of a ticket.

An acknowledgement sent to an auto-responder is answered by another auto-reply, which opens
another ticket, and so on without end; a bounce answered bounces again. RFC 3834 asks
responders to mark their mail, and most do in one of the ways checked here.
"""

from __future__ import annotations

from datetime import timedelta
from functools import cache

from django.conf import settings
from django.db import connection
from django.utils import timezone

from supportdesk import rows
from supportdesk.intake.models import InboundMessage, MessageState
from supportdesk.intake.parse import ParsedMessage
from supportdesk.notify.models import DeliveryState, MailDelivery

_BULK_PRECEDENCE = frozenset({"bulk", "junk", "list", "auto_reply"})
_DAEMON_LOCAL_PARTS = frozenset({"mailer-daemon", "postmaster"})


def automatic_reason(parsed: ParsedMessage) -> str:
    """Why the message is an auto-reply, bounce or bulk mail, or "" for a person's mail."""
    if parsed.auto_submitted and parsed.auto_submitted.split(";")[0].strip() != "no":
        return f"Auto-Submitted: {parsed.auto_submitted}"
    if parsed.precedence in _BULK_PRECEDENCE:
        return f"Precedence: {parsed.precedence}"
    if parsed.x_autoreply:
        return "X-Autoreply"
    if parsed.x_auto_response_suppress:
        return "X-Auto-Response-Suppress"
    if parsed.return_path is not None and parsed.return_path.replace(" ", "") in ("<>", ""):
        return "empty Return-Path"
    if parsed.report is not None:
        return "delivery-status report"
    if parsed.from_address.partition("@")[0] in _DAEMON_LOCAL_PARTS:
        return f"from {parsed.from_address}"
    if is_our_address(parsed.from_address):
        return f"from our own address {parsed.from_address}"  # our mail come back: a loop
    return ""


def is_our_address(address: str) -> bool:
    return address.rpartition("@")[2] == settings.MAIL_DOMAIN.lower()


def mark_bounced(parsed: ParsedMessage) -> list[MailDelivery]:
    """Mark the deliveries a failure report is about as failed, with its status.

    A "delayed" report (4.x.x, the server still tries) changes nothing. Returns the
    deliveries marked, for the caller to link the message to their ticket.
    """
    report = parsed.report
    if report is None or not report.message_ids:
        return []
    if report.action not in ("failed", "") or report.status.startswith(("2", "4")):
        return []
    deliveries = list(MailDelivery.objects.filter(message_id__in=report.message_ids))
    error = " ".join(part for part in ("Bounced:", report.status, report.diagnostic) if part)
    for delivery in deliveries:
        delivery.state = DeliveryState.FAILED
        delivery.last_error = error[:2000]
        delivery.save(update_fields=["state", "last_error", "updated_at"])
    return deliveries


def over_new_ticket_rate(address: str) -> bool:
    """A sender who opened more than MAIL_NEW_TICKETS_PER_HOUR tickets by mail in the last
    hour is held: a loop with a responder that marks nothing, or a flood, not a person."""
    limit = int(settings.MAIL_NEW_TICKETS_PER_HOUR)
    if limit <= 0 or not address:
        return False
    since = timezone.now() - timedelta(hours=1)
    field = InboundMessage._meta.get_field("processed_at")
    row = rows.fetch_one(
        _opened_sql(),
        [address, field.get_db_prep_value(since, connection), MessageState.PROCESSED],
    )
    return row is not None and int(row[0]) >= limit


@cache
def _opened_sql() -> str:
    """Every new mail asks it (rows.py); the (from_address, processed_at) index keeps it to
    the sender's last hour instead of every processed message."""
    return (
        f"SELECT COUNT(*) FROM {rows.table(InboundMessage)}"  # noqa: S608
        " WHERE from_address = %s AND processed_at >= %s AND state = %s"
        " AND ticket_id IS NOT NULL AND response_id IS NULL"
    )
