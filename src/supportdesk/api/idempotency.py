"""Idempotency-Key on POST: a retried request gets the first answer, never a second ticket.

The key row is inserted first, inside the transaction that does the work, under a unique
(user, key) constraint. Of racing requests one commits; the others fail to insert, which
happens only once the winner's transaction has ended, and then read its stored answer.
A request that fails (a 4xx) stores nothing, so it may be retried with the same key.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.http import HttpResponse
from django.utils import timezone

from supportdesk.accounts.models import User
from supportdesk.api.models import IdempotencyKey
from supportdesk.api.problems import Problem

KEEP_FOR = timedelta(hours=24)
KEY_MAX = 255

Outcome = tuple[int, dict[str, Any]]


def json_response(status: int, body: dict[str, Any]) -> HttpResponse:
    return HttpResponse(json.dumps(body), status=status, content_type="application/json")


def _replay(row: IdempotencyKey, operation: str, request: object) -> HttpResponse:
    if row.operation != operation or row.request != request:
        raise Problem(
            422,
            "This Idempotency-Key was used with a different request; use a new key.",
        )
    response = json_response(row.status, row.response or {})
    response["Idempotent-Replayed"] = "true"
    return response


def _stored(user: User, key: str) -> IdempotencyKey | None:
    return IdempotencyKey.objects.filter(
        user=user, key=key, created_at__gte=timezone.now() - KEEP_FOR
    ).first()


def run_once(
    user: User,
    key: str | None,
    *,
    operation: str,
    request: Callable[[], object],
    work: Callable[[], Outcome],
) -> HttpResponse:
    """Run `work` once per (user, key): its (status, JSON body) is stored and replayed.
    `request` gives what identifies the request; it is only needed when there is a key."""
    if key is None:
        return json_response(*work())
    if not key or len(key) > KEY_MAX or not key.isprintable():
        raise Problem(400, f"An Idempotency-Key is 1 to {KEY_MAX} printable characters.")
    fingerprint = request()
    row = _stored(user, key)
    if row is not None:
        return _replay(row, operation, fingerprint)
    IdempotencyKey.objects.filter(
        user=user, key=key, created_at__lt=timezone.now() - KEEP_FOR
    ).delete()
    try:
        with transaction.atomic():
            row = IdempotencyKey.objects.create(
                user=user, key=key, operation=operation, request=fingerprint
            )
            status, body = work()
            row.status, row.response = status, body
            row.save(update_fields=["status", "response"])
    except IntegrityError:
        row = _stored(user, key)
        if row is None:
            raise
        return _replay(row, operation, fingerprint)
    return json_response(status, body)
