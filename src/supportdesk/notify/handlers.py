"""The outbox handlers of mail out: one per kind of event that can mail anyone.

Each is named `mail_on_<event>` and stored by that name on its runs, so a name, once
released, stays. Internal notes and problem links have none: they are agents' business and
mail no customer. Who gets what is decided in recipients.py; sending in deliveries.py.
"""

from __future__ import annotations

from collections.abc import Sequence

from supportdesk.errors import DeliveryError
from supportdesk.events import registry
from supportdesk.events.models import Event, EventKind
from supportdesk.notify.deliveries import deliver, deliver_many
from supportdesk.notify.recipients import MAILED_KINDS


def _mail_on(kind: EventKind) -> registry.Handler:
    name = f"mail_on_{kind.value}"

    def handle(event: Event) -> None:
        deliver(event, handler=name)

    def handle_many(events: Sequence[Event]) -> dict[int, DeliveryError]:
        return deliver_many(events, handler=name)

    handle.__name__ = handle.__qualname__ = name
    registry.register_batch(name)(handle_many)
    return registry.register(kind, name=name)(handle)


HANDLERS = {kind: _mail_on(kind) for kind in MAILED_KINDS}
