"""One row per mail of an event: its recipient, why they get it, and how its delivery went."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Reason(models.TextChoices):
    """Why the recipient gets the mail; it also picks the mail's wording."""

    REQUESTER = "requester", "Requester"
    CC = "cc", "CC"
    ASSIGNEE = "assignee", "Assignee"
    ASSIGNED = "assigned", "Newly assigned"
    UNASSIGNED = "unassigned", "Agent (unassigned ticket)"
    INCIDENT_REQUESTER = "incident_requester", "Requester of a linked incident"


class DeliveryState(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    RETRYING = "retrying", "Retrying"
    FAILED = "failed", "Failed"


class MailDelivery(models.Model):
    """A mail to one recipient about one event: the same row, and the same Message-ID, on
    every attempt. `sent` is written only after the mail server accepted the mail, so a
    crash in between sends it again (at least once), never loses it."""

    event = models.ForeignKey("events.Event", on_delete=models.CASCADE, related_name="mails")
    ticket = models.ForeignKey(
        "tickets.Ticket",
        on_delete=models.CASCADE,
        related_name="mails",
        help_text="The ticket the mail is about: a linked incident's, for a resolved problem.",
    )
    recipient = models.EmailField(max_length=254)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    message_id = models.CharField(max_length=255)
    reason = models.CharField(max_length=24, choices=Reason.choices)
    optional = models.BooleanField(
        default=False, help_text="Optional mail carries List-Unsubscribe; essential mail not."
    )
    state = models.CharField(
        max_length=10, choices=DeliveryState.choices, default=DeliveryState.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("created_at", "id")
        verbose_name_plural = "mail deliveries"
        constraints = (
            models.UniqueConstraint(
                fields=["event", "recipient"], name="mail_delivery_event_recipient_unique"
            ),
        )

    def __str__(self) -> str:
        return f"{self.recipient} for event {self.event_id} ({self.state})"
