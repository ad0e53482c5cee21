"""Domain errors: they know nothing of HTTP or mail; each adapter maps them once."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error a service raises on purpose; `field` names the input at fault."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


# The names below are the domain's vocabulary, fixed by the architecture and used by every
# adapter; an "Error" suffix (N818) would only add noise to each `except`.


class NotFound(DomainError):  # noqa: N818
    """Missing, or not visible to the acting user: the two look the same on purpose."""


class Forbidden(DomainError):  # noqa: N818
    """The user may see the object but not make this change."""


class InvalidChange(DomainError):  # noqa: N818
    """The change breaks a rule (bad value, wrong state)."""


class Conflict(DomainError):  # noqa: N818
    """The change was made from a stale copy; `changed` names what moved since."""

    def __init__(self, message: str, *, changed: list[str] | None = None) -> None:
        super().__init__(message)
        self.changed = changed or []


class DeliveryError(Exception):
    """A side effect (a mail, a page, a webhook) that did not go out. `permanent` says a
    retry cannot help (an SMTP 5xx, an HTTP 4xx other than 429); otherwise the run is tried
    again later, not before `retry_after` seconds when the receiver named a time."""

    def __init__(
        self, message: str, *, permanent: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.retry_after = retry_after
