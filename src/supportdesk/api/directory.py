"""What a client needs to fill a ticket: who am I, organizations with their applications
and environments, and the vocabularies."""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, QuerySet
from ninja import Router

from supportdesk.accounts.models import Application
from supportdesk.api.auth import ApiRequest
from supportdesk.api.schemas import (
    READ_PROBLEMS,
    MeOut,
    OrganizationOut,
    TagOut,
    VocabularyOut,
    answers,
)
from supportdesk.tickets import queries
from supportdesk.tickets.access import visible_organizations
from supportdesk.tickets.models import Priority, Tag, TicketType

router = Router(tags=["directory"])


@router.get("/users/me", response=answers({200: MeOut}, READ_PROBLEMS), operation_id="get_me")
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


@router.get(
    "/organizations",
    response=answers({200: list[OrganizationOut]}, READ_PROBLEMS),
    operation_id="list_organizations",
)
def list_organizations(request: ApiRequest) -> list[dict[str, Any]]:
    applications = Application.objects.order_by("name", "id").prefetch_related("environments")
    organizations = (
        visible_organizations(request.auth)
        .order_by("name", "id")
        .prefetch_related(Prefetch("applications", queryset=applications))
    )
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
        for org in organizations
    ]


@router.get(
    "/types", response=answers({200: list[VocabularyOut]}, READ_PROBLEMS), operation_id="list_types"
)
def list_types(request: ApiRequest) -> QuerySet[TicketType]:
    return queries.offered_types()


@router.get(
    "/priorities",
    response=answers({200: list[VocabularyOut]}, READ_PROBLEMS),
    operation_id="list_priorities",
)
def list_priorities(request: ApiRequest) -> QuerySet[Priority]:
    return queries.offered_priorities()


@router.get("/tags", response=answers({200: list[TagOut]}, READ_PROBLEMS), operation_id="list_tags")
def list_tags(request: ApiRequest) -> QuerySet[Tag]:
    return queries.offered_tags()
