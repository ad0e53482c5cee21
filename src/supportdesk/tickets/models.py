"""Tickets, their conversation and attachments, and the admin-managed vocabularies."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower

from supportdesk.accounts.models import Application, Environment, Organization


class Status(models.TextChoices):
    OPEN = "open", "Open"
    PENDING = "pending", "Pending"
    RESOLVED = "resolved", "Resolved"
    CLOSED = "closed", "Closed"


OPEN_STATUSES = (Status.OPEN, Status.PENDING)
DONE_STATUSES = (Status.RESOLVED, Status.CLOSED)


class Channel(models.TextChoices):
    """How the customer spoke, which is not always the adapter that recorded it: an agent
    logs a phone call through the web."""

    WEB = "web", "Web"
    API = "api", "API"
    EMAIL = "email", "Email"
    PHONE = "phone", "Phone"
    CHAT = "chat", "Chat"


class BuiltinProtected(models.Model):
    """A vocabulary entry with a fixed key; built-ins can be renamed, reordered or hidden,
    never deleted, because rules and the API refer to them by key."""

    key = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=64)
    rank = models.PositiveSmallIntegerField(default=100, help_text="Lower sorts first.")
    is_hidden = models.BooleanField(default=False, help_text="Hidden entries are not offered.")
    is_builtin = models.BooleanField(default=False, editable=False)

    class Meta:
        abstract = True
        ordering = ("rank", "name")

    def __str__(self) -> str:
        return self.name

    def delete(
        self, using: str | None = None, keep_parents: bool = False
    ) -> tuple[int, dict[str, int]]:
        if self.is_builtin:
            raise models.ProtectedError(f"{self.name} is built in and cannot be deleted.", {self})
        return super().delete(using=using, keep_parents=keep_parents)


class TicketType(BuiltinProtected):
    class Meta(BuiltinProtected.Meta):
        verbose_name = "type"


class Priority(BuiltinProtected):
    class Meta(BuiltinProtected.Meta):
        verbose_name_plural = "priorities"


class Tag(models.Model):
    """A free label, admin-managed; names match regardless of case, so "bug" is Bug."""

    name = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ("name",)
        constraints = (models.UniqueConstraint(Lower("name"), name="tag_name_unique_ci"),)

    def __str__(self) -> str:
        return self.name


class Counter(models.Model):
    """A named counter holding the last number handed out; incremented under a row lock in
    the creating transaction, so a number is never handed out twice, and a rollback hands it
    back with the ticket."""

    name = models.CharField(max_length=32, unique=True)
    value = models.BigIntegerField()

    def __str__(self) -> str:
        return f"{self.name}={self.value}"


class Ticket(models.Model):
    number = models.PositiveIntegerField(unique=True)
    # Every index is written by every create (bench/README.md, "API"). The foreign keys below
    # have none of their own: a composite index in Meta starts with the column, or the column
    # is only read to guard a rare delete (a user, a ticket type), where a scan will do.
    type = models.ForeignKey(TicketType, on_delete=models.PROTECT, related_name="+", db_index=False)
    priority = models.ForeignKey(
        Priority, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    tags = models.ManyToManyField(Tag, blank=True, related_name="tickets")
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="tickets", db_index=False
    )
    requester = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="requested_tickets"
    )
    application = models.ForeignKey(
        Application,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="tickets",
        help_text="Empty means all of the organization's applications.",
    )
    environments = models.ManyToManyField(
        Environment,
        blank=True,
        related_name="tickets",
        help_text="Empty means all of the application's environments.",
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    last_updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="assigned_tickets",
        db_index=False,
    )
    problem = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="incidents",
        help_text="For an incident: the problem that caused it.",
    )
    channel = models.CharField(max_length=8, choices=Channel.choices, default=Channel.WEB)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-updated_at", "-id")
        # Each list page reads its first rows straight off an index in display order, so a
        # page costs the same at 100 tickets and at 100,000 (measured in bench/). No partial
        # indexes: SQLite cannot use one when the statuses arrive as bound parameters.
        indexes = (
            models.Index(fields=["organization", "-updated_at", "-id"], name="ticket_org_recent"),
            models.Index(fields=["assignee", "-updated_at", "-id"], name="ticket_assignee_recent"),
            models.Index(fields=["priority", "created_at", "id"], name="ticket_priority_oldest"),
            models.Index(fields=["-updated_at", "-id"]),
            # Page counts read these alone, without touching the table.
            models.Index(fields=["organization", "status"], name="ticket_org_status"),
            models.Index(fields=["assignee", "status"]),
        )

    def __str__(self) -> str:
        return f"#{self.number} {self.title}"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


class TicketCC(models.Model):
    """Someone who gets copies: a user, or a plain address for a person without an account."""

    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="ccs")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    email = models.EmailField()

    class Meta:
        ordering = ("email",)
        constraints = (
            models.UniqueConstraint(fields=["ticket", "email"], name="cc_unique_per_ticket"),
        )

    def __str__(self) -> str:
        return self.email


class Response(models.Model):
    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="responses")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    author_email = models.EmailField(
        blank=True, help_text="For a CC without an account, who wrote by mail."
    )
    body = models.TextField()
    is_internal = models.BooleanField(default=False)
    channel = models.CharField(max_length=8, choices=Channel.choices, default=Channel.WEB)
    logged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The agent who logged a call or chat on the author's behalf.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("created_at", "id")

    def __str__(self) -> str:
        return f"Response {self.pk} on #{self.ticket_id}"


def attachment_path(instance: Attachment, filename: str) -> str:
    return f"attachments/{instance.ticket_id}/{filename}"


class Attachment(models.Model):
    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="attachments")
    response = models.ForeignKey(
        Response, null=True, blank=True, on_delete=models.CASCADE, related_name="attachments"
    )
    file = models.FileField(upload_to=attachment_path, max_length=255)
    filename = models.CharField(max_length=255)
    size = models.PositiveBigIntegerField()
    content_type = models.CharField(max_length=100)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("created_at", "id")

    def __str__(self) -> str:
        return self.filename

    @property
    def is_internal(self) -> bool:
        return self.response is not None and self.response.is_internal
