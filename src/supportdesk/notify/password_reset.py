"""The password reset mail, sent by the outbox worker, never inside the request.

The request only records the event; the link's token is made here, at send time, so it is
never stored, and its validity (PASSWORD_RESET_TIMEOUT) counts from when the mail leaves, not
from when a delayed retry finally gets through. A retry makes a new token: every link sent
stays valid until the password changes or it expires, and the Message-ID stays the same.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.tokens import default_token_generator
from django.core.mail import EmailMultiAlternatives
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.html import format_html
from django.utils.http import urlsafe_base64_encode

from supportdesk.events import registry
from supportdesk.events.models import Event, EventKind
from supportdesk.notify import ids, transport

SUBJECT = "Reset your supportdesk password"


@registry.register(EventKind.PASSWORD_RESET_REQUESTED, name="mail_on_password_reset_requested")
def mail_on_password_reset_requested(event: Event) -> None:
    """One mail to the user who asked; nothing when the user was deactivated or deleted
    since (their reset would only fail). Raises DeliveryError from the transport."""
    user = event.actor
    if user is None or not user.is_active:
        return
    address = user.email
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    link = settings.BASE_URL + reverse(
        "password_reset_confirm", kwargs={"uidb64": uid, "token": token}
    )
    again = settings.BASE_URL + reverse("password_reset")
    valid_for = duration(settings.PASSWORD_RESET_TIMEOUT)
    message = EmailMultiAlternatives(
        subject=SUBJECT,
        body=_text(user.display_name, address, link, again, valid_for),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[address],
        headers={
            "Message-ID": ids.message_id(event.pk, address),
            # RFC 3834: no auto-responder should answer it; Exchange honours its own header.
            "Auto-Submitted": "auto-generated",
            "X-Auto-Response-Suppress": "All",
        },
    )
    message.attach_alternative(
        _html(user.display_name, address, link, again, valid_for), "text/html"
    )
    transport.send(message)


def duration(seconds: int) -> str:
    """`1 hour`, `3 days`, `90 minutes`: the largest whole unit, as a person says it."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds} second{'' if seconds == 1 else 's'}"


def _text(name: str, address: str, link: str, again: str, valid_for: str) -> str:
    return (
        f"Hello {name},\n\n"
        f"someone, hopefully you, asked to reset the password of the supportdesk account\n"
        f"{address}. To choose a new password, open this link within {valid_for}:\n\n"
        f"{link}\n\n"
        "The link works once. If it has expired, ask for a new one at\n"
        f"{again}\n\n"
        "If you did not ask for this, ignore this mail: your password stays as it is.\n\n"
        "-- \nsupportdesk (an automatic mail; replies are not read)\n"
    )


def _html(name: str, address: str, link: str, again: str, valid_for: str) -> str:
    return format_html(
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        "<title>{subject}</title></head><body>"
        "<p>Hello {name},</p>"
        "<p>someone, hopefully you, asked to reset the password of the supportdesk account "
        "{address}. To choose a new password, open this link within {valid_for}:</p>"
        '<p><a href="{link}">Choose a new password</a></p>'
        "<p>The link works once. If it has expired, "
        '<a href="{again}">ask for a new one</a>.</p>'
        "<p>If you did not ask for this, ignore this mail: your password stays as it is.</p>"
        "<p>supportdesk (an automatic mail; replies are not read)</p>"
        "</body></html>",
        subject=SUBJECT,
        name=name,
        address=address,
        valid_for=valid_for,
        link=link,
        again=again,
    )
