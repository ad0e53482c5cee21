"""Ticket forms: create, update, respond, and the panel's query box."""

from __future__ import annotations

from typing import Any

from django import forms
from django.urls import reverse

from supportdesk.accounts.models import User
from supportdesk.accounts.services import find_user
from supportdesk.errors import NotFound
from supportdesk.tickets import queries
from supportdesk.tickets.models import Channel, Status
from supportdesk.tickets.validation import TEXT_MAX, TITLE_MAX
from supportdesk.web.forms.fields import EmailListField, MultipleFileField
from supportdesk.web.forms.widgets import FastSelect, FastSelectMultiple

# How a customer spoke, as an agent logging it on the web may record it.
LOGGED_CHANNELS = [(c.value, c.label) for c in (Channel.WEB, Channel.PHONE, Channel.CHAT)]


def customer_by_email(email: object) -> User | None:
    """The user with this email, or None; a read for choosing the requester's organization."""
    if not isinstance(email, str) or not email.strip() or "\x00" in email:
        return None
    try:
        return find_user(email)
    except NotFound:
        return None


def application_choices(organization_id: int | None) -> list[Any]:
    applications = list(queries.applications_for(organization_id))
    if organization_id is not None:
        return [("", "All applications"), *((a.pk, a.name) for a in applications)]
    grouped: dict[str, list[tuple[int, str]]] = {}
    for application in applications:
        grouped.setdefault(application.organization.name, []).append(
            (application.pk, application.name)
        )
    return [("", "All applications"), *grouped.items()]


def environment_choices(organization_id: int | None) -> list[Any]:
    grouped: dict[str, list[tuple[int, str]]] = {}
    for environment in queries.environments_for(organization_id):
        application = environment.application
        label = (
            application.name
            if organization_id is not None
            else f"{application.organization.name} / {application.name}"
        )
        grouped.setdefault(label, []).append((environment.pk, environment.name))
    return list(grouped.items())


class _UserField(forms.EmailField):
    """An email that must belong to a user; cleans to the User."""

    def clean(self, value: Any) -> User | None:  # type: ignore[override]
        email = super().clean(value)
        if not email:
            return None
        user = customer_by_email(email)
        if user is None:
            raise forms.ValidationError(f"{self.label}: no user has the email {email}.")
        return user


class TicketFieldsForm(forms.Form):
    """The fields a customer sets and edits; agents' forms add theirs."""

    type = forms.ChoiceField(label="Type", widget=FastSelect)
    priority = forms.ChoiceField(label="Priority", widget=FastSelect)
    application = forms.TypedChoiceField(
        label="Application", coerce=int, empty_value=None, required=False, widget=FastSelect
    )
    environments = forms.TypedMultipleChoiceField(
        label="Environments",
        coerce=int,
        required=False,
        widget=FastSelectMultiple,
        help_text="Choose none for all environments of the application.",
    )
    title = forms.CharField(label="Subject", max_length=TITLE_MAX)
    description = forms.CharField(
        label="Description",
        required=False,
        max_length=TEXT_MAX,
        widget=forms.Textarea(attrs={"rows": 8}),
        help_text="Markdown is supported.",
    )
    tags = forms.MultipleChoiceField(
        label="Tags", required=False, widget=forms.CheckboxSelectMultiple
    )
    ccs = EmailListField(
        label="CCs", help_text="Email addresses, separated by commas or new lines."
    )

    def __init__(self, *args: Any, organization_id: int | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["type"].choices = [(t.key, t.name) for t in queries.offered_types()]  # type: ignore[attr-defined]
        self.fields["priority"].choices = [  # type: ignore[attr-defined]
            (p.key, p.name) for p in queries.offered_priorities()
        ]
        self.fields["application"].choices = application_choices(organization_id)  # type: ignore[attr-defined]
        self.fields["environments"].choices = environment_choices(organization_id)  # type: ignore[attr-defined]
        self.fields["tags"].choices = [(t.name, t.name) for t in queries.offered_tags()]  # type: ignore[attr-defined]
        # With JavaScript, choosing an application narrows the environments to its own;
        # without, every environment is offered, grouped by application.
        self.fields["application"].widget.attrs.update(
            {
                "hx-get": reverse("environment_options"),
                "hx-trigger": "change",
                "hx-target": "#id_environments",
                "hx-include": "#id_application, #id_requester, #id_environments",
            }
        )


class NewTicketForm(TicketFieldsForm):
    attachments = MultipleFileField(label="Attachments")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The first entries are Incident and Urgent, which page on-call: never the default.
        self.fields["type"].initial = "question"
        self.fields["priority"].initial = "normal"


class AgentNewTicketForm(NewTicketForm):
    """An agent opens a ticket for a customer, e.g. to log a phone call or a chat."""

    requester = _UserField(label="Requester (customer email)")
    channel = forms.ChoiceField(
        label="Channel", choices=LOGGED_CHANNELS, initial=Channel.WEB, required=False
    )
    field_order = ("requester", "channel")


class EditTicketForm(TicketFieldsForm):
    version = forms.IntegerField(widget=forms.HiddenInput, min_value=1)


class AgentEditTicketForm(EditTicketForm):
    status = forms.ChoiceField(label="Status", choices=Status.choices)
    assignee = forms.TypedChoiceField(
        label="Assignee", coerce=int, empty_value=None, required=False
    )
    problem = forms.IntegerField(
        label="Problem (ticket number)",
        required=False,
        min_value=1,
        max_value=2**31 - 1,
        help_text="For an incident: the problem ticket that caused it.",
    )
    requester = _UserField(label="Requester (customer email)")
    field_order = ("status", "assignee", "requester")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["assignee"].choices = [  # type: ignore[attr-defined]
            ("", "Nobody"),
            *((a.pk, a.display_name) for a in queries.active_agents()),
        ]


class ResponseForm(forms.Form):
    body = forms.CharField(
        label="Response",
        max_length=TEXT_MAX,
        widget=forms.Textarea(attrs={"rows": 6}),
        help_text="Markdown is supported.",
    )
    attachments = MultipleFileField(label="Attachments")


class AgentResponseForm(ResponseForm):
    internal = forms.BooleanField(
        label="Internal note (agents only, never shown to the customer)", required=False
    )
    channel = forms.ChoiceField(
        label="Channel", choices=LOGGED_CHANNELS, initial=Channel.WEB, required=False
    )
    on_behalf_of = _UserField(
        label="On behalf of (customer email)",
        required=False,
        help_text="To log a call or chat: the customer who spoke.",
    )


class FilterForm(forms.Form):
    """The query box: words and filters; an invalid filter is ignored, not an error page."""

    q = forms.CharField(label="Search", required=False, max_length=200)
    type = forms.ChoiceField(label="Type", required=False, widget=FastSelect)
    priority = forms.ChoiceField(label="Priority", required=False, widget=FastSelect)
    tag = forms.ChoiceField(label="Tag", required=False, widget=FastSelect)
    status = forms.ChoiceField(
        label="Status",
        required=False,
        choices=[("", "Any status"), *Status.choices],
        widget=FastSelect,
    )
    application = forms.TypedChoiceField(
        label="Application", coerce=int, empty_value=None, required=False, widget=FastSelect
    )

    def __init__(self, *args: Any, organization_id: int | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["type"].choices = [  # type: ignore[attr-defined]
            ("", "Any type"),
            *((t.key, t.name) for t in queries.offered_types()),
        ]
        self.fields["priority"].choices = [  # type: ignore[attr-defined]
            ("", "Any priority"),
            *((p.key, p.name) for p in queries.offered_priorities()),
        ]
        self.fields["tag"].choices = [  # type: ignore[attr-defined]
            ("", "Any tag"),
            *((t.name, t.name) for t in queries.offered_tags()),
        ]
        if organization_id is None:
            # Agents search across every organization's applications: hundreds of options
            # that cost more to render than the queue itself (bench/). They filter by words.
            del self.fields["application"]
            return
        choices = application_choices(organization_id)
        self.fields["application"].choices = [("", "Any application"), *choices[1:]]  # type: ignore[attr-defined]

    def ticket_filter(self) -> queries.TicketFilter:
        data = self.cleaned_data if self.is_valid() else getattr(self, "cleaned_data", {})
        return queries.TicketFilter(
            words=data.get("q") or "",
            type=data.get("type") or "",
            priority=data.get("priority") or "",
            tag=data.get("tag") or "",
            status=data.get("status") or "",
            application=data.get("application"),
        )

    @property
    def is_filtered(self) -> bool:
        return any(value not in (None, "") for value in self.ticket_filter().__dict__.values())
