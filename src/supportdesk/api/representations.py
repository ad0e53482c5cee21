"""Rows to the shapes in schemas.py; each reads only what its query loaded up front."""

from __future__ import annotations

from typing import Any

from django.urls import reverse

from supportdesk.accounts.models import User
from supportdesk.events.models import Event
from supportdesk.tickets.access import visible_problem
from supportdesk.tickets.models import Attachment, Response, Ticket


def user_ref(user: User | None) -> dict[str, Any] | None:
    if user is None:
        return None
    return {"id": user.pk, "email": user.email, "name": user.name}


def ticket_summary(ticket: Ticket) -> dict[str, Any]:
    return {
        "number": ticket.number,
        "title": ticket.title,
        "type": ticket.type.key,
        "priority": ticket.priority.key,
        "status": ticket.status,
        "organization": {"id": ticket.organization.pk, "name": ticket.organization.name},
        "requester": user_ref(ticket.requester),
        "assignee": user_ref(ticket.assignee),
        "application": ticket.application_id,
        "tags": sorted(tag.name for tag in ticket.tags.all()),
        "channel": ticket.channel,
        "version": ticket.version,
        "created_at": ticket.created_at,
        "updated_at": ticket.updated_at,
        "closed_at": ticket.closed_at,
    }


def ticket_detail(user: User, ticket: Ticket) -> dict[str, Any]:
    problem = visible_problem(user, ticket)
    return {
        **ticket_summary(ticket),
        "description": ticket.description,
        "environments": sorted(e.pk for e in ticket.environments.all()),
        "ccs": sorted(cc.email for cc in ticket.ccs.all()),
        "problem": None
        if problem is None
        else {"status": problem.status, "number": problem.number, "title": problem.title},
    }


def attachment(item: Attachment, number: int) -> dict[str, Any]:
    return {
        "id": item.pk,
        "filename": item.filename,
        "size": item.size,
        "content_type": item.content_type,
        "url": reverse("api:attachment_download", args=[number, item.pk]),
        "response": item.response_id,
    }


def response(item: Response, number: int) -> dict[str, Any]:
    return {
        "id": item.pk,
        "author": user_ref(item.author),
        "author_email": item.author_email,
        "body": item.body,
        "internal": item.is_internal,
        "channel": item.channel,
        "logged_by": user_ref(item.logged_by),
        "attachments": [attachment(a, number) for a in item.attachments.all()],
        "created_at": item.created_at,
    }


def event(item: Event) -> dict[str, Any]:
    return {
        "id": item.pk,
        "kind": item.kind,
        "actor": user_ref(item.actor),
        "via": item.via,
        "changes": item.changes,
        "version": item.version,
        "internal": item.is_internal,
        "created_at": item.created_at,
    }
