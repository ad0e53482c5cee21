"""Handlers that consumers (mail, paging, timers) register for event kinds.

`record()` looks them up here rather than through signals, so what a change triggers can be
read in one place. Consumers register in their AppConfig.ready().
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from supportdesk.events.models import Event

Handler = Callable[[Event], None]

_handlers: dict[str, dict[str, Handler]] = defaultdict(dict)


def register(kind: str, name: str, handler: Handler) -> None:
    _handlers[kind][name] = handler


def handlers_for(kind: str) -> list[str]:
    return sorted(_handlers[kind])
