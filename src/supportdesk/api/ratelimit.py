"""Requests a minute per token, counted in the database so every web process shares them."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from supportdesk.accounts.models import ApiToken
from supportdesk.api.models import RequestCount
from supportdesk.api.problems import Problem


def count_request(token: ApiToken) -> None:
    """Count one request; raises a 429 Problem with Retry-After past API_RATE_LIMIT a minute."""
    limit: int = settings.API_RATE_LIMIT
    if limit <= 0:
        return
    now = timezone.now()
    minute = now.replace(second=0, microsecond=0)
    rows = RequestCount.objects.filter(token=token, minute=minute)
    if not rows.update(count=F("count") + 1):
        try:
            with transaction.atomic():
                RequestCount.objects.create(token=token, minute=minute, count=1)
        except IntegrityError:  # another process made this minute's row meanwhile
            rows.update(count=F("count") + 1)
        else:
            RequestCount.objects.filter(token=token, minute__lt=minute).delete()
    count = rows.values_list("count", flat=True).first() or 0
    if count > limit:
        retry_after = int((minute + timedelta(minutes=1) - now).total_seconds()) + 1
        raise Problem(
            429,
            f"More than {limit} requests a minute with this token; try again later.",
            headers={"Retry-After": str(retry_after)},
        )
