"""A user's choice of which mail they get; essential mail cannot be turned off."""

from __future__ import annotations

from supportdesk.accounts.models import User


def set_mail_preferences(user: User, *, optional: bool, unassigned: bool) -> User:
    """Save the user's two mail switches: optional notices (field changes, agents' notices),
    and for agents the notices of customers' messages on unassigned tickets (which, being
    optional, also need the first). A customer's `unassigned` is ignored: they get none."""
    user.mail_optional = optional
    fields = ["mail_optional"]
    if user.is_agent:
        user.mail_unassigned = unassigned
        fields.append("mail_unassigned")
    user.save(update_fields=fields)
    return user
