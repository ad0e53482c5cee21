"""The outbox handlers of mail out: one per kind of event that can mail anyone.

Each is named `mail_on_<event>` and stored by that name on its runs, so a name, once
released, stays. Internal notes and problem links have none: they are agents' business and
mail no customer. Who gets what is decided in recipients.py; sending in deliveries.py.
"""

from __future__ import annotations

from supportdesk.events import registry
from supportdesk.events.models import Event, EventKind
from supportdesk.notify.deliveries import deliver


@registry.register(EventKind.CREATED, name="mail_on_created")
def mail_on_created(event: Event) -> None:
    deliver(event, handler="mail_on_created")


@registry.register(EventKind.RESPONSE_ADDED, name="mail_on_response_added")
def mail_on_response_added(event: Event) -> None:
    deliver(event, handler="mail_on_response_added")


@registry.register(EventKind.UPDATED, name="mail_on_updated")
def mail_on_updated(event: Event) -> None:
    deliver(event, handler="mail_on_updated")


@registry.register(EventKind.STATUS_CHANGED, name="mail_on_status_changed")
def mail_on_status_changed(event: Event) -> None:
    deliver(event, handler="mail_on_status_changed")


@registry.register(EventKind.REOPENED, name="mail_on_reopened")
def mail_on_reopened(event: Event) -> None:
    deliver(event, handler="mail_on_reopened")


@registry.register(EventKind.ASSIGNED, name="mail_on_assigned")
def mail_on_assigned(event: Event) -> None:
    deliver(event, handler="mail_on_assigned")


@registry.register(EventKind.ATTACHMENT_ADDED, name="mail_on_attachment_added")
def mail_on_attachment_added(event: Event) -> None:
    deliver(event, handler="mail_on_attachment_added")
