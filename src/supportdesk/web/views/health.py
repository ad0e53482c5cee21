"""Health check for load balancers and monitors: no login, no session.

The status code answers the load balancer's one question, "can this web process serve?":
503 only when the database does not answer. The worker's heartbeat and the queue depth are
reported in the body for monitors (alert on `worker.ok` false, on `queue.failed` above
zero, on a growing `queue.oldest_due_seconds` or `mail_spool.oldest_seconds`: mail the
gateway accepted and could not move into the database), but never turn the answer into a
503: a
stopped worker must not take every web process out of rotation, which would stop people
from working tickets while delaying mail that the outbox keeps anyway.
"""

from __future__ import annotations

import logging

from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from supportdesk.events.health import queue_status, worker_status
from supportdesk.intake import spool

logger = logging.getLogger(__name__)


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    now = timezone.now()
    try:
        worker = worker_status(now)
        queue = queue_status(now)
    except DatabaseError:
        logger.exception("Health check: the database did not answer")
        return JsonResponse({"status": "error", "database": "error"}, status=503)
    return JsonResponse(
        {
            "status": "ok",
            "database": "ok",
            "worker": worker,
            "queue": queue,
            "mail_spool": spool.status(now),
        }
    )
