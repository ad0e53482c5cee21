"""Names a client sends (emails) turned into the rows the services take."""

from __future__ import annotations

from supportdesk.accounts.models import Role, User
from supportdesk.accounts.services import find_user
from supportdesk.errors import NotFound


def user_by_email(email: str | None) -> User | None:
    """The user with this email; for an unknown one an unsaved, inactive stand-in, so the
    service answers exactly as it does for any user it refuses (a customer learns nothing
    of which addresses exist)."""
    if email is None:
        return None
    try:
        return find_user(email)
    except NotFound:
        return User(email=email, role=Role.CUSTOMER, is_active=False)
