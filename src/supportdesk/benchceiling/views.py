from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from supportdesk.benchceiling.models import Ping


@csrf_exempt
@require_POST
def ceiling(request: HttpRequest) -> HttpResponse:
    """Insert one integer row and answer 204: no auth, no template, no serialization."""
    Ping.objects.create(value=len(request.body))
    return HttpResponse(status=204)
