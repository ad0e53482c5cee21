"""The Event row: a ticket's history and, for later consumers, the outbox of side effects."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models


class Via(models.TextChoices):
    """The adapter a change came through."""

    WEB = "web", "Web"
    API = "api", "API"
    EMAIL = "email", "Email"
    CLI = "cli", "Command line"
    SYSTEM = "system", "System"


class EventKind(models.TextChoices):
    """What happened, in the past tense; the consumers still to come (mail, paging, timers)
    will register their handlers against these kinds."""

    CREATED = "created", "Created the ticket"
    UPDATED = "updated", "Updated the ticket"
    STATUS_CHANGED = "status_changed", "Changed the status"
    REOPENED = "reopened", "Re-opened the ticket"
    ASSIGNED = "assigned", "Changed the assignee"
    PROBLEM_LINKED = "problem_linked", "Changed the problem link"
    RESPONSE_ADDED = "response_added", "Added a response"
    NOTE_ADDED = "note_added", "Added an internal note"
    ATTACHMENT_ADDED = "attachment_added", "Added an attachment"


class Event(models.Model):
    """One change to one ticket, written in the change's transaction.

    `changes` maps a field name to [from, to] (display values, so history never needs a
    join to render); `version` is the ticket's version after the change, which lets a stale
    edit be told exactly what moved since the copy it was made from.
    """

    ticket = models.ForeignKey("tickets.Ticket", on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=32, choices=EventKind.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_email = models.EmailField(blank=True, default="")
    via = models.CharField(max_length=8, choices=Via.choices)
    response = models.ForeignKey(
        "tickets.Response", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    changes = models.JSONField(default=dict, blank=True)
    version = models.PositiveIntegerField(default=1)
    is_internal = models.BooleanField(
        default=False, help_text="Internal events are shown to agents only."
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ("created_at", "id")
        indexes = (models.Index(fields=["ticket", "version"]),)

    def __str__(self) -> str:
        return f"{self.kind} on ticket {self.ticket_id}"

    def field_changes(self) -> list[tuple[str, Any, Any]]:
        """(field, from, to) by field name: PostgreSQL's jsonb keeps no key order, so the
        order is fixed here for the history to read the same on every database."""
        return [(name, pair[0], pair[1]) for name, pair in sorted(self.changes.items())]
