"""What agents and admins do with inbound messages that did not become tickets by themselves:
accept or reject a held one, reprocess or delete a quarantined one."""

from __future__ import annotations

from functools import partial

from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from supportdesk.accounts.models import Organization, User
from supportdesk.errors import Forbidden, InvalidChange
from supportdesk.intake.models import InboundMessage, MessageState
from supportdesk.intake.process import Acceptance, process_message

# A processed message is the record that guards against its redelivered copy, and its raw
# file is also its ticket's original-message.eml (process.py); a stored one is about to be
# processed. Neither may go.
_KEPT_STATES = (MessageState.STORED, MessageState.PROCESSED)


def _require_agent(acting_user: User) -> None:
    if not acting_user.is_active or not acting_user.is_agent:
        raise Forbidden("Only agents decide on held mail.")


def reprocess(message: InboundMessage) -> InboundMessage:
    """Process a quarantined message again (after a fix); returns it as it ends, which may
    be quarantined again. Raises InvalidChange for a message that is not quarantined."""
    moved = InboundMessage.objects.filter(pk=message.pk, state=MessageState.QUARANTINED).update(
        state=MessageState.STORED, error="", processed_at=None
    )
    if not moved:
        raise InvalidChange("Only a quarantined message can be processed again.", field="state")
    return process_message(message)


def delete_message(message: InboundMessage) -> None:
    """Delete the message and its raw file, for spam and junk an admin looked at. Raises
    InvalidChange for a processed or not yet processed message."""
    with transaction.atomic():
        locked = InboundMessage.objects.select_for_update().filter(pk=message.pk).first()
        if locked is None:
            return
        if locked.state in _KEPT_STATES:
            raise InvalidChange(
                f"A {locked.get_state_display().lower()} message is kept.", field="state"
            )
        locked.delete()
        transaction.on_commit(partial(default_storage.delete, locked.raw))


def accept_held(
    message: InboundMessage, *, acting_user: User, organization: Organization | None = None
) -> InboundMessage:
    """Process a held message as if its sender were known: an unknown sender becomes a
    contact of `organization` (by default the one their mail domain names), and the rate
    guard is passed. Raises Forbidden for a non-agent, InvalidChange when the message is not
    held or no organization is known (the message stays held)."""
    _require_agent(acting_user)
    if not InboundMessage.objects.filter(pk=message.pk, state=MessageState.HELD).exists():
        raise InvalidChange("Only a held message can be accepted.", field="state")
    return process_message(message, accept=Acceptance(acting_user, organization))


def reject_held(message: InboundMessage, *, acting_user: User) -> InboundMessage:
    """Mark a held message rejected: it is kept and nobody is mailed (no backscatter).
    Raises Forbidden for a non-agent, InvalidChange when the message is not held."""
    _require_agent(acting_user)
    with transaction.atomic():
        locked = InboundMessage.objects.select_for_update().filter(pk=message.pk).first()
        if locked is None or locked.state != MessageState.HELD:
            raise InvalidChange("Only a held message can be rejected.", field="state")
        locked.state = MessageState.REJECTED
        locked.error = f"{locked.error} Rejected by {acting_user.email}.".strip()
        locked.processed_at = timezone.now()
        locked.save(update_fields=["state", "error", "processed_at"])
        return locked
