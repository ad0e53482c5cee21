"""A customer never sees another organization's tickets, by any page.

Every URL pattern the resolver knows is listed here with how to try it as carol (a customer
of Globex) against bob's ticket (Acme) and as an anonymous visitor. A new pattern that is not
listed fails `test_every_url_pattern_is_covered`, so a page cannot be added without its
isolation check.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from supportdesk.accounts.models import ApiToken
from supportdesk.accounts.services import create_token
from supportdesk.events.models import Via
from supportdesk.intake.models import InboundMessage, MessageState
from supportdesk.tickets import services
from supportdesk.tickets.models import Ticket
from tests.factories import PASSWORD, make_ticket

SECRET = "Acme-only outage zq7x"


@dataclass
class World:
    ticket: Ticket
    attachment_id: int
    note_attachment_id: int
    app_id: int
    environment_name: str
    token_id: int


def _walk(patterns: list, prefix: str = "", namespace: str = "") -> Iterator[tuple[str, str]]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            ns = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern), ns)
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), f"{namespace}{entry.name or ''}"


def all_patterns() -> list[tuple[str, str]]:
    """Every page's pattern; the REST API's are covered operation by operation in tests/api."""
    return sorted(p for p in set(_walk(get_resolver().url_patterns)) if not p[0].startswith("api/"))


def _uid(world: World) -> str:
    return urlsafe_base64_encode(force_bytes(world.ticket.requester_id))


def _held_message(world: World) -> int:
    """Mail held from an unknown sender at bob's organization, quoting his ticket."""
    message = InboundMessage.objects.create(
        source="smtp",
        raw="mail/raw/none.eml",
        size=1,
        sha256="0" * 64,
        from_address="stranger@acme.test",
        subject=f"Re: [#{world.ticket.number}] {SECRET}",
        state=MessageState.HELD,
    )
    return message.pk


# How carol tries each page: a list of (method, url, data) built from bob's world.
Attempt = tuple[str, str, dict]
TRIES: dict[str, Callable[[World], list[Attempt]]] = {
    "home": lambda w: [("get", reverse("home"), {})],
    "login": lambda w: [("get", reverse("login"), {})],
    "logout": lambda w: [("post", reverse("logout"), {})],
    "profile": lambda w: [("get", reverse("profile"), {})],
    "profile_token_revoke": lambda w: [
        ("post", reverse("profile_token_revoke", args=[w.token_id]), {}),
    ],
    "healthz": lambda w: [("get", reverse("healthz"), {})],
    "password_reset": lambda w: [
        ("get", reverse("password_reset"), {}),
        ("post", reverse("password_reset"), {"email": w.ticket.requester.email}),
    ],
    "password_reset_sent": lambda w: [("get", reverse("password_reset_sent"), {})],
    "password_reset_done": lambda w: [("get", reverse("password_reset_done"), {})],
    # bob's id with a token that is not his: the page must not open his account.
    "password_reset_confirm": lambda w: [
        (method, reverse("password_reset_confirm", args=[_uid(w), token]), data)
        for method, data in (("get", {}), ("post", {"new_password1": "x", "new_password2": "x"}))
        for token in ("set-password", "c0ffee-0123456789abcdef0123456789abcdef")
    ],
    "panel": lambda w: [
        ("get", reverse("panel"), {"view": view, "q": q})
        for view in ("open", "all", "closed")
        for q in ("", SECRET, str(w.ticket.number), f"#{w.ticket.number}")
    ],
    "ticket_new": lambda w: [
        ("get", reverse("ticket_new"), {}),
        (
            "post",
            reverse("ticket_new"),
            {
                "type": "incident",
                "priority": "high",
                "title": "carol's",
                "description": "x",
                "application": w.app_id,
            },
        ),
    ],
    "environment_options": lambda w: [
        ("get", reverse("environment_options"), {"application": w.app_id}),
    ],
    "ticket": lambda w: [("get", reverse("ticket", args=[w.ticket.number]), {})],
    "ticket_edit": lambda w: [
        ("get", reverse("ticket_edit", args=[w.ticket.number]), {}),
        (
            "post",
            reverse("ticket_edit", args=[w.ticket.number]),
            {
                "type": "question",
                "priority": "low",
                "title": "taken over",
                "description": "",
                "version": w.ticket.version,
            },
        ),
    ],
    "ticket_respond": lambda w: [
        ("post", reverse("ticket_respond", args=[w.ticket.number]), {"body": "hello"}),
    ],
    "ticket_reopen": lambda w: [("post", reverse("ticket_reopen", args=[w.ticket.number]), {})],
    "ticket_close": lambda w: [("post", reverse("ticket_close", args=[w.ticket.number]), {})],
    "ticket_attachment": lambda w: [
        ("get", reverse("ticket_attachment", args=[w.ticket.number, w.attachment_id]), {}),
        ("get", reverse("ticket_attachment", args=[w.ticket.number, w.note_attachment_id]), {}),
    ],
    "agent_queue": lambda w: [
        ("get", reverse("agent_queue", args=[queue]), {})
        for queue in ("unassigned", "mine", "urgent", "open", "all")
    ],
    "mail_messages": lambda w: [
        ("get", reverse("mail_messages"), {"state": state})
        for state in ("held", "quarantined", "rejected")
    ],
    "mail_action": lambda w: [
        ("post", reverse("mail_action", args=[_held_message(w), action]), {})
        for action in ("accept", "reject", "reprocess", "delete")
    ],
}
# Pages that show a ticket or act on one: carol must get 404, as for a number that does not
# exist, never 403 (which would confirm that the ticket exists).
MUST_404 = {
    "ticket",
    "ticket_edit",
    "ticket_respond",
    "ticket_reopen",
    "ticket_close",
    "ticket_attachment",
    "agent_queue",
    "profile_token_revoke",
    "mail_messages",
    "mail_action",
}
PUBLIC = {
    "login",
    "healthz",
    "password_reset",
    "password_reset_sent",
    "password_reset_done",
    "password_reset_confirm",
}


@pytest.fixture
def world(bob, shop, alice):
    environment = shop.environments.first()
    ticket = make_ticket(
        requester=bob,
        title=SECRET,
        description=f"{SECRET} details",
        application=shop.pk,
        environments=[environment.pk],
        attachments=[SimpleUploadedFile("acme.log", b"acme log")],
    )
    note = services.add_response(
        ticket,
        acting_user=alice,
        via=Via.WEB,
        body=f"{SECRET} internal",
        internal=True,
        attachments=[SimpleUploadedFile("note.txt", b"internal")],
    )
    services.update_ticket(ticket, acting_user=alice, via=Via.WEB, changes={"status": "resolved"})
    token, _secret = create_token(bob, name="acme monitoring")
    ticket.refresh_from_db()
    return World(
        ticket=ticket,
        attachment_id=ticket.attachments.get(response__isnull=True).pk,
        note_attachment_id=note.attachments.get().pk,
        app_id=shop.pk,
        environment_name=environment.name,
        token_id=token.pk,
    )


def _admin_attempts(pattern: str, world: World) -> list[Attempt]:
    """Admin pages: fill every URL parameter with one of bob's objects' ids."""
    url = "/" + pattern
    for placeholder, value in {
        "<path:object_id>": str(world.ticket.pk),
        "<int:content_type_id>": "1",
        "<app_label>": "tickets",
        "<path:url>": "tickets/ticket/",
        "<id>": str(world.ticket.pk),
    }.items():
        url = url.replace(placeholder, value)
    url = url.replace("^", "").replace("$", "")
    if "(?P<app_label>" in url:
        url = url.split("(?P<app_label>")[0] + "tickets/"
    return [("get", url, {}), ("post", url, {})]


def test_every_url_pattern_is_covered():
    uncovered = [
        (pattern, name)
        for pattern, name in all_patterns()
        if not name.startswith("admin:") and name not in TRIES
    ]
    assert uncovered == [], f"Add these URL patterns to the isolation test: {uncovered}"


def _text(response) -> str:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content).decode(errors="replace")
    return response.content.decode(errors="replace")


def _leaks(world: World, text: str, data: dict) -> bool:
    """Anything of bob's on the page: a link to his ticket, its title, description, files,
    or the internal note. A search box echoing what carol typed is not a leak."""
    for value in data.values():
        text = text.replace(f'value="{value}"', "")
    markers = [
        f"/tickets/{world.ticket.number}/",
        SECRET,
        "acme.log",
        "note.txt",
        f"{SECRET} internal",
        world.environment_name,
    ]
    return any(marker in text for marker in markers)


def test_a_customer_of_another_organization_gets_nothing_of_bobs(world, carol):
    client = Client()
    client.login(email=carol.email, password=PASSWORD)
    before = (world.ticket.version, world.ticket.responses.count(), Ticket.objects.count())
    for pattern, name in all_patterns():
        if name.startswith("admin:"):
            attempts = _admin_attempts(pattern, world)
        else:
            attempts = TRIES[name](world)
        for method, url, data in attempts:
            if name == "logout":
                continue  # logging carol out would make every later try anonymous
            response = getattr(client, method)(url, data)
            text = _text(response)
            assert not _leaks(world, text, data), (
                f"{method.upper()} {url} shows bob's ticket to carol"
            )
            if name in MUST_404:
                assert response.status_code == 404, (
                    f"{method.upper()} {url}: {response.status_code}"
                )
            if name.startswith("admin:") and name != "admin:login":
                assert response.status_code in (302, 404), f"{url}: {response.status_code}"
    world.ticket.refresh_from_db()
    assert (world.ticket.version, world.ticket.responses.count()) == before[:2]
    assert (
        not Ticket.objects.filter(organization=world.ticket.organization)
        .exclude(pk=world.ticket.pk)
        .exists()
    ), "carol created a ticket in bob's organization"
    assert ApiToken.objects.get(pk=world.token_id).revoked_at is None, "carol revoked bob's token"


def test_an_anonymous_visitor_is_sent_to_login_everywhere_but_public_pages(world):
    client = Client()
    for pattern, name in all_patterns():
        if name.startswith("admin:"):
            attempts = _admin_attempts(pattern, world)
        else:
            attempts = TRIES[name](world)
        for method, url, data in attempts:
            response = getattr(client, method)(url, data)
            assert not _leaks(world, _text(response), data), (
                f"{method.upper()} {url} leaks to anonymous"
            )
            if name in PUBLIC or name == "admin:login":
                continue
            assert response.status_code in (302, 403, 404), (
                f"{method.upper()} {url}: {response.status_code}"
            )
            if response.status_code == 302:
                location = response["Location"]
                assert "login" in location or (name == "admin:logout" and location == "/admin/"), (
                    f"{url} redirects to {location}"
                )
    world.ticket.refresh_from_db()
    assert world.ticket.responses.count() == 1
    assert ApiToken.objects.get(pk=world.token_id).revoked_at is None


@pytest.mark.parametrize("number", [1, 999, 99999999, 2**40])
def test_unknown_ticket_numbers_are_404_for_everyone(client, alice, number):
    client.login(email=alice.email, password=PASSWORD)
    assert client.get(f"/tickets/{number}/").status_code == 404
    assert client.post(f"/tickets/{number}/respond/", {"body": "x"}).status_code == 404
