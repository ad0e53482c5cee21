"""The agent workspace: queues of tickets to work on."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from supportdesk.accounts.models import User
from supportdesk.tickets import queries
from supportdesk.web.views.panel import filter_form, paginate

QUEUES = {
    "unassigned": "Unassigned",
    "mine": "Mine",
    "urgent": "Urgent",
    "open": "All open",
    "all": "All tickets",
}
assert set(QUEUES) == set(queries.AGENT_QUEUES)  # noqa: S101  (a new queue needs a title)


@login_required
def agent_queue(request: HttpRequest, queue: str) -> HttpResponse:
    user: User = request.user  # type: ignore[assignment]
    if not user.is_agent or queue not in QUEUES:
        raise Http404("No such queue.")
    form = filter_form(request, user)
    page, rows = paginate(request, queries.agent_queue(user, queue, form.ticket_filter()))
    return render(
        request,
        "agent/queue.html",
        {"form": form, "page": page, "rows": rows, "queue": queue, "title": QUEUES[queue]},
    )
