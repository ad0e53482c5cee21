"""Request and response shapes. Inputs refuse unknown fields; rules stay in the services."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Literal

from ninja import Field, Schema
from ninja.responses import NinjaJSONEncoder
from pydantic import BaseModel, ConfigDict


class Input(Schema):
    model_config = ConfigDict(extra="forbid")


class TicketIn(Input):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "incident",
                    "priority": "urgent",
                    "title": "Checkout answers 502",
                    "description": "Since 14:02 UTC every payment fails.",
                }
            ]
        }
    )

    type: str = Field(max_length=32, examples=["question"])
    priority: str = Field(max_length=32, examples=["normal"])
    title: str = Field(max_length=200)
    description: str = ""
    requester: str | None = Field(None, description="Email of the customer (agents only).")
    application: int | None = None
    environments: list[int] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    ccs: list[str] = Field(default_factory=list)
    channel: Literal["web", "api", "email", "phone", "chat"] | None = None


class TicketPatch(Input):
    """Only the fields present change; status, assignee, problem and requester are agents'."""

    type: str | None = None
    priority: str | None = None
    title: str | None = None
    description: str | None = None
    application: int | None = None
    environments: list[int] | None = None
    tags: list[str] | None = None
    ccs: list[str] | None = None
    status: Literal["open", "pending", "resolved", "closed"] | None = None
    assignee: int | None = Field(None, description="User id of an agent; null unassigns.")
    problem: int | None = Field(None, description="Number of a problem ticket; null unlinks.")
    requester: str | None = Field(None, description="Email of a customer of the organization.")


class ResponseIn(Input):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"body": "It works again since 14:30, thank you."}]}
    )

    body: str
    internal: bool = False
    channel: Literal["web", "api", "email", "phone", "chat"] | None = None
    on_behalf_of: str | None = Field(None, description="Email of the customer who called.")


class UserOut(Schema):
    id: int
    email: str
    name: str


class MeOut(UserOut):
    role: str
    organization: int | None
    time_zone: str


class OrganizationRef(Schema):
    id: int
    name: str


class ProblemOut(Schema):
    status: str
    number: int | None = None
    title: str | None = None


class TicketSummary(Schema):
    number: int
    title: str
    type: str
    priority: str
    status: str
    organization: OrganizationRef
    requester: UserOut
    assignee: UserOut | None
    application: int | None
    tags: list[str]
    channel: str
    version: int
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None


class TicketOut(TicketSummary):
    description: str
    environments: list[int]
    ccs: list[str]
    problem: ProblemOut | None


class TicketPage(Schema):
    items: list[TicketSummary]
    next_cursor: str | None


class AttachmentOut(Schema):
    id: int
    filename: str
    size: int
    content_type: str
    url: str
    response: int | None


class ResponseOut(Schema):
    id: int
    author: UserOut | None
    author_email: str
    body: str
    internal: bool
    channel: str
    logged_by: UserOut | None
    attachments: list[AttachmentOut]
    created_at: datetime


class EventOut(Schema):
    id: int
    kind: str
    actor: UserOut | None
    via: str
    changes: dict[str, Any]
    version: int
    internal: bool
    created_at: datetime


class EnvironmentOut(Schema):
    id: int
    name: str


class ApplicationOut(Schema):
    id: int
    name: str
    environments: list[EnvironmentOut]


class OrganizationOut(Schema):
    id: int
    name: str
    applications: list[ApplicationOut]


class VocabularyOut(Schema):
    key: str
    name: str


class TagOut(Schema):
    name: str


class ProblemDocument(Schema):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, str]] | None = None


# The problems each kind of operation can answer, documented in its `response=` mapping.
READ_PROBLEMS = (400, 401, 404, 422, 429)
WRITE_PROBLEMS = (*READ_PROBLEMS, 403, 409, 413, 415)


def answers(ok: Mapping[int, object], problems: Iterable[int]) -> dict[Any, object]:
    """A route's `response=`: its result and the problem+json statuses it may answer."""
    return {**ok, frozenset(problems): ProblemDocument}


def wire(model: BaseModel) -> Any:
    """What ninja itself sends for this schema (its encoder writes times to the millisecond),
    so an answer built by hand, stored for an idempotent replay, reads like a rendered one."""
    return json.loads(json.dumps(model.model_dump(), cls=NinjaJSONEncoder))
