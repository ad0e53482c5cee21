"""Message-IDs made from the event and the recipient, the same on every attempt.

Delivery is at least once: a worker killed between the server's 250 and our commit sends the
mail again. The same Message-ID on the repeat lets receivers (and tests) tell a repeat from a
new mail; it also threads replies back to the ticket (In-Reply-To, References).
"""

from __future__ import annotations

import hashlib

from django.conf import settings


def message_id(event_id: int, recipient: str) -> str:
    """`<e{event}.{digest of the address}@{mail domain}>`: stable, and no address in clear."""
    digest = hashlib.sha256(recipient.strip().lower().encode()).hexdigest()[:16]
    return f"<e{event_id}.{digest}@{settings.MAIL_DOMAIN}>"


def thread_id(ticket_number: int) -> str:
    """The ticket's thread root: every mail about the ticket refers to it."""
    return f"<ticket-{ticket_number}@{settings.MAIL_DOMAIN}>"
