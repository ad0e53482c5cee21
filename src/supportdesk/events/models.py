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
    # Not a ticket's: the event's ticket is empty and its actor is the user concerned.
    PASSWORD_RESET_REQUESTED = "password_reset_requested", "Asked for a password reset"
    # Not a ticket's either: a raw inbound message was stored; its processing is the run.
    MAIL_RECEIVED = "mail_received", "Received a mail"


class Event(models.Model):
    """One change to one ticket, written in the change's transaction.

    `changes` maps a field name to [from, to] (display values, so history never needs a
    join to render); `version` is the ticket's version after the change, which lets a stale
    edit be told exactly what moved since the copy it was made from.
    """

    ticket = models.ForeignKey(
        "tickets.Ticket",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="events",
        help_text="Empty for an account's event, such as a password reset.",
        db_index=False,  # the (ticket, version) index below serves it
    )
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


class RunState(models.TextChoices):
    PENDING = "pending", "Waiting"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    DISCARDED = "discarded", "Discarded"


class HandlerRun(models.Model):
    """One side effect of one event: the outbox row a worker claims, runs and retries.

    Written with the event, in the change's transaction, so a rollback sends nothing and a
    commit always sends. The task that runs it is only a wake-up: a worker claims the row
    with a conditional UPDATE (pending and due, or its lease expired), which gives it to
    exactly one worker, and `attempts` fences a worker whose lease ran out from writing
    over its successor's result.
    """

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="runs")
    handler = models.CharField(max_length=100)
    state = models.CharField(max_length=10, choices=RunState.choices, default=RunState.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    due_at = models.DateTimeField(
        auto_now_add=True, help_text="When it may next be tried (backoff after a failure)."
    )
    lease_until = models.DateTimeField(null=True, blank=True)
    leased_by = models.CharField(max_length=64, blank=True, default="")
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = (
            models.UniqueConstraint(fields=["event", "handler"], name="run_event_handler_unique"),
        )
        indexes = (
            models.Index(fields=["state", "due_at"], name="run_state_due"),
            models.Index(fields=["state", "lease_until"], name="run_state_lease"),
        )

    def __str__(self) -> str:
        return f"{self.handler} for event {self.event_id} ({self.state})"


class WorkerHeartbeat(models.Model):
    """A worker's sign of life, written by its sweeper on every tick, read by /healthz.

    One row per worker process (`host:pid`); rows of workers gone for a day are pruned.
    """

    worker_id = models.CharField(max_length=64, unique=True)
    hostname = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    seen_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return self.worker_id


class Schedule(models.Model):
    """When a periodic job (events/periodic.py) is next due.

    Every worker's sweeper tries to move `next_run_at` forward with one conditional UPDATE;
    the one whose UPDATE changed the row runs the job, so a job runs once per interval
    however many workers there are.
    """

    name = models.CharField(max_length=100, unique=True)
    next_run_at = models.DateTimeField()
    last_run_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.name
