"""The outbox handler that processes each stored message: the store records a MAIL_RECEIVED
event with the message in its changes, in the transaction that stores it."""

from __future__ import annotations

from supportdesk.events import registry
from supportdesk.events.models import Event, EventKind
from supportdesk.intake.process import process_stored


@registry.register(EventKind.MAIL_RECEIVED, name="process_on_mail_received", bulk=True)
def process_on_mail_received(event: Event) -> None:
    """Quarantines instead of raising, so the run succeeds and is never retried forever;
    a message deleted before its run leaves nothing to do."""
    pair = event.changes.get("message")
    message_pk = pair[1] if isinstance(pair, list) and len(pair) == 2 else None
    if not isinstance(message_pk, int):
        return
    process_stored(message_pk)
