"""What a client needs to fill a ticket: who am I, organizations with their applications
and environments, and the vocabularies."""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, QuerySet
from ninja import Router

from supportdesk.accounts.models import Application, Organization, User
from supportdesk.api.auth import ApiRequest
from supportdesk.api.schemas import MeOut, OrganizationOut, TagOut, VocabularyOut
from supportdesk.tickets import queries
from supportdesk.tickets.models import Priority, Tag, TicketType

router = Router(tags=["directory"])


def visible_organizations(user: User) -> QuerySet[Organization]:
    """A customer's own organization; every one for agents (they work all tickets)."""
    organizations = Organization.objects.all()
    if not user.is_agent:
        organizations = organizations.filter(id=user.organization_id or 0)
    return organizations.order_by("name", "id").prefetch_related(
        Prefetch(
            "applications",
            queryset=Application.objects.order_by("name", "id").prefetch_related("environments"),
        )
    )


@router.get("/users/me", response=MeOut, operation_id="get_me")
def me(request: ApiRequest) -> dict[str, Any]:
    user = request.auth
    return {
        "id": user.pk,
        "email": user.email,
        "name": user.name,
        "role": user.role,
        "organization": user.organization_id,
        "time_zone": user.time_zone,
    }


@router.get("/organizations", response=list[OrganizationOut], operation_id="list_organizations")
def list_organizations(request: ApiRequest) -> list[dict[str, Any]]:
    return [
        {
            "id": org.pk,
            "name": org.name,
            "applications": [
                {
                    "id": app.pk,
                    "name": app.name,
                    "environments": [
                        {"id": env.pk, "name": env.name}
                        for env in sorted(app.environments.all(), key=lambda e: (e.name, e.pk))
                    ],
                }
                for app in org.applications.all()
            ],
        }
        for org in visible_organizations(request.auth)
    ]


@router.get("/types", response=list[VocabularyOut], operation_id="list_types")
def list_types(request: ApiRequest) -> QuerySet[TicketType]:
    return queries.offered_types()


@router.get("/priorities", response=list[VocabularyOut], operation_id="list_priorities")
def list_priorities(request: ApiRequest) -> QuerySet[Priority]:
    return queries.offered_priorities()


@router.get("/tags", response=list[TagOut], operation_id="list_tags")
def list_tags(request: ApiRequest) -> QuerySet[Tag]:
    return queries.offered_tags()
