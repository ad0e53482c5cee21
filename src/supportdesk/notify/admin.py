from django.contrib import admin
from django.http import HttpRequest

from supportdesk.notify.models import MailDelivery


@admin.register(MailDelivery)
class MailDeliveryAdmin(admin.ModelAdmin[MailDelivery]):
    """Read-only: a delivery row records what a mail server said; nobody edits history.
    A stuck mail is retried through its handler run (the outbox's admin)."""

    list_display = ("recipient", "reason", "state", "attempts", "sent_at", "ticket", "event")
    list_filter = ("state", "reason")
    search_fields = ("recipient", "message_id", "=ticket__number")
    list_select_related = ("ticket", "event")
    ordering = ("-created_at", "-id")
    raw_id_fields = ("event", "ticket", "user")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: MailDelivery | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: MailDelivery | None = None) -> bool:
        return False
