from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth.password_validation import validate_password
from django.http import HttpRequest

from supportdesk.accounts.models import ApiToken, Application, Environment, Organization, User
from supportdesk.accounts.services import deactivate_user


class ApplicationInline(admin.TabularInline[Application, Organization]):
    model = Application
    extra = 0


class EnvironmentInline(admin.TabularInline[Environment, Application]):
    model = Environment
    extra = 0


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin[Organization]):
    search_fields = ("name",)
    inlines = (ApplicationInline,)


@admin.register(Application)
class ApplicationAdmin(admin.ModelAdmin[Application]):
    list_display = ("name", "organization")
    list_filter = ("organization",)
    inlines = (EnvironmentInline,)


@admin.register(Environment)
class EnvironmentAdmin(admin.ModelAdmin[Environment]):
    list_display = ("name", "application")


class UserAdminForm(forms.ModelForm[User]):
    """The stored hash is never shown; an admin sets a new password instead."""

    new_password = forms.CharField(
        label="New password",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Leave empty to keep the current one. A new user without one cannot log in.",
    )

    class Meta:
        model = User
        fields = ("email", "name", "role", "organization", "time_zone", "is_active")

    def clean_new_password(self) -> str:
        password: str = self.cleaned_data["new_password"]
        if password:
            validate_password(password, self.instance)
        return password


@admin.register(User)
class UserAdmin(admin.ModelAdmin[User]):
    form = UserAdminForm
    list_display = ("email", "name", "role", "organization", "is_active")
    list_filter = ("role", "is_active", "organization")
    search_fields = ("email", "name")
    fields = (
        "email", "name", "role", "organization", "time_zone", "is_active", "new_password",
        "last_login",
    )  # fmt: skip
    readonly_fields = ("last_login",)

    def save_model(self, request: HttpRequest, obj: User, form: Any, change: bool) -> None:
        """Deactivating here must end sessions and tokens, as the service does."""
        was_active = change and User.objects.filter(pk=obj.pk, is_active=True).exists()
        if form.cleaned_data.get("new_password"):
            obj.set_password(form.cleaned_data["new_password"])
        elif not change:
            obj.set_unusable_password()
        super().save_model(request, obj, form, change)
        if was_active and not obj.is_active:
            deactivate_user(obj)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin[ApiToken]):
    list_display = ("prefix", "user", "read_only", "created_at", "expires_at", "revoked_at")
    readonly_fields = ("digest", "prefix", "created_at", "last_used_at")
