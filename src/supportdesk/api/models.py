"""What the API keeps between requests: idempotency keys and per-minute request counts."""

from __future__ import annotations

from django.db import models

from supportdesk.accounts.models import ApiToken, User


class IdempotencyKey(models.Model):
    """A POST made with an Idempotency-Key: the parsed request and the answer it got.

    The row is inserted first, in the transaction that does the work, so of two racing
    requests with one key only one can commit; the other reads this row (kept 24 hours).
    """

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    operation = models.CharField(max_length=100)
    request = models.JSONField()
    status = models.PositiveSmallIntegerField(default=0)
    response = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = (
            models.UniqueConstraint(fields=["user", "key"], name="idempotency_key_unique_per_user"),
        )

    def __str__(self) -> str:
        return f"{self.key} ({self.user_id})"


class RequestCount(models.Model):
    """Requests one token made in one minute; one row per token per minute."""

    token = models.ForeignKey(ApiToken, on_delete=models.CASCADE, related_name="+")
    minute = models.DateTimeField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = (
            models.UniqueConstraint(fields=["token", "minute"], name="request_count_per_minute"),
        )

    def __str__(self) -> str:
        return f"{self.token_id} {self.minute:%H:%M} {self.count}"
