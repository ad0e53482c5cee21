"""Login and profile forms."""

from __future__ import annotations

from typing import Any

from django import forms

from supportdesk.accounts.models import TIME_ZONES
from supportdesk.web.forms.widgets import FastSelect


class LoginForm(forms.Form):
    email = forms.CharField(
        label="Email",
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "username", "autofocus": True}),
    )
    password = forms.CharField(
        label="Password",
        max_length=1024,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )


class ProfileForm(forms.Form):
    name = forms.CharField(label="Name", max_length=200, required=False)
    time_zone = forms.ChoiceField(
        label="Time zone",
        choices=[(zone, zone) for zone in TIME_ZONES],
        widget=FastSelect,
        help_text="Times on every page are shown in this zone.",
    )
    mail_optional = forms.BooleanField(
        label="Mail me about field changes and other optional notices",
        required=False,
        help_text="Acknowledgements, responses and status changes are always mailed.",
    )
    mail_unassigned = forms.BooleanField(
        label="Mail me about customer responses on unassigned tickets",
        required=False,
        help_text="An optional notice: it needs the box above too.",
    )

    def __init__(self, *args: Any, is_agent: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not is_agent:  # customers are never told of unassigned tickets
            del self.fields["mail_unassigned"]


class ApiTokenForm(forms.Form):
    name = forms.CharField(
        label="Token name",
        max_length=100,
        help_text="What the token is for, e.g. “monitoring”, to tell your tokens apart.",
    )
    read_only = forms.BooleanField(
        label="Read-only (the token can read but not change anything)", required=False
    )
    expires_days = forms.IntegerField(
        label="Expires after (days)",
        required=False,
        min_value=1,
        max_value=3650,
        help_text="Leave empty for a token that does not expire.",
    )
    # A random value per rendered form: sent twice (a refresh re-posts it), it creates no
    # second token. Only these values are kept in the session, never a secret.
    once = forms.CharField(widget=forms.HiddenInput, required=False, max_length=64)
