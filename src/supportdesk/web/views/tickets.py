"""The ticket page and what is done from it: respond, re-open, close, download."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
)
from django.shortcuts import redirect, render
from django.urls import reverse

from supportdesk.accounts.models import User
from supportdesk.errors import Conflict, Forbidden, InvalidChange
from supportdesk.events.models import Via
from supportdesk.notify.deliveries import deliveries_for
from supportdesk.tickets import access, queries, services
from supportdesk.tickets.models import Status, Ticket
from supportdesk.web.forms.tickets import AgentResponseForm, ResponseForm
from supportdesk.web.views.errors import add_domain_error, maps_domain_errors

# Images a browser shows but cannot run; anything else (SVG, HTML, PDF...) is sent as bytes.
SAFE_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})


def ticket_url(ticket: Ticket, anchor: str = "") -> str:
    url = reverse("ticket", args=[ticket.number])
    return f"{url}#{anchor}" if anchor else url


def response_form(user: User, data: object = None, files: object = None) -> ResponseForm:
    form_class = AgentResponseForm if user.is_agent else ResponseForm
    return form_class(data, files)


def render_ticket_page(
    request: HttpRequest, ticket: Ticket, *, form: ResponseForm | None = None, status: int = 200
) -> HttpResponse:
    user: User = request.user  # type: ignore[assignment]
    context = {
        "ticket": ticket,
        "problem": access.visible_problem(user, ticket),
        "responses": list(queries.conversation(user, ticket)),
        "events": list(queries.history(user, ticket)),
        "attachments": list(queries.ticket_attachments(ticket)),
        "can_reopen": access.can_reopen(user, ticket),
        "can_close": access.can_change_status(user) and ticket.status != Status.CLOSED,
        "response_form": form or response_form(user),
        # How each mail about the ticket went: agents' only (addresses, server replies).
        "mails": list(deliveries_for(ticket)) if user.is_agent else [],
    }
    return render(request, "tickets/detail.html", context, status=status)


@login_required
@maps_domain_errors
def ticket_detail(request: HttpRequest, number: int) -> HttpResponse:
    ticket = queries.ticket_page(request.user, number)  # type: ignore[arg-type]
    return render_ticket_page(request, ticket)


@login_required
@maps_domain_errors
def respond(request: HttpRequest, number: int) -> HttpResponse:
    user: User = request.user  # type: ignore[assignment]
    ticket = queries.ticket_page(user, number)
    if request.method != "POST":
        return redirect(ticket_url(ticket, "respond"))
    form = response_form(user, request.POST, request.FILES)
    status = 400
    if form.is_valid():
        data = form.cleaned_data
        # A customer's forged "internal" is passed on so that the service refuses it.
        internal = data.get("internal", "internal" in request.POST)
        try:
            response = services.add_response(
                ticket,
                acting_user=user,
                via=Via.WEB,
                body=data["body"],
                internal=internal,
                channel=data.get("channel"),
                on_behalf_of=data.get("on_behalf_of"),
                attachments=data["attachments"],
            )
        except (InvalidChange, Forbidden) as error:
            add_domain_error(form, error)
            status = 403 if isinstance(error, Forbidden) else 400
        else:
            what = "Internal note" if response.is_internal else "Response"
            messages.success(request, f"{what} added to #{ticket.number}.")
            return redirect(ticket_url(ticket, f"response-{response.pk}"))
    return render_ticket_page(request, ticket, form=form, status=status)


def _status_action(
    request: HttpRequest, number: int, change: Callable[[Ticket, User], object], done: str
) -> HttpResponse:
    """A one-button POST on the ticket page; a refused change is shown there as a message."""
    user: User = request.user  # type: ignore[assignment]
    ticket = access.access_ticket(user, number)  # 404 before 405: existence is not revealed
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    try:
        change(ticket, user)
    except (InvalidChange, Conflict) as error:
        messages.error(request, error.message)
    else:
        messages.success(request, done.format(number=ticket.number))
    return redirect(ticket_url(ticket))


@login_required
@maps_domain_errors
def reopen(request: HttpRequest, number: int) -> HttpResponse:
    return _status_action(
        request,
        number,
        lambda ticket, user: services.reopen_ticket(ticket, acting_user=user, via=Via.WEB),
        "Ticket #{number} is open again.",
    )


@login_required
@maps_domain_errors
def close(request: HttpRequest, number: int) -> HttpResponse:
    return _status_action(
        request,
        number,
        lambda ticket, user: services.update_ticket(
            ticket, acting_user=user, via=Via.WEB, changes={"status": Status.CLOSED}
        ),
        "Ticket #{number} is closed.",
    )


@login_required
@maps_domain_errors
def download_attachment(request: HttpRequest, number: int, attachment_id: int) -> HttpResponse:
    """Always a download: a file someone uploaded must never run as a page of this site."""
    attachment = access.access_attachment(request.user, number, attachment_id)  # type: ignore[arg-type]
    if not default_storage.exists(attachment.file.name or ""):
        raise Http404("The file is missing.")
    content_type = (
        attachment.content_type
        if attachment.content_type in SAFE_IMAGE_TYPES
        else "application/octet-stream"
    )
    response = FileResponse(
        attachment.file.open("rb"),
        as_attachment=True,
        filename=attachment.filename,
        content_type=content_type,
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response
