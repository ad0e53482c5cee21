"""The one API answer ninja renders itself: a method the path does not take (405)."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from supportdesk.api.problems import Problem, problem_response

API_PREFIX = "/api/v1/"


class MethodNotAllowedProblem:
    """Every API error is problem+json; ninja answers a wrong method with plain text, so this
    turns that answer into a problem document, keeping its Allow header."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code != 405 or not request.path.startswith(API_PREFIX):
            return response
        allowed = response.get("Allow", "")
        return problem_response(
            Problem(
                405,
                f"{request.method} is not allowed here; allowed: {allowed or 'none'}.",
                headers={"Allow": allowed},
            )
        )
