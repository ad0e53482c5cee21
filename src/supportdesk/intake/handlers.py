"""The outbox handler that processes each stored message: the store records a MAIL_RECEIVED
event with the message in its changes, in the transaction that stores it."""

from __future__ import annotations

from collections.abc import Sequence

from supportdesk.events import registry
from supportdesk.events.models import Event, EventKind
from supportdesk.intake.process import process_stored, process_stored_many


@registry.register(EventKind.MAIL_RECEIVED, name="process_on_mail_received", bulk=True)
def process_on_mail_received(event: Event) -> None:
    """Quarantines instead of raising, so the run succeeds and is never retried forever;
    a message deleted before its run leaves nothing to do."""
    message_pk = _message_pk(event)
    if message_pk is not None:
        process_stored(message_pk)


@registry.register_batch("process_on_mail_received")
def process_on_mail_received_many(events: Sequence[Event]) -> None:
    """Several stored messages claimed together, processed in one transaction (each under
    its own savepoint): process_stored_many."""
    process_stored_many([pk for pk in map(_message_pk, events) if pk is not None])


def _message_pk(event: Event) -> int | None:
    pair = event.changes.get("message")
    message_pk = pair[1] if isinstance(pair, list) and len(pair) == 2 else None
    return message_pk if isinstance(message_pk, int) else None
