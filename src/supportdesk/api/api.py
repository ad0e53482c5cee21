"""The REST API under /api/v1/: routers, Bearer auth, and every error as problem+json."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI, Router
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.openapi.schema import OpenAPISchema

from supportdesk.api import attachments, directory, mail, responses, tickets
from supportdesk.api.auth import BearerToken
from supportdesk.api.parsing import StrictJsonParser
from supportdesk.api.problems import Problem, field_error, problem_response
from supportdesk.errors import Conflict, DomainError, Forbidden, InvalidChange, NotFound

PROBLEM_JSON = "application/problem+json"


class SupportdeskAPI(NinjaAPI):
    def get_openapi_schema(
        self, *, path_prefix: str | None = None, path_params: dict[str, Any] | None = None
    ) -> OpenAPISchema:
        """Ninja documents every answer as application/json; errors are problem+json."""
        schema = super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params)
        for methods in schema["paths"].values():
            for operation in methods.values():
                for status, answer in operation.get("responses", {}).items():
                    content = answer.get("content", {})
                    if int(status) >= 400 and "application/json" in content:
                        content[PROBLEM_JSON] = content.pop("application/json")
        return schema


api = SupportdeskAPI(
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
api.add_router("", mail.router)

# Last, so that it only answers what no route above matched: in no operation list.
unknown = Router(auth=None)
ANY_METHOD = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


@unknown.api_operation(ANY_METHOD, "/", include_in_schema=False, url_name="api_root")
def api_root(request: HttpRequest) -> HttpResponse:
    raise Problem(404, "No endpoint here; the API is described at /api/v1/openapi.json.")


@unknown.api_operation(ANY_METHOD, "/{path:rest}", include_in_schema=False, url_name="api_unknown")
def unknown_path(request: HttpRequest, rest: str) -> HttpResponse:
    raise Problem(404, "No such endpoint; the API is described at /api/v1/openapi.json.")


api.add_router("", unknown)


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
