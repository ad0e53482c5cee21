"""Log in (by email, throttled), log out, reset a forgotten password, and the front door that
sends each role home."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import authenticate, login, logout, password_validation
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import SetPasswordForm
from django.contrib.auth.views import INTERNAL_RESET_SESSION_TOKEN, PasswordResetConfirmView
from django.core.validators import MaxLengthValidator
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from supportdesk.accounts.models import User
from supportdesk.accounts.services import (
    EMAIL_MAX,
    PASSWORD_MAX,
    request_password_reset,
    reset_password,
)
from supportdesk.accounts.throttle import is_throttled, record_failure
from supportdesk.errors import InvalidChange
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


class PasswordResetRequestForm(forms.Form):
    email = forms.CharField(
        label="Email",
        max_length=EMAIL_MAX,
        help_text="The email you log in with.",
        widget=forms.EmailInput(attrs={"autocomplete": "username", "autofocus": True}),
    )


class NewPasswordForm(SetPasswordForm[User]):
    """Django's form (both fields must match, the validators run), capped at the length the
    login form accepts, with the validators' rules as plain help text."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in ("new_password1", "new_password2"):
            field = self.fields[name]
            field.validators.append(MaxLengthValidator(PASSWORD_MAX))
            field.widget.attrs["maxlength"] = str(PASSWORD_MAX)
        self.fields["new_password1"].widget.attrs["autofocus"] = True
        self.fields["new_password1"].help_text = " ".join(
            password_validation.password_validators_help_texts()
        )


@csrf_protect
@never_cache
def password_reset(request: HttpRequest) -> HttpResponse:
    """Answers with the same page whether or not the email has an account (or is over its
    limit), so it cannot be used to find out who has one; the mail leaves through the outbox."""
    form = PasswordResetRequestForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            request_password_reset(
                form.cleaned_data["email"], ip=request.META.get("REMOTE_ADDR") or None
            )
        except InvalidChange as error:
            form.add_error("email", error.message)
        else:
            return redirect("password_reset_sent")
    return render(request, "auth/password_reset.html", {"form": form})


def password_reset_sent(request: HttpRequest) -> HttpResponse:
    context = {
        "max_mails": settings.PASSWORD_RESETS_PER_USER,
        "minutes": settings.PASSWORD_RESET_THROTTLE_SECONDS // 60,
    }
    return render(request, "auth/password_reset_sent.html", context)


class PasswordResetConfirm(PasswordResetConfirmView):
    """Django's view checks the link and moves the token from the URL into the session (so
    no Referer carries it); setting the password is our service, which checks the token again
    under a row lock and ends the user's sessions. This browser is logged out afterwards and
    logs in with the new password: the login page proves it works."""

    form_class = NewPasswordForm
    template_name = "auth/password_reset_confirm.html"
    success_url = reverse_lazy("password_reset_done")

    def get_user(self, uidb64: str) -> User | None:
        user = super().get_user(uidb64)
        return user if user is not None and user.is_active else None

    def form_valid(self, form: SetPasswordForm[User]) -> HttpResponse:
        token = self.request.session.get(INTERNAL_RESET_SESSION_TOKEN, "")
        try:
            if self.user is None:  # dispatch shows the form only for a valid link's user
                raise InvalidChange("No such user.", field="token")
            reset_password(self.user, token, form.cleaned_data["new_password1"])
        except InvalidChange as error:
            if error.field == "new_password":
                form.add_error("new_password1", error.message)
                return self.form_invalid(form)
            self.validlink = False
            return self.render_to_response(self.get_context_data())
        logout(self.request)  # also drops the token kept in this session
        return HttpResponseRedirect(self.get_success_url())


password_reset_confirm = PasswordResetConfirm.as_view()


def password_reset_done(request: HttpRequest) -> HttpResponse:
    return render(request, "auth/password_reset_done.html")
