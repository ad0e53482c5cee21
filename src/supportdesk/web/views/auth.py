"""Log in (by email, throttled), log out, and the front door that sends each role home."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import authenticate, login, logout
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from supportdesk.accounts.throttle import is_throttled, record_failure
from supportdesk.web.forms.accounts import LoginForm


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Agents start at the queue of tickets nobody has taken; customers at their panel."""
    if request.user.is_agent:  # type: ignore[union-attr]
        return redirect("agent_queue", queue="unassigned")
    return redirect("panel")


def _next_url(request: HttpRequest) -> str:
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return ""


@sensitive_post_parameters("password")
@csrf_protect
@never_cache
def login_view(request: HttpRequest) -> HttpResponse:
    """Throttling is checked before the password, so a correct guess after the limit still
    gets 429: otherwise the limit would only slow an attacker down, not stop them."""
    form = LoginForm(request.POST if request.method == "POST" else None)
    next_url = _next_url(request)
    if request.method == "POST" and form.is_valid():
        email = form.cleaned_data["email"]
        address = request.META.get("REMOTE_ADDR", "")
        if is_throttled(email, address):
            minutes = settings.LOGIN_THROTTLE_SECONDS // 60
            return render(request, "auth/throttled.html", {"minutes": minutes}, status=429)
        user = authenticate(request, username=email, password=form.cleaned_data["password"])
        if user is None:
            record_failure(email, address)
            form.add_error(None, "The email or the password is wrong.")
        else:
            login(request, user)
            return redirect(next_url or settings.LOGIN_REDIRECT_URL)
    return render(request, "auth/login.html", {"form": form, "next": next_url})


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    logout(request)
    messages.info(request, "You are logged out.")
    return redirect(settings.LOGOUT_REDIRECT_URL)
