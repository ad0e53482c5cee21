"""Create New Ticket and Update Ticket, and the environment choices both reload."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_safe

from supportdesk.accounts.models import User
from supportdesk.errors import Conflict, Forbidden, InvalidChange
from supportdesk.events.models import Via
from supportdesk.tickets import queries, services
from supportdesk.tickets.models import Ticket
from supportdesk.web.forms.fields import text_as_list
from supportdesk.web.forms.tickets import (
    AgentEditTicketForm,
    AgentNewTicketForm,
    EditTicketForm,
    NewTicketForm,
    customer_by_email,
)
from supportdesk.web.views.errors import add_domain_error, maps_domain_errors
from supportdesk.web.views.tickets import ticket_url

# Fields only agents have on the edit form. A customer who posts one anyway (a forged form)
# has it passed on, so that the service refuses it as it would on any other channel.
AGENT_ONLY = ("status", "assignee", "problem", "requester")


def _requester_organization(email: object) -> int | None:
    """The organization of the customer an agent typed, to offer its applications."""
    requester = customer_by_email(email)
    if requester is None or not requester.is_customer:
        return None
    return requester.organization_id


def _scope(data: dict[str, Any]) -> dict[str, Any]:
    """Form values in the shape the services take."""
    return {
        "type": data["type"],
        "priority": data["priority"],
        "title": data["title"],
        "description": data["description"],
        "application": data["application"],
        "environments": data["environments"],
        "tags": data["tags"],
        "ccs": data["ccs"],
    }


def _status_of(error: Exception) -> int:
    return 403 if isinstance(error, Forbidden) else 400


@login_required
@maps_domain_errors
def new_ticket(request: HttpRequest) -> HttpResponse:
    user: User = request.user  # type: ignore[assignment]
    data = request.POST if request.method == "POST" else None
    if user.is_agent:
        source = data if data is not None else request.GET
        form: NewTicketForm = AgentNewTicketForm(
            data,
            request.FILES or None,
            organization_id=_requester_organization(source.get("requester")),
            initial={"requester": request.GET.get("requester", "")},
        )
    else:
        form = NewTicketForm(data, request.FILES or None, organization_id=user.organization_id)
    status = 200
    if data is not None:
        status = 400
        if form.is_valid():
            cleaned = form.cleaned_data
            try:
                ticket = services.create_ticket(
                    acting_user=user,
                    via=Via.WEB,
                    requester=cleaned.get("requester"),
                    channel=cleaned.get("channel"),
                    attachments=cleaned["attachments"],
                    **_scope(cleaned),
                )
            except (InvalidChange, Forbidden) as error:
                add_domain_error(form, error)
                status = _status_of(error)
            else:
                messages.success(request, f"Ticket #{ticket.number} is created.")
                return redirect(ticket_url(ticket))
    return render(request, "tickets/new.html", {"form": form}, status=status)


def _initial(ticket: Ticket) -> dict[str, Any]:
    return {
        "version": ticket.version,
        "type": ticket.type.key,
        "priority": ticket.priority.key,
        "application": ticket.application_id,
        "environments": [e.pk for e in ticket.environments.all()],
        "title": ticket.title,
        "description": ticket.description,
        "tags": [t.name for t in ticket.tags.all()],
        "ccs": text_as_list([c.email for c in ticket.ccs.all()]),
        "status": ticket.status,
        "assignee": ticket.assignee_id,
        "problem": ticket.problem.number if ticket.problem else None,
        "requester": ticket.requester.email,
    }


def _changes(request: HttpRequest, form: EditTicketForm) -> dict[str, Any]:
    """Only what the user changed, so an untouched field is never rewritten."""
    cleaned = form.cleaned_data
    changes = {name: cleaned[name] for name in form.changed_data if name != "version"}
    for name in AGENT_ONLY:
        if name not in form.fields and name in request.POST:
            changes[name] = request.POST[name]
    return changes


@login_required
@maps_domain_errors
def edit_ticket(request: HttpRequest, number: int) -> HttpResponse:
    """Update Ticket. The version the form was made from goes to the service, so an edit of
    a stale copy is refused with what changed instead of overwriting someone's change."""
    user: User = request.user  # type: ignore[assignment]
    ticket = queries.ticket_page(user, number)
    form_class = AgentEditTicketForm if user.is_agent else EditTicketForm
    data = request.POST if request.method == "POST" else None
    form = form_class(data, initial=_initial(ticket), organization_id=ticket.organization_id)
    status = 200
    if data is not None:
        status = 400
        if form.is_valid():
            before = ticket.version
            try:
                updated = services.update_ticket(
                    ticket,
                    acting_user=user,
                    via=Via.WEB,
                    changes=_changes(request, form),
                    expected_version=form.cleaned_data["version"],
                )
            except (InvalidChange, Forbidden, Conflict) as error:
                add_domain_error(form, error)
                status = _status_of(error)
            else:
                if updated.version == before:
                    messages.info(request, "Nothing was changed.")
                else:
                    messages.success(request, f"Ticket #{ticket.number} is updated.")
                return redirect(ticket_url(ticket))
    return render(request, "tickets/edit.html", {"form": form, "ticket": ticket}, status=status)


@login_required
@require_safe
def environment_options(request: HttpRequest) -> HttpResponse:
    """The <option>s for one application's environments, for the forms to reload on change.

    Only an application of the user's organization (for an agent: of the customer named as
    requester, or any before one is named: agents see every organization) has any; for a
    customer another organization's is answered like an unknown one, empty.
    """
    user: User = request.user  # type: ignore[assignment]
    if user.is_agent:
        organization_id = _requester_organization(request.GET.get("requester"))
    else:
        organization_id = user.organization_id
    application = request.GET.get("application", "")
    environments: list[Any] = []
    if (
        (organization_id is not None or user.is_agent)
        and application.isdigit()
        and len(application) < 12
    ):
        environments = list(queries.environments_for(organization_id, int(application)))
    selected = {value for value in request.GET.getlist("environments") if value.isdigit()}
    return render(
        request,
        "tickets/_environment_options.html",
        {"environments": environments, "selected": selected},
    )
