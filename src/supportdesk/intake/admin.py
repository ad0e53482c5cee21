"""Mail in as admins see it: the mailboxes, and every inbound message with what became of it.

Messages are read-only here: they change only through intake/services.py (reprocess,
accept, reject, delete), which check the state they start from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.text import Truncator

from supportdesk.accounts.models import User
from supportdesk.errors import DomainError
from supportdesk.intake import services
from supportdesk.intake.models import InboundMessage, Mailbox

ERROR_SHOWN = 80


@admin.register(Mailbox)
class MailboxAdmin(admin.ModelAdmin[Mailbox]):
    list_display = ("address", "ticket_type", "priority", "unknown_sender", "is_active", "imap")
    list_filter = ("is_active", "unknown_sender")
    fieldsets = (
        (
            None,
            {"fields": ("local_part", "ticket_type", "priority", "unknown_sender", "is_active")},
        ),
        (
            "IMAP account (optional; the password comes from the variable or file named here)",
            {
                "fields": (
                    "imap_host",
                    "imap_port",
                    "imap_tls",
                    "imap_user",
                    "imap_password_env",
                    "imap_password_file",
                    "imap_folder",
                    "imap_processed_folder",
                )
            },
        ),
    )

    @admin.display(description="IMAP", boolean=True)
    def imap(self, mailbox: Mailbox) -> bool:
        return bool(mailbox.imap_host)


@admin.register(InboundMessage)
class InboundMessageAdmin(admin.ModelAdmin[InboundMessage]):
    list_display = (
        "pk", "received_at", "mailbox", "source", "from_address", "subject", "state", "ticket",
        "short_error",
    )  # fmt: skip
    list_filter = ("state", "source", "mailbox")
    search_fields = ("from_address", "subject", "message_id")
    list_select_related = ("mailbox", "ticket")
    list_per_page = 50
    actions = ("reprocess_messages", "accept_messages", "reject_messages", "delete_messages")
    fields = (
        "mailbox", "source", "state", "error", "from_address", "subject", "message_id",
        "envelope_from", "envelope_to", "imap_uid", "size", "sha256", "raw", "ticket",
        "response", "received_at", "processed_at",
    )  # fmt: skip
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # only through the action below, which keeps processed messages

    @admin.display(description="error")
    def short_error(self, message: InboundMessage) -> str:
        return Truncator(message.error).chars(ERROR_SHOWN)

    def _each(
        self,
        request: HttpRequest,
        queryset: QuerySet[InboundMessage],
        verb: str,
        act: Callable[[InboundMessage], object],
    ) -> None:
        done, refused = 0, []
        for message in queryset:
            try:
                act(message)
            except DomainError as error:
                refused.append(f"#{message.pk}: {error.message}")
            else:
                done += 1
        self.message_user(request, f"{verb} {done} message(s).", messages.SUCCESS)
        if refused:
            self.message_user(request, "Left as they were: " + "; ".join(refused), messages.WARNING)

    @admin.action(description="Process the selected quarantined messages again")
    def reprocess_messages(self, request: HttpRequest, queryset: QuerySet[InboundMessage]) -> None:
        self._each(request, queryset, "Processed", services.reprocess)

    @admin.action(description="Accept the selected held messages")
    def accept_messages(self, request: HttpRequest, queryset: QuerySet[InboundMessage]) -> None:
        user: User = request.user  # type: ignore[assignment]
        self._each(
            request, queryset, "Accepted", lambda m: services.accept_held(m, acting_user=user)
        )

    @admin.action(description="Reject the selected held messages")
    def reject_messages(self, request: HttpRequest, queryset: QuerySet[InboundMessage]) -> None:
        user: User = request.user  # type: ignore[assignment]
        self._each(
            request, queryset, "Rejected", lambda m: services.reject_held(m, acting_user=user)
        )

    @admin.action(description="Delete the selected messages (not processed ones)")
    def delete_messages(self, request: HttpRequest, queryset: QuerySet[InboundMessage]) -> None:
        self._each(request, queryset, "Deleted", services.delete_message)
