"""Login throttling: after too many failures for one email or from one address, refuse.

Counted in the database so every web process behind a load balancer sees the same count.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from supportdesk.accounts.models import LoginFailure


def is_throttled(email: str, address: str) -> bool:
    since = timezone.now() - timedelta(seconds=settings.LOGIN_THROTTLE_SECONDS)
    recent = LoginFailure.objects.filter(at__gte=since)
    return (
        recent.filter(email=email.strip().lower()).count() >= settings.LOGIN_FAILURES_PER_EMAIL
        or recent.filter(address=address).count() >= settings.LOGIN_FAILURES_PER_ADDRESS
    )


def record_failure(email: str, address: str) -> None:
    LoginFailure.objects.create(email=email.strip().lower()[:254], address=address[:64])


def prune_failures() -> int:
    cutoff = timezone.now() - timedelta(seconds=settings.LOGIN_THROTTLE_SECONDS)
    deleted, _ = LoginFailure.objects.filter(at__lt=cutoff).delete()
    return deleted
