"""The REST API under /api/v1/: routers, Bearer auth, and every error as problem+json."""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from supportdesk.api import attachments, directory, responses, tickets
from supportdesk.api.auth import BearerToken
from supportdesk.api.parsing import StrictJsonParser
from supportdesk.api.problems import Problem, field_error, problem_response
from supportdesk.errors import Conflict, DomainError, Forbidden, InvalidChange, NotFound

api = NinjaAPI(
    title="supportdesk",
    version="1",
    description="Tickets addressed by number; `Authorization: Bearer <token>`.",
    auth=BearerToken(),
    parser=StrictJsonParser(),
    urls_namespace="api",
)
api.add_router("", tickets.router)
api.add_router("", responses.router)
api.add_router("", attachments.router)
api.add_router("", directory.router)


@api.exception_handler(Problem)
def on_problem(request: HttpRequest, exc: Problem) -> HttpResponse:
    return problem_response(exc)


@api.exception_handler(AuthenticationError)
def on_unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return problem_response(
        Problem(
            401,
            "Send a valid API token as `Authorization: Bearer <token>`.",
            headers={"WWW-Authenticate": 'Bearer realm="supportdesk"'},
        )
    )


@api.exception_handler(HttpError)
def on_http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    if isinstance(exc.__cause__, Problem):  # raised while reading the body
        return problem_response(exc.__cause__)
    return problem_response(Problem(exc.status_code, str(exc)))


@api.exception_handler(RequestDataTooBig)
def on_too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    return problem_response(Problem(413, "The request body is too large."))


@api.exception_handler(Http404)
def on_404(request: HttpRequest, exc: Http404) -> HttpResponse:
    return problem_response(Problem(404, "Not found."))


def _field_name(location: list[object]) -> str:
    """('body', 'payload', 'title') -> 'title'; query and path names keep their place."""
    parts = [str(p) for p in location if p not in ("body", "payload", "query", "params", "path")]
    return ".".join(parts) or "body"


@api.exception_handler(ValidationError)
def on_invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    errors = [field_error(_field_name(list(e.get("loc", []))), str(e["msg"])) for e in exc.errors]
    detail = "; ".join(f"{e['field']}: {e['detail']}" for e in errors) or "Invalid request."
    return problem_response(Problem(422, detail, errors=errors))


@api.exception_handler(DomainError)
def on_domain_error(request: HttpRequest, exc: DomainError) -> HttpResponse:
    status = {NotFound: 404, Forbidden: 403, InvalidChange: 422, Conflict: 409}.get(type(exc), 422)
    errors = [field_error(exc.field, exc.message)] if exc.field else []
    extra = {"changed": exc.changed} if isinstance(exc, Conflict) else {}
    return problem_response(Problem(status, exc.message, errors=errors, extra=extra))
