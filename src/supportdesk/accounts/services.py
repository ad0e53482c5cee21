"""Changes to organizations, users and tokens; every channel (CLI, admin, web) calls these."""

from __future__ import annotations

import hashlib
import secrets
import zoneinfo
from datetime import timedelta
from functools import cache
from typing import Any

from django.contrib.sessions.models import Session
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from supportdesk import rows
from supportdesk.accounts.models import ApiToken, Application, Environment, Organization, Role, User
from supportdesk.errors import InvalidChange, NotFound

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
    if time_zone not in zoneinfo.available_timezones():
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
    if time_zone not in zoneinfo.available_timezones():
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
