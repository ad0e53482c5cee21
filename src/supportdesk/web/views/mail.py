"""Inbound mail in the agent workspace: held, rejected and quarantined messages, and the
decisions on them (accept or reject held mail, reprocess or delete quarantined mail)."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse

from supportdesk.accounts.models import Organization, User
from supportdesk.errors import Conflict, InvalidChange
from supportdesk.intake import services
from supportdesk.intake.models import InboundMessage, MessageState
from supportdesk.web.views.errors import maps_domain_errors

PAGE_SIZE = 25
# Held first: it is the one list where a sender waits for an agent.
TABS = {
    MessageState.HELD: "Held",
    MessageState.QUARANTINED: "Quarantined",
    MessageState.REJECTED: "Rejected",
}


def _agent(request: HttpRequest) -> User:
    user: User = request.user  # type: ignore[assignment]
    if not user.is_agent:
        raise Http404("No such page.")
    return user


@login_required
def mail_messages(request: HttpRequest) -> HttpResponse:
    _agent(request)
    state = request.GET.get("state", MessageState.HELD)
    if state not in TABS:
        state = MessageState.HELD
    listed = (
        InboundMessage.objects.filter(state=state)
        .select_related("mailbox", "ticket")
        .order_by("-received_at", "-id")
    )
    page = Paginator(listed, PAGE_SIZE).get_page(request.GET.get("page"))
    rows = list(page.object_list)
    # Accepting an unknown sender makes them a contact of an organization: offered by name
    # in one list that every row's field shares, typed or picked.
    organizations = (
        list(Organization.objects.order_by("name").values_list("name", flat=True))
        if state == MessageState.HELD and rows
        else []
    )
    return render(
        request,
        "mail/messages.html",
        {
            "page": page,
            "rows": rows,
            "state": state,
            "tabs": TABS,
            "organizations": organizations,
        },
    )


def _organization_named(form: QueryDict) -> Organization | None:
    """The organization the agent named for an unknown sender; none means the one their
    mail domain names."""
    name = form.get("organization", "").strip()
    if not name:
        return None
    organization = Organization.objects.filter(name__iexact=name).first()
    if organization is None:
        raise InvalidChange(f"There is no organization named {name}.", field="organization")
    return organization


def _accept(message: InboundMessage, user: User, form: QueryDict) -> str:
    message = services.accept_held(
        message, acting_user=user, organization=_organization_named(form)
    )
    if message.ticket is not None:
        return f"Message accepted: it is on ticket #{message.ticket.number}."
    return f"Message accepted ({message.get_state_display().lower()})."


def _reject(message: InboundMessage, user: User, form: QueryDict) -> str:
    services.reject_held(message, acting_user=user)
    return "Message rejected. Nobody was mailed."


def _reprocess(message: InboundMessage, user: User, form: QueryDict) -> str:
    message = services.reprocess(message)
    if message.state == MessageState.QUARANTINED:
        return f"Message processed again, and quarantined again: {message.error}"
    return f"Message processed again ({message.get_state_display().lower()})."


def _delete(message: InboundMessage, user: User, form: QueryDict) -> str:
    services.delete_message(message)
    return "Message deleted."


ACTIONS: dict[str, Callable[[InboundMessage, User, QueryDict], str]] = {
    "accept": _accept,
    "reject": _reject,
    "reprocess": _reprocess,
    "delete": _delete,
}


@login_required
@maps_domain_errors
def mail_action(request: HttpRequest, message_id: int, action: str) -> HttpResponse:
    """One button on the list; the answer is a message on the list it came from."""
    user = _agent(request)  # 404 before 405: a customer learns nothing
    message = InboundMessage.objects.filter(pk=message_id).first()
    if message is None or action not in ACTIONS:
        raise Http404("No such message.")
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    back = f"{reverse('mail_messages')}?state={message.state}"
    try:
        done = ACTIONS[action](message, user, request.POST)
    except (InvalidChange, Conflict) as error:
        messages.error(request, error.message)
    else:
        messages.success(request, done)
    return redirect(back)
