"""Which handlers run for which kind of event: filled by the consumers' AppConfig.ready().

A handler is stored on its run by name, so a name, once released, is kept: a renamed
handler would leave its pending runs pointing at nothing (they fail, visibly, as unknown).
Registration is explicit (not Django signals): `record()` asks this registry, in the
change's transaction, which runs to write.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from supportdesk.events.models import Event

Handler = Callable[["Event"], None]
BatchHandler = Callable[[Sequence["Event"]], Mapping[int, BaseException] | None]

_handlers: dict[str, Handler] = {}
_batches: dict[str, BatchHandler] = {}
_by_kind: dict[str, list[str]] = {}
_bulk: set[str] = set()
_scopes: list[Callable[[], AbstractContextManager[object]]] = []


def register(*kinds: str, name: str, bulk: bool = False) -> Callable[[Handler], Handler]:
    """Run the decorated function for every event of these kinds, as the handler `name`
    (`<effect>_on_<event>`, e.g. "mail_on_response_added"). It takes the Event, may run
    more than once for it (at least once, never in parallel with itself), and raises
    supportdesk.errors.DeliveryError for a failure to retry or, when permanent, to give up.

    A `bulk` handler's due runs are taken after every other due run (tasks.due_run_ids): the
    processing of stored mail, whose backlog after a burst would otherwise keep each new
    ticket's acknowledgement, and an urgent incident's page, waiting behind all of it."""

    def decorate(function: Handler) -> Handler:
        existing = _handlers.get(name)
        if existing is not None and existing is not function:
            raise ValueError(f"Two handlers are named {name!r}.")
        _handlers[name] = function
        if bulk:
            _bulk.add(name)
        for kind in kinds:
            names = _by_kind.setdefault(str(kind), [])
            if name not in names:
                names.append(name)
        return function

    return decorate


def register_batch(name: str) -> Callable[[BatchHandler], BatchHandler]:
    """Run the decorated function instead of the handler `name` when a worker has claimed
    several of its runs together: it takes their events, in order, and must leave each as
    the handler would have. It returns what the handler would have raised for each event
    that failed, by event id (None or {} when none did), and each is written on its run. If
    it raises, each run is run alone by the handler (which is then called for events the
    batch may have done already: a handler runs at least once)."""

    def decorate(function: BatchHandler) -> BatchHandler:
        existing = _batches.get(name)
        if existing is not None and existing is not function:
            raise ValueError(f"Two batch handlers are named {name!r}.")
        _batches[name] = function
        return function

    return decorate


def batch_handler(name: str) -> BatchHandler | None:
    return _batches.get(name)


def handlers_for(kind: str) -> list[str]:
    return list(_by_kind.get(str(kind), ()))


def handler(name: str) -> Handler | None:
    return _handlers.get(name)


def bulk_handlers() -> frozenset[str]:
    return frozenset(_bulk)


def unregister(name: str) -> None:
    """For tests that register a handler of their own."""
    _handlers.pop(name, None)
    _batches.pop(name, None)
    _bulk.discard(name)
    for names in _by_kind.values():
        if name in names:
            names.remove(name)


def around_runs(scope: Callable[[], AbstractContextManager[object]]) -> None:
    """Enter `scope()` around each batch of runs a worker drains, for what the runs of one
    batch can share: the mail handlers' SMTP connection, which cost a connection, a greeting
    and a QUIT per mail when each run opened its own (bench/README.md, "Mail in")."""
    if scope not in _scopes:
        _scopes.append(scope)


def runs_scope() -> contextlib.ExitStack:
    stack = contextlib.ExitStack()
    for scope in _scopes:
        stack.enter_context(scope())
    return stack
