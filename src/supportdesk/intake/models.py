"""Mailboxes, and every inbound message kept raw with what became of it."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class UnknownSender(models.TextChoices):
    """What a mailbox does with mail from an address that is no user's and no organization's."""

    HOLD = "hold", "Hold for an agent to accept or reject"
    CONTACT = "contact", "Create a contact in the sender domain's organization"
    REJECT = "reject", "Reject (kept, marked, never answered)"


class Mailbox(models.Model):
    """An address that opens tickets of one type and priority, optionally polled over IMAP.
    The IMAP password is never stored: it comes from the environment variable or the file
    the mailbox names."""

    local_part = models.CharField(max_length=64, unique=True, help_text="support, hosting ...")
    ticket_type = models.ForeignKey(
        "tickets.TicketType", on_delete=models.PROTECT, related_name="+"
    )
    priority = models.ForeignKey("tickets.Priority", on_delete=models.PROTECT, related_name="+")
    unknown_sender = models.CharField(
        max_length=8, choices=UnknownSender.choices, default=UnknownSender.HOLD
    )
    is_active = models.BooleanField(default=True)
    imap_host = models.CharField(max_length=255, blank=True, default="")
    imap_port = models.PositiveIntegerField(default=993)
    imap_tls = models.BooleanField(default=True)
    imap_user = models.CharField(max_length=255, blank=True, default="")
    imap_password_env = models.CharField(
        max_length=100, blank=True, default="", help_text="Name of the variable holding it."
    )
    imap_password_file = models.CharField(max_length=500, blank=True, default="")
    imap_folder = models.CharField(max_length=255, default="INBOX")
    imap_processed_folder = models.CharField(
        max_length=255,
        blank=True,
        default="",
        help_text="Move processed mail here; empty: flag it.",
    )

    class Meta:
        ordering = ("local_part",)

    def __str__(self) -> str:
        return self.address

    @property
    def address(self) -> str:
        return f"{self.local_part}@{settings.MAIL_DOMAIN}"


class MessageState(models.TextChoices):
    STORED = "stored", "Stored, not processed yet"
    PROCESSED = "processed", "Processed"
    DUPLICATE = "duplicate", "Duplicate of a message seen before"
    HELD = "held", "Held: unknown sender"
    REJECTED = "rejected", "Rejected"
    QUARANTINED = "quarantined", "Quarantined: could not be processed"
    RECORDED = "recorded", "Auto-reply or bounce: recorded, nothing changed"


class InboundMessage(models.Model):
    """One message as received, stored raw before anything parses it; `state` says what
    became of it. Nothing here is ever deleted by processing: a message that fails stays in
    quarantine, with its error, for an admin to reprocess or delete."""

    mailbox = models.ForeignKey(
        Mailbox, null=True, blank=True, on_delete=models.SET_NULL, related_name="messages"
    )
    source = models.CharField(max_length=8)  # "smtp" or "imap"
    raw = models.CharField(max_length=255, help_text="Storage name of the raw bytes.")
    size = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64, db_index=True)
    envelope_from = models.CharField(max_length=998, blank=True, default="")
    envelope_to = models.JSONField(default=list, blank=True)
    imap_uid = models.CharField(max_length=100, blank=True, default="")
    message_id = models.CharField(max_length=998, blank=True, default="", db_index=True)
    from_address = models.CharField(max_length=998, blank=True, default="")
    subject = models.CharField(max_length=998, blank=True, default="")
    state = models.CharField(
        max_length=12, choices=MessageState.choices, default=MessageState.STORED, db_index=True
    )
    error = models.TextField(blank=True, default="")
    ticket = models.ForeignKey(
        "tickets.Ticket", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    response = models.ForeignKey(
        "tickets.Response", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # When the gateway accepted it: a mail moved from the spool (spool.py) keeps its time.
    received_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-received_at", "-id")
        constraints = (
            models.UniqueConstraint(
                fields=["mailbox", "imap_uid"],
                condition=~models.Q(imap_uid=""),
                name="inbound_imap_uid_unique",
            ),
        )
        # The flood guard counts a sender's new tickets of the last hour for every new mail.
        indexes = (
            models.Index(fields=["from_address", "processed_at"], name="inbound_sender_recent"),
        )

    def __str__(self) -> str:
        return f"{self.source} message {self.pk} ({self.state})"


class SpoolMark(models.Model):
    """How far a mail gateway's spool has been moved into this database (intake/spool.py):
    its rows up to `moved_through` are InboundMessages. Written in the transaction that moves
    them, so that a move is done once whoever runs it."""

    spool = models.CharField(max_length=32, unique=True, help_text="The spool's identity.")
    moved_through = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"spool {self.spool} moved through {self.moved_through}"
