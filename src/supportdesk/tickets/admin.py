from django.contrib import admin
from django.http import HttpRequest

from supportdesk.tickets.models import BuiltinProtected, Priority, Tag, TicketType


class VocabularyAdmin[Entry: BuiltinProtected](admin.ModelAdmin[Entry]):
    list_display = ("name", "key", "rank", "is_hidden", "is_builtin")
    list_editable = ("rank", "is_hidden")
    ordering = ("rank", "name")
    # Bulk delete would bypass the built-in check in delete(): entries go one at a time.
    actions = None

    def get_readonly_fields(
        self, request: HttpRequest, obj: Entry | None = None
    ) -> tuple[str, ...]:
        """Built-in keys are referred to by rules and the API: rename, never re-key."""
        return ("key",) if obj is not None and obj.is_builtin else ()

    def has_delete_permission(self, request: HttpRequest, obj: Entry | None = None) -> bool:
        return not (obj is not None and obj.is_builtin)


@admin.register(TicketType)
class TicketTypeAdmin(VocabularyAdmin[TicketType]):
    pass


@admin.register(Priority)
class PriorityAdmin(VocabularyAdmin[Priority]):
    pass


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin[Tag]):
    search_fields = ("name",)
