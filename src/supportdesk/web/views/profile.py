"""The user's own settings: name, time zone, mail, password and API tokens."""

from __future__ import annotations

import secrets

from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.cache import add_never_cache_headers
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from supportdesk.accounts.models import User
from supportdesk.accounts.services import create_token, revoke_token, update_profile
from supportdesk.errors import InvalidChange
from supportdesk.notify.preferences import set_mail_preferences
from supportdesk.web.forms.accounts import ApiTokenForm, ProfileForm
from supportdesk.web.views.errors import add_domain_error


def _password_form(user: User, data: object = None) -> PasswordChangeForm:
    form = PasswordChangeForm(user, data)
    form.fields["old_password"].widget.attrs.pop("autofocus", None)
    return form


@sensitive_post_parameters("old_password", "new_password1", "new_password2")
@login_required
def profile(request: HttpRequest) -> HttpResponse:
    user: User = request.user  # type: ignore[assignment]
    profile_form = ProfileForm(
        initial={
            "name": user.name,
            "time_zone": user.time_zone,
            "mail_optional": user.mail_optional,
            "mail_unassigned": user.mail_unassigned,
        },
        is_agent=user.is_agent,
    )
    password_form = _password_form(user)
    token_form = _fresh_token_form()
    new_secret = ""
    status = 200
    if request.method == "POST" and request.POST.get("form") == "password":
        password_form = _password_form(user, request.POST)
        if password_form.is_valid():
            password_form.save()
            update_session_auth_hash(request, password_form.user)  # stay logged in here only
            messages.success(request, "Your password is changed.")
            return redirect("profile")
        status = 400
    elif request.method == "POST" and request.POST.get("form") == "token":
        token_form = ApiTokenForm(request.POST)
        if _sent_before(request, token_form):
            messages.info(
                request,
                "That form was sent before and its token created then; its secret was shown"
                " once. If you did not copy it, revoke that token below and create another.",
            )
            return redirect("profile")
        new_secret = _create_token(user, token_form)
        if new_secret:
            _remember_sent(request, token_form)
            token_form = _fresh_token_form()  # for the next token
        else:
            status = 400
    elif request.method == "POST":
        profile_form = ProfileForm(request.POST, is_agent=user.is_agent)
        if profile_form.is_valid():
            data = profile_form.cleaned_data
            try:
                update_profile(user, name=data["name"], time_zone=data["time_zone"])
                set_mail_preferences(
                    user,
                    optional=data["mail_optional"],
                    unassigned=data.get("mail_unassigned", user.mail_unassigned),
                )
            except InvalidChange as error:
                add_domain_error(profile_form, error)
            else:
                messages.success(request, "Your profile is saved.")
                return redirect("profile")
        status = 400
    response = render(
        request,
        "profile/profile.html",
        {
            "profile_form": profile_form,
            "password_form": password_form,
            "token_form": token_form,
            "tokens": list(user.api_tokens.all()),
            "new_secret": new_secret,
        },
        status=status,
    )
    if new_secret:
        # The secret is in this response only: no cache may keep a copy of it.
        add_never_cache_headers(response)
    return response


SENT_FORMS_KEPT = 20


def _fresh_token_form() -> ApiTokenForm:
    return ApiTokenForm(initial={"once": secrets.token_urlsafe(16)})


def _sent_before(request: HttpRequest, form: ApiTokenForm) -> bool:
    """A token form that already created a token: the browser re-sent it (a refresh)."""
    once = form.data.get("once", "")
    return bool(once) and once in request.session.get("token_forms_sent", [])


def _remember_sent(request: HttpRequest, form: ApiTokenForm) -> None:
    once = form.cleaned_data.get("once", "")
    if once:
        sent = request.session.get("token_forms_sent", [])
        request.session["token_forms_sent"] = [*sent, once][-SENT_FORMS_KEPT:]


def _create_token(user: User, form: ApiTokenForm) -> str:
    """The new token's secret, or "" with the errors on the form. The secret is rendered
    once in the answer to this POST: never stored, not in the session, not in a message."""
    if not form.is_valid():
        return ""
    try:
        _token, secret = create_token(
            user,
            name=form.cleaned_data["name"],
            read_only=form.cleaned_data["read_only"],
            expires_days=form.cleaned_data["expires_days"],
        )
    except InvalidChange as error:
        if error.field == "expires":
            form.add_error("expires_days", error.message)
        else:
            add_domain_error(form, error)
        return ""
    return secret


@login_required
@require_POST
def revoke_api_token(request: HttpRequest, token_id: int) -> HttpResponse:
    """Revoke one of the user's own tokens; anyone else's id is a 404, as for a missing one."""
    user: User = request.user  # type: ignore[assignment]
    token = get_object_or_404(user.api_tokens, pk=token_id)
    if token.revoked_at is None:
        revoke_token(token)
        messages.success(request, f"The token “{token.name or token.prefix}” is revoked.")
    return redirect("profile")
