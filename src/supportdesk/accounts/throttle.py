"""Login throttling: after 5 failures for one email or 20 from one address within 15 minutes,
refuse logins for that email or address for 15 minutes from the failure that hit the limit.

Counted in the database so every web process behind a load balancer sees the same count.
Attempts refused while locked are not counted, so the lock ends on time and an attacker
cannot keep a victim locked out forever from one address.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from supportdesk.accounts.models import LoginFailure


def _window() -> timedelta:
    return timedelta(seconds=settings.LOGIN_THROTTLE_SECONDS)


def _locked(failures: Sequence[datetime], limit: int, now: datetime) -> bool:
    """True while a failure that completed `limit` failures within one window is younger
    than one window."""
    window = _window()
    return any(
        failures[i] > now - window and failures[i] - failures[i - limit + 1] <= window
        for i in range(limit - 1, len(failures))
    )


def _failures(**match: str) -> list[datetime]:
    since = timezone.now() - 2 * _window()
    return list(
        LoginFailure.objects.filter(at__gte=since, **match)
        .order_by("at")
        .values_list("at", flat=True)
    )


def is_throttled(email: str, address: str) -> bool:
    now = timezone.now()
    return _locked(
        _failures(email=email.strip().lower()), settings.LOGIN_FAILURES_PER_EMAIL, now
    ) or _locked(_failures(address=address), settings.LOGIN_FAILURES_PER_ADDRESS, now)


def record_failure(email: str, address: str) -> None:
    LoginFailure.objects.create(email=email.strip().lower()[:254], address=address[:64])
    prune_failures()


def prune_failures() -> int:
    """Failures older than two windows can no longer lock anything."""
    cutoff = timezone.now() - 2 * _window()
    deleted, _ = LoginFailure.objects.filter(at__lt=cutoff).delete()
    return deleted
