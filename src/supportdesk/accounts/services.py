"""Changes to organizations, users and tokens; every channel (CLI, admin, web) calls these."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from functools import cache
from typing import Any

from django.conf import settings
from django.contrib.auth import password_validation
from django.contrib.auth.tokens import default_token_generator
from django.contrib.sessions.models import Session
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from supportdesk import rows
from supportdesk.accounts.models import (
    TIME_ZONES,
    ApiToken,
    Application,
    Environment,
    Organization,
    Role,
    User,
)
from supportdesk.errors import InvalidChange, NotFound
from supportdesk.events.models import Event, EventKind, Via
from supportdesk.events.record import record

TIME_ZONE_SET = frozenset(TIME_ZONES)  # read once: available_timezones() scans the disk
TOKEN_PREFIX = "sd_"  # noqa: S105  (a public marker that tells tokens apart, not a secret)
NAME_MAX = 200
EMAIL_MAX = 254


def clean_name(value: object, *, field: str, max_length: int = NAME_MAX) -> str:
    """A one-line name as typed; NUL and lone surrogates refused (no database stores them),
    and the column's length checked here (PostgreSQL enforces it, SQLite does not)."""
    if not isinstance(value, str):
        raise InvalidChange(f"{field} must be text.", field=field)
    if "\x00" in value or not _encodable(value):
        raise InvalidChange(f"{field} contains an invalid character.", field=field)
    value = " ".join(value.split())
    if len(value) > max_length:
        raise InvalidChange(f"{field} is longer than {max_length} characters.", field=field)
    return value


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def clean_user_email(value: object) -> str:
    email = User.objects.normalize_email(clean_name(value, field="email", max_length=EMAIL_MAX))
    try:
        validate_email(email)
    except ValidationError:
        raise InvalidChange(f"{email!r} is not an email address.", field="email") from None
    return email


def get_or_create_organization(name: str) -> Organization:
    """The organization with this name in any letter case, created when missing."""
    name = clean_name(name, field="org")
    if not name:
        raise InvalidChange("An organization needs a name.", field="org")
    existing = Organization.objects.filter(name__iexact=name).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            return Organization.objects.create(name=name)
    except IntegrityError:  # created meanwhile by another process
        return Organization.objects.get(name__iexact=name)


def _new_name(name: str, *, field: str, siblings: QuerySet[Any], owner: str) -> str:
    """A clean name not yet taken among its siblings (unique within the owner)."""
    clean = clean_name(name, field=field)
    if not clean:
        raise InvalidChange(f"An {field} needs a name.", field=field)
    if siblings.filter(name=clean).exists():
        raise InvalidChange(f"{owner} has an {field} {clean} already.", field=field)
    return clean


def create_application(organization: Organization, name: str) -> Application:
    """An application of the organization; names are unique within it."""
    clean = _new_name(
        name, field="application", siblings=organization.applications.all(), owner=organization.name
    )
    return Application.objects.create(organization=organization, name=clean)


def create_environment(application: Application, name: str) -> Environment:
    """An environment of the application; names are unique within it."""
    clean = _new_name(
        name, field="environment", siblings=application.environments.all(), owner=application.name
    )
    return Environment.objects.create(application=application, name=clean)


def generate_password() -> str:
    return secrets.token_urlsafe(12)


@transaction.atomic
def create_user(
    *,
    email: str,
    role: str,
    password: str,
    organization: Organization | None = None,
    name: str = "",
    time_zone: str = "UTC",
) -> User:
    """Create a user; customers must belong to an organization.

    Raises InvalidChange for a missing organization, an unknown role or zone, a bad name, or
    an email that is taken in any letter case.
    """
    email = clean_user_email(email)
    name = clean_name(name, field="name")
    if role not in Role.values:
        raise InvalidChange(f"Unknown role {role!r}.", field="role")
    if role == Role.CUSTOMER and organization is None:
        raise InvalidChange("A customer must belong to an organization.", field="org")
    if time_zone not in TIME_ZONE_SET:
        raise InvalidChange(f"Unknown time zone {time_zone!r}.", field="time_zone")
    taken = InvalidChange(f"A user with the email {email} exists already.", field="email")
    if User.objects.filter(email__iexact=email).exists():
        raise taken
    try:
        with transaction.atomic():
            return User.objects.create_user(
                email,
                password,
                role=role,
                organization=organization,
                name=name,
                time_zone=time_zone,
            )
    except IntegrityError:  # the same email in another case, created meanwhile
        raise taken from None


def find_user(email: str) -> User:
    if "\x00" in email or not _encodable(email):
        raise NotFound(f"No user with the email {email!r}.", field="email")
    row = rows.fetch_one(_user_by_email(), [email.strip()])
    if row is None:
        raise NotFound(f"No user with the email {email}.", field="email")
    return _user_with_organization(row, 0)


# Hand-written (see supportdesk/rows.py): every API request with a token, and every create
# that names a requester, runs one of these. The email matches through the same LOWER() as
# the unique index user_email_unique_ci, which answers it.
@cache
def _user_and_organization() -> str:
    return (
        f"{rows.columns(User, 'u')}, {rows.columns(Organization, 'o')}"
        f" FROM {rows.table(User)} u LEFT JOIN {rows.table(Organization)} o"
        " ON o.id = u.organization_id"
    )


@cache
def _user_by_email() -> str:
    return f"SELECT {_user_and_organization()} WHERE LOWER(u.email) = LOWER(%s)"


@cache
def _token_by_digest() -> str:
    return (
        f"SELECT {rows.columns(ApiToken, 't')}, {_user_and_organization()}"
        f" JOIN {rows.table(ApiToken)} t ON t.user_id = u.id WHERE t.digest = %s"
    )


def _user_with_organization(row: tuple[object, ...], start: int) -> User:
    """The user at row[start:], with its organization loaded (None when it has none)."""
    user = rows.build(User, row, start)
    user.organization = (
        None
        if user.organization_id is None
        else rows.build(Organization, row, start + rows.width(User))
    )
    return user


@transaction.atomic
def deactivate_user(user: User) -> User:
    """Deactivate and end every session and token at once, not at their expiry."""
    user.is_active = False
    user.save(update_fields=["is_active"])
    user.api_tokens.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
    end_sessions(user)
    return user


def end_sessions(user: User) -> int:
    """Delete the user's stored sessions (the auth backend also refuses inactive users)."""
    ended = 0
    for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator():
        if session.get_decoded().get("_auth_user_id") == str(user.pk):
            session.delete()
            ended += 1
    return ended


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def create_token(
    user: User, *, read_only: bool = False, expires_days: int | None = None, name: str = ""
) -> tuple[ApiToken, str]:
    """Return the token row and the secret, which is shown once and never stored."""
    if expires_days is not None and expires_days <= 0:
        raise InvalidChange("--expires must be a positive number of days.", field="expires")
    if not user.is_active:
        raise InvalidChange(f"{user.email} is deactivated.", field="email")
    name = clean_name(name, field="name", max_length=100)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires_at = timezone.now() + timedelta(days=expires_days) if expires_days else None
    token = ApiToken.objects.create(
        user=user,
        name=name,
        digest=token_digest(secret),
        prefix=secret[:10],
        read_only=read_only,
        expires_at=expires_at,
    )
    return token, secret


def revoke_token(token: ApiToken) -> ApiToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


def authenticate_token(secret: str) -> ApiToken | None:
    """The usable token for a bearer secret, or None for unknown, revoked, expired or a
    deactivated user's."""
    row = rows.fetch_one(_token_by_digest(), [token_digest(secret)])
    if row is None:
        return None
    token = rows.build(ApiToken, row)
    token.user = _user_with_organization(row, rows.width(ApiToken))
    return token if token.is_usable() else None


def update_profile(user: User, *, name: str, time_zone: str) -> User:
    """The user's own display name and the zone their pages show times in."""
    if time_zone not in TIME_ZONE_SET:
        raise InvalidChange(f"Unknown time zone {time_zone!r}.", field="time_zone")
    user.name = clean_name(name, field="name")
    user.time_zone = time_zone
    user.save(update_fields=["name", "time_zone"])
    return user


TOKEN_TOUCH_INTERVAL = timedelta(minutes=1)


def touch_token(token: ApiToken) -> None:
    """Note that the token was used, at most once a minute: a write on every request would
    cost more than the request itself."""
    now = timezone.now()
    if token.last_used_at is not None and now - token.last_used_at < TOKEN_TOUCH_INTERVAL:
        return
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    token.last_used_at = now


PASSWORD_MAX = 1024  # the login form takes no longer password: a longer one could never log in


@transaction.atomic
def request_password_reset(email: str, *, ip: str | None) -> None:
    """Queue a reset mail for the active user with this email (any letter case), unless the
    user or the requesting address is over its limit; otherwise do nothing, silently.

    The caller answers the same whether or not a mail goes out, so the page cannot tell who
    has an account, and a limit that only counts real accounts cannot leak it either. The mail
    leaves through the outbox (mail_on_password_reset_requested), which makes the link's token
    at send time: the token is never stored. Raises InvalidChange for text that is no email.
    """
    try:
        found = find_user(clean_user_email(email))
    except NotFound:
        return
    # The row lock makes concurrent requests for one user count one after the other.
    user = User.objects.select_for_update().filter(pk=found.pk, is_active=True).first()
    if user is None:
        return
    address = (ip or "")[:64]
    if _password_reset_throttled(user, address):
        return
    record(
        None,
        EventKind.PASSWORD_RESET_REQUESTED,
        acting_user=user,
        via=Via.WEB,
        version=1,
        changes={"ip": [None, address]} if address else None,
    )


def _password_reset_throttled(user: User, address: str) -> bool:
    """Counted from the reset events themselves (in the database, so every web process sees
    the same count); the requesting address is kept on the event as its `ip` change."""
    since = timezone.now() - timedelta(seconds=settings.PASSWORD_RESET_THROTTLE_SECONDS)
    recent = Event.objects.filter(kind=EventKind.PASSWORD_RESET_REQUESTED, created_at__gte=since)
    if recent.filter(actor=user).count() >= settings.PASSWORD_RESETS_PER_USER:
        return True
    return bool(address) and (
        recent.filter(changes__ip__1=address).count() >= settings.PASSWORD_RESETS_PER_ADDRESS
    )


@transaction.atomic
def reset_password(user: User, token: str, new_password: str) -> User:
    """Set the password chosen through a reset link and end every session of the user.

    The token is checked again under the user's row lock, so a link used twice at once sets
    one password: the new password invalidates the token. Raises InvalidChange with
    field="token" when the link is used, expired, or the user is inactive, and with
    field="new_password" for a password the validators refuse.
    """
    locked = User.objects.select_for_update().filter(pk=user.pk, is_active=True).first()
    if locked is None or not default_token_generator.check_token(locked, token):
        raise InvalidChange("This password reset link has expired or was used.", field="token")
    if len(new_password) > PASSWORD_MAX or "\x00" in new_password:
        raise InvalidChange(
            f"A password has at most {PASSWORD_MAX} characters and no NUL.", field="new_password"
        )
    try:
        password_validation.validate_password(new_password, locked)
    except ValidationError as error:
        raise InvalidChange(" ".join(error.messages), field="new_password") from None
    locked.set_password(new_password)
    locked.save(update_fields=["password"])
    end_sessions(locked)
    return locked
