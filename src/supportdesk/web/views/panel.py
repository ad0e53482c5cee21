"""The customer support panel: Open / All / Closed, a query box, 25 tickets a page."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Page, Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from supportdesk.accounts.models import User
from supportdesk.tickets import queries
from supportdesk.web.forms.tickets import FilterForm

PAGE_SIZE = 25
PANEL_TABS = (("open", "Open"), ("all", "All"), ("closed", "Closed"))


def paginate(request: HttpRequest, tickets: object) -> tuple[Page, list[object]]:
    """One page of a ticket list, evaluated once so the template adds no queries."""
    page = Paginator(tickets, PAGE_SIZE).get_page(request.GET.get("page"))  # type: ignore[arg-type]
    return page, list(page.object_list)


def filter_form(request: HttpRequest, user: User) -> FilterForm:
    organization_id = None if user.is_agent else user.organization_id
    return FilterForm(request.GET, organization_id=organization_id)


@login_required
def panel(request: HttpRequest) -> HttpResponse:
    user: User = request.user  # type: ignore[assignment]
    view = request.GET.get("view", "open")
    if view not in queries.PANEL_VIEWS:
        view = "open"
    form = filter_form(request, user)
    page, rows = paginate(request, queries.customer_panel(user, view, form.ticket_filter()))
    return render(
        request,
        "tickets/panel.html",
        {"form": form, "page": page, "rows": rows, "view": view, "tabs": PANEL_TABS},
    )
