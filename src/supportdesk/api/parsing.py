"""Request bodies and query strings checked before any schema sees them: the content type,
the size, UTF-8, well-formed JSON and no NUL anywhere (PostgreSQL cannot store it)."""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest
from django.utils.datastructures import MultiValueDict
from ninja.parser import Parser

from supportdesk.api.problems import Problem


def _refuse_nul(value: object) -> None:
    if isinstance(value, str) and "\x00" in value:
        raise Problem(400, "The request contains a NUL character, which no text may hold.")
    if isinstance(value, dict):
        for key, item in value.items():
            _refuse_nul(key)
            _refuse_nul(item)
    elif isinstance(value, list):
        for item in value:
            _refuse_nul(item)


def read_body(request: HttpRequest) -> bytes:
    try:
        return request.body
    except RequestDataTooBig:
        raise Problem(413, "The request body is too large.") from None


# Routes (by URL name) whose POST also takes multipart/form-data: fields beside `files`.
FORM_ROUTES = frozenset({"ticket_responses"})


def accepts_form(request: HttpRequest) -> bool:
    match = request.resolver_match
    return (
        request.content_type == "multipart/form-data"
        and match is not None
        and match.url_name in FORM_ROUTES
    )


def form_fields(request: HttpRequest) -> dict[str, str]:
    """A multipart body's fields other than files; each name given once."""
    try:
        form = request.POST
    except RequestDataTooBig:
        raise Problem(413, "The request body is too large.") from None
    for name in form:
        if len(form.getlist(name)) > 1:
            raise Problem(400, f"The field {name} is given more than once.")
    fields = {name: form[name] for name in form}
    _refuse_nul(fields)
    return fields


class StrictJsonParser(Parser):
    """JSON only (and multipart forms where a route takes files), and a clear 400, 413 or
    415 for what cannot be read."""

    def parse_body(self, request: HttpRequest) -> Any:
        if accepts_form(request):
            return form_fields(request)
        if request.content_type != "application/json":
            raise Problem(415, "Send the body as application/json.")
        body = read_body(request)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise Problem(400, "The body is not valid UTF-8.") from None
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as error:
            raise Problem(400, f"The body is not valid JSON: {error}.") from None
        _refuse_nul(data)
        return data

    def parse_querydict(
        self, data: MultiValueDict[str, Any], list_fields: list[str], request: HttpRequest
    ) -> dict[str, Any]:
        result = super().parse_querydict(data, list_fields, request)
        _refuse_nul(list(data.keys()))
        for key in data:
            _refuse_nul(data.getlist(key))
        return result
