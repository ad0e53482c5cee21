"""Errors as RFC 9457 problem details: `application/problem+json` with type, title, status,
detail and, for validation, the failing fields in `errors`."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from http import HTTPStatus

from django.http import HttpResponse

PROBLEM_TYPE = "urn:supportdesk:problem:"


class Problem(Exception):  # noqa: N818  (it is the problem document, not an "error" object)
    """An answer the API gives instead of a result; raised anywhere in a request."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        errors: Sequence[Mapping[str, str]] = (),
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = list(errors)
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


def problem_response(problem: Problem) -> HttpResponse:
    phrase = HTTPStatus(problem.status).phrase
    body: dict[str, object] = {
        "type": PROBLEM_TYPE + phrase.lower().replace(" ", "-").replace("'", ""),
        "title": phrase,
        "status": problem.status,
        "detail": problem.detail,
    }
    if problem.errors:
        body["errors"] = problem.errors
    body.update(problem.extra)
    response = HttpResponse(
        json.dumps(body), status=problem.status, content_type="application/problem+json"
    )
    for name, value in problem.headers.items():
        response[name] = value
    return response


def field_error(field: str, detail: str) -> dict[str, str]:
    return {"field": field, "detail": detail}
