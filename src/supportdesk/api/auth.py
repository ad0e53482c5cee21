"""Bearer tokens, and nothing else: no session, so no CSRF check can answer before the 401."""

from __future__ import annotations

from django.http import HttpRequest
from ninja.security import HttpBearer

from supportdesk.accounts.models import ApiToken, User
from supportdesk.accounts.services import authenticate_token, touch_token
from supportdesk.api.problems import Problem
from supportdesk.api.ratelimit import count_request

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class ApiRequest(HttpRequest):
    """A request that passed BearerToken: `auth` is the acting user."""

    auth: User
    api_token: ApiToken


class BearerToken(HttpBearer):
    def __call__(self, request: HttpRequest) -> User | None:
        # Ninja's own version logs a malformed header in DEBUG, and it may hold a secret.
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        return self.authenticate(request, token)

    def authenticate(self, request: HttpRequest, token: str) -> User | None:
        """The token's user, or None (a 401). The token itself is never logged."""
        api_token = authenticate_token(token.strip()) if token.strip() else None
        if api_token is None:
            return None
        count_request(api_token)
        if api_token.read_only and request.method not in SAFE_METHODS:
            raise Problem(403, "This token is read-only.")
        touch_token(api_token)
        request.api_token = api_token  # type: ignore[attr-defined]
        return api_token.user
