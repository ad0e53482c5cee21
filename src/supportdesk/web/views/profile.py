"""The user's own settings: name, time zone, password."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.debug import sensitive_post_parameters

from supportdesk.accounts.models import User
from supportdesk.accounts.services import update_profile
from supportdesk.errors import InvalidChange
from supportdesk.web.forms.accounts import ProfileForm
from supportdesk.web.views.errors import add_domain_error


def _password_form(user: User, data: object = None) -> PasswordChangeForm:
    form = PasswordChangeForm(user, data)
    form.fields["old_password"].widget.attrs.pop("autofocus", None)
    return form


@sensitive_post_parameters("old_password", "new_password1", "new_password2")
@login_required
def profile(request: HttpRequest) -> HttpResponse:
    user: User = request.user  # type: ignore[assignment]
    profile_form = ProfileForm(initial={"name": user.name, "time_zone": user.time_zone})
    password_form = _password_form(user)
    status = 200
    if request.method == "POST" and request.POST.get("form") == "password":
        password_form = _password_form(user, request.POST)
        if password_form.is_valid():
            password_form.save()
            update_session_auth_hash(request, password_form.user)  # stay logged in here only
            messages.success(request, "Your password is changed.")
            return redirect("profile")
        status = 400
    elif request.method == "POST":
        profile_form = ProfileForm(request.POST)
        if profile_form.is_valid():
            try:
                update_profile(
                    user,
                    name=profile_form.cleaned_data["name"],
                    time_zone=profile_form.cleaned_data["time_zone"],
                )
            except InvalidChange as error:
                add_domain_error(profile_form, error)
            else:
                messages.success(request, "Your profile is saved.")
                return redirect("profile")
        status = 400
    return render(
        request,
        "profile/profile.html",
        {"profile_form": profile_form, "password_form": password_form},
        status=status,
    )
