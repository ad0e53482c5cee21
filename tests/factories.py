"""Test data made through the services, so it obeys the same rules as real data."""

from __future__ import annotations

import itertools
from typing import Any

from supportdesk.accounts import services as accounts
from supportdesk.accounts.models import Application, Organization, User
from supportdesk.events.models import Via
from supportdesk.tickets import services
from supportdesk.tickets.models import Status, Ticket

PASSWORD = "correct horse battery staple"
_counter = itertools.count(1)


def make_org(name: str | None = None) -> Organization:
    return accounts.get_or_create_organization(name or f"Org {next(_counter)}")


def make_user(
    email: str | None = None,
    *,
    role: str = "customer",
    org: Organization | None = None,
    name: str = "",
    time_zone: str = "UTC",
) -> User:
    if role == "customer" and org is None:
        org = make_org()
    return accounts.create_user(
        email=email or f"user{next(_counter)}@example.test",
        role=role,
        password=PASSWORD,
        organization=org,
        name=name,
        time_zone=time_zone,
    )


def make_app(
    org: Organization, name: str = "Shop", environments: tuple[str, ...] = ("Production", "Staging")
) -> Application:
    app = accounts.create_application(org, name)
    for env in environments:
        accounts.create_environment(app, env)
    return app


def make_ticket(
    *,
    requester: User,
    acting_user: User | None = None,
    status: str = Status.OPEN,
    type: str = "question",
    priority: str = "normal",
    title: str = "Cannot log in",
    description: str = "It says *no*.",
    agent: User | None = None,
    **fields: Any,
) -> Ticket:
    """A ticket opened by its requester (or acting_user), then moved to `status` by an agent."""
    ticket = services.create_ticket(
        acting_user=acting_user or requester,
        requester=requester if acting_user else None,
        via=Via.WEB,
        type=type,
        priority=priority,
        title=title,
        description=description,
        **fields,
    )
    if status != Status.OPEN:
        agent = (
            agent
            or User.objects.filter(role__in=["agent", "admin"], is_active=True).first()
            or make_user(role="agent")
        )
        ticket = services.update_ticket(
            ticket, acting_user=agent, via=Via.WEB, changes={"status": status}
        )
    return ticket
