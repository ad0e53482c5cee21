"""Error pages, and the one place where domain errors become HTTP answers or form errors."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django import forms
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from supportdesk.errors import Conflict, DomainError, Forbidden, NotFound


def _page(request: HttpRequest, status: int, title: str, message: str) -> HttpResponse:
    return render(
        request,
        "errors/error.html",
        {"title": title, "message": message, "status": status},
        status=status,
    )


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _page(request, 400, "Bad request", "The request could not be understood.")


def forbidden(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _page(request, 403, "Not allowed", "You are not allowed to do that.")


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _page(
        request,
        404,
        "Not found",
        "There is nothing here, or you do not have access to it.",
    )


def server_error(request: HttpRequest) -> HttpResponse:
    return _page(
        request,
        500,
        "Something went wrong",
        "The error has been logged. Nothing you typed was saved twice; please try again.",
    )


def maps_domain_errors(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """NotFound becomes the 404 page and Forbidden the 403 page, for whatever a view lets
    through; errors a form can show are caught by the view and given to `add_domain_error`."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except NotFound as error:
            raise Http404(error.message) from None
        except Forbidden as error:
            raise PermissionDenied(error.message) from None

    return wrapper


def add_domain_error(form: forms.Form, error: DomainError) -> None:
    """Show a refused change on the form: on the field the service named when the form has
    it, else above the form. A Conflict is always about the whole form."""
    if isinstance(error, NotFound) and error.field is None:
        raise error  # the ticket itself vanished from the user's view: a 404, not a form error
    field = None if isinstance(error, Conflict) else error.field
    form.add_error(field if field in form.fields else None, error.message)
