"""Which of our addresses a mail is for, and the mailboxes every installation starts with."""

from __future__ import annotations

from django.apps import apps as django_apps
from django.apps.registry import Apps
from django.conf import settings
from django.db.models import QuerySet

from supportdesk.intake.models import Mailbox

# (local part, ticket type key, priority key): the seed product's addresses (PRODUCT.md).
DEFAULT_MAILBOXES = (
    ("support", "question", "normal"),
    ("hosting", "incident", "normal"),
    ("sysops", "incident", "urgent"),
)


def find_mailbox(address: str) -> Mailbox | None:
    """The active mailbox an envelope address names, or None.

    The local part is matched without regard to case (senders type `Support@`); the domain
    must be ours, also without regard to case, as DNS names are.
    """
    local_part = our_local_part(address)
    if local_part is None:
        return None
    return active_mailboxes().filter(local_part__iexact=local_part).first()


def our_local_part(address: str) -> str | None:
    """The local part of an address at our mail domain, or None for any other address."""
    local_part, at, domain = address.strip().strip("<>").rpartition("@")
    if not at or not local_part or domain.lower() != settings.MAIL_DOMAIN.lower():
        return None
    return local_part


def active_mailboxes() -> QuerySet[Mailbox]:
    return (
        Mailbox.objects.select_related("ticket_type", "priority")
        .filter(is_active=True)
        .order_by("id")
    )


def ensure_default_mailboxes(apps: Apps = django_apps) -> None:
    """Create the default mailboxes that are missing; never changes one an admin edited,
    deactivated or renamed the type of. Takes an app registry so that the data migration
    can pass its historical models."""
    mailbox = apps.get_model("intake", "Mailbox")
    ticket_type = apps.get_model("tickets", "TicketType")
    priority = apps.get_model("tickets", "Priority")
    for local_part, type_key, priority_key in DEFAULT_MAILBOXES:
        if mailbox.objects.filter(local_part__iexact=local_part).exists():
            continue
        kind = ticket_type.objects.filter(key=type_key).first()
        level = priority.objects.filter(key=priority_key).first()
        if kind is None or level is None:  # an admin removed the built-in: nothing to map to
            continue
        mailbox.objects.create(local_part=local_part, ticket_type=kind, priority=level)
