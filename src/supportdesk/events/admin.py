"""The outbox as admins see it: failed and stuck runs first, what and why, retry or discard.

Rows are read-only: a run changes only through events/tasks.py (retry, discard), whose
conditional UPDATEs keep a worker and an admin from writing over each other.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Case, IntegerField, Q, QuerySet, Value, When
from django.http import HttpRequest
from django.utils import timezone
from django.utils.text import Truncator

from supportdesk.events import tasks
from supportdesk.events.models import HandlerRun, RunState, Schedule, WorkerHeartbeat

STUCK = "stuck"  # not a stored state: running with an expired lease (its worker died)
ERROR_SHOWN = 80


def _stuck(now: Any) -> Q:
    return Q(state=RunState.RUNNING, lease_until__lt=now)


class StateFilter(admin.SimpleListFilter):
    """The stored states, plus "stuck", which is a running run whose lease ran out."""

    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        states = [(value, str(label)) for value, label in RunState.choices]
        running = states.index((RunState.RUNNING.value, RunState.RUNNING.label))
        states.insert(running + 1, (STUCK, "Stuck (lease expired)"))
        return states

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value == STUCK:
            return queryset.filter(_stuck(timezone.now()))
        if value in RunState.values:
            return queryset.filter(state=value)
        return queryset


@admin.register(HandlerRun)
class HandlerRunAdmin(admin.ModelAdmin[HandlerRun]):
    list_display = (
        "pk",
        "ticket",
        "event_kind",
        "handler",
        "shown_state",
        "attempts",
        "due_at",
        "lease_until",
        "error",
    )
    list_display_links = ("pk",)
    list_filter = (StateFilter, "handler")
    list_select_related = ("event", "event__ticket")
    list_per_page = 50
    actions = ("retry_runs", "discard_runs")
    fields = (
        "event", "ticket", "event_kind", "handler", "shown_state", "attempts", "due_at",
        "lease_until", "leased_by", "created_at", "finished_at", "last_error",
    )  # fmt: skip
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[HandlerRun]:
        """Failed first, then stuck, then retrying, then the rest: what needs an admin.
        The annotation comes before the ordering that names it."""
        attention = Case(
            When(state=RunState.FAILED, then=Value(0)),
            When(_stuck(timezone.now()), then=Value(1)),
            When(state=RunState.PENDING, attempts__gt=0, then=Value(2)),
            default=Value(3),
            output_field=IntegerField(),
        )
        return HandlerRun.objects.annotate(attention=attention).order_by(
            *self.get_ordering(request)
        )

    def get_ordering(self, request: HttpRequest) -> tuple[str, ...]:
        """By `attention` (see get_queryset), newest first within it. Not `ordering`: the
        admin's checks accept only model fields there."""
        return ("attention", "-due_at", "-pk")

    @admin.display(description="ticket", ordering="event__ticket__number")
    def ticket(self, run: HandlerRun) -> str:
        ticket = run.event.ticket
        return f"#{ticket.number}" if ticket is not None else "-"

    @admin.display(description="event", ordering="event__kind")
    def event_kind(self, run: HandlerRun) -> str:
        return run.event.get_kind_display()

    @admin.display(description="state", ordering="state")
    def shown_state(self, run: HandlerRun) -> str:
        if run.state == RunState.RUNNING and run.lease_until and run.lease_until < timezone.now():
            return "Stuck (lease expired)"
        return run.get_state_display()

    @admin.display(description="last error")
    def error(self, run: HandlerRun) -> str:
        return Truncator(run.last_error).chars(ERROR_SHOWN)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: HandlerRun | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: HandlerRun | None = None) -> bool:
        return False

    def has_operate_permission(self, request: HttpRequest) -> bool:
        """Retry and discard: the admin's, like the rest of the admin site."""
        return bool(request.user.is_active and request.user.is_staff)

    @admin.action(description="Retry the selected runs", permissions=["operate"])
    def retry_runs(self, request: HttpRequest, queryset: QuerySet[HandlerRun]) -> None:
        retried = [tasks.retry(run) for run in queryset]
        done = sum(run.state == RunState.PENDING for run in retried)
        self._report(request, done, len(retried) - done, "retried", "failed or discarded")

    @admin.action(description="Discard the selected runs", permissions=["operate"])
    def discard_runs(self, request: HttpRequest, queryset: QuerySet[HandlerRun]) -> None:
        discarded = [tasks.discard(run) for run in queryset]
        done = sum(run.state == RunState.DISCARDED for run in discarded)
        self._report(request, done, len(discarded) - done, "discarded", "failed or waiting")

    def _report(self, request: HttpRequest, done: int, skipped: int, verb: str, which: str) -> None:
        self.message_user(request, f"{done} run{'s' if done != 1 else ''} {verb}.")
        if skipped:
            self.message_user(
                request,
                f"{skipped} run{'s' if skipped != 1 else ''} left as they were: "
                f"only {which} runs can be {verb}.",
                level=messages.WARNING,
            )


class ReadOnlyAdmin[Row: Schedule | WorkerHeartbeat](admin.ModelAdmin[Row]):
    """Written by the workers alone."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Row | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Row | None = None) -> bool:
        return False


@admin.register(Schedule)
class ScheduleAdmin(ReadOnlyAdmin[Schedule]):
    list_display = ("name", "last_run_at", "next_run_at")
    ordering = ("name",)


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(ReadOnlyAdmin[WorkerHeartbeat]):
    list_display = ("worker_id", "hostname", "pid", "started_at", "seen_at")
    ordering = ("-seen_at",)
