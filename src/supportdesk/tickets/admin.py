from django.contrib import admin
from django.http import HttpRequest

from supportdesk.tickets.models import Priority, Tag, TicketType


class VocabularyAdmin(admin.ModelAdmin[TicketType]):
    list_display = ("name", "key", "rank", "is_hidden", "is_builtin")
    list_editable = ("rank", "is_hidden")
    ordering = ("rank", "name")

    def get_readonly_fields(self, request: HttpRequest, obj: object = None) -> tuple[str, ...]:
        """Built-in keys are referred to by rules and the API: rename, never re-key."""
        return ("key",) if obj is not None and getattr(obj, "is_builtin", False) else ()

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return not (obj is not None and getattr(obj, "is_builtin", False))

    def get_actions(self, request: HttpRequest) -> dict[str, object]:
        """Bulk delete would bypass the built-in check; delete entries one at a time."""
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions  # type: ignore[return-value]


admin.site.register(TicketType, VocabularyAdmin)
admin.site.register(Priority, VocabularyAdmin)  # type: ignore[arg-type]


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin[Tag]):
    search_fields = ("name",)
