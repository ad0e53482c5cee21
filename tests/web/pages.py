"""What a browser does on the pages: log in, post a form as it was shown."""

from __future__ import annotations

from django.test import Client


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def edit_form_data(ticket, **changes) -> dict:
    """The Update Ticket form as an agent's browser posts it, with `changes` typed in."""
    ticket.refresh_from_db()
    data = {
        "version": ticket.version,
        "type": ticket.type.key,
        "priority": ticket.priority.key,
        "application": ticket.application_id or "",
        "environments": [e.pk for e in ticket.environments.all()],
        "title": ticket.title,
        "description": ticket.description,
        "tags": [t.name for t in ticket.tags.all()],
        "ccs": "\n".join(c.email for c in ticket.ccs.all()),
        "status": ticket.status,
        "assignee": ticket.assignee_id or "",
        "problem": ticket.problem.number if ticket.problem else "",
        "requester": ticket.requester.email,
    }
    data.update(changes)
    return data


def customer_form_data(ticket, **changes) -> dict:
    """The same form as a customer sees it: without the agents' fields."""
    data = edit_form_data(ticket, **changes)
    for name in ("status", "assignee", "problem", "requester"):
        if name not in changes:
            del data[name]
    return data
