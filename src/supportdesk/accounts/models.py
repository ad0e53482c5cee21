"""Organizations, their applications and environments, users and API tokens."""

from __future__ import annotations

import zoneinfo
from typing import Any, ClassVar

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

TIME_ZONES = sorted(zoneinfo.available_timezones())


class Organization(models.Model):
    """A customer company; its users see its tickets and no others."""

    name = models.CharField(max_length=200)
    # Mail from an unknown address at one of these domains is this organization's (intake).
    mail_domains = models.CharField(
        max_length=1000,
        blank=True,
        default="",
        help_text="Comma-separated mail domains of its people, e.g. acme.com, acme.de.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("name",)
        constraints = (models.UniqueConstraint(Lower("name"), name="organization_name_unique_ci"),)

    def __str__(self) -> str:
        return self.name

    @property
    def domains(self) -> list[str]:
        """The mail domains, lower case, without blanks or a leading "@"."""
        parts = (d.strip().lstrip("@").lower() for d in self.mail_domains.split(","))
        return [d for d in parts if d]


class Application(models.Model):
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="applications"
    )
    name = models.CharField(max_length=200)

    class Meta:
        ordering = ("name",)
        constraints = (
            models.UniqueConstraint(
                fields=["organization", "name"], name="application_name_unique_in_org"
            ),
        )

    def __str__(self) -> str:
        return self.name


class Environment(models.Model):
    application = models.ForeignKey(
        Application, on_delete=models.CASCADE, related_name="environments"
    )
    name = models.CharField(max_length=200)

    class Meta:
        ordering = ("name",)
        constraints = (
            models.UniqueConstraint(
                fields=["application", "name"], name="environment_name_unique_in_app"
            ),
        )

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    CUSTOMER = "customer", "Customer"
    AGENT = "agent", "Agent"
    ADMIN = "admin", "Admin"


class UserManager(BaseUserManager["User"]):
    def get_by_natural_key(self, username: str | None) -> User:
        return self.get(email__iexact=username or "")

    def create_user(self, email: str, password: str | None = None, **fields: Any) -> User:
        user = self.model(email=self.normalize_email(email), **fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **fields: Any) -> User:
        fields.setdefault("role", Role.ADMIN)
        return self.create_user(email, password, **fields)


class User(AbstractBaseUser):
    """Anyone who logs in. The email is the login, unique regardless of case."""

    email = models.EmailField(max_length=254, unique=True)
    name = models.CharField(max_length=200, blank=True)
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.CUSTOMER)
    organization = models.ForeignKey(
        Organization,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="users",
        help_text="Required for customers: they see this organization's tickets only.",
    )
    time_zone = models.CharField(max_length=64, default="UTC")
    is_active = models.BooleanField(default=True)
    # Essential mail (acknowledgements, responses, status changes) is always sent; these
    # turn off the rest (notify/recipients.py decides which mail is which).
    mail_optional = models.BooleanField(
        default=True, help_text="Mail about field changes and other optional notices."
    )
    mail_unassigned = models.BooleanField(
        default=True, help_text="Agents: mail about customer messages on unassigned tickets."
    )
    date_joined = models.DateTimeField(default=timezone.now)

    objects: ClassVar[UserManager] = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        ordering = ("email",)
        constraints = (
            models.UniqueConstraint(Lower("email"), name="user_email_unique_ci"),
            models.CheckConstraint(
                condition=~models.Q(role="customer") | models.Q(organization__isnull=False),
                name="customer_has_organization",
            ),
        )

    def __str__(self) -> str:
        return self.display_name

    @property
    def display_name(self) -> str:
        return self.name or self.email

    @property
    def is_customer(self) -> bool:
        return self.role == Role.CUSTOMER

    @property
    def is_agent(self) -> bool:
        """Agents and admins both work tickets."""
        return self.role in (Role.AGENT, Role.ADMIN)

    @property
    def is_staff(self) -> bool:
        """Django admin access follows the admin role; there is no separate flag to drift."""
        return self.role == Role.ADMIN and self.is_active

    @property
    def is_superuser(self) -> bool:
        return self.is_staff

    def has_perm(self, perm: str, obj: object = None) -> bool:
        """Admins may do everything in the Django admin; nobody else gets in."""
        return self.is_staff

    def has_module_perms(self, app_label: str) -> bool:
        return self.is_staff


class ApiToken(models.Model):
    """A bearer token. Only its SHA-256 digest is stored: tokens are random secrets, so a
    slow password hash would add tens of milliseconds to every API request for nothing."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    digest = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(
        max_length=12, help_text="The first characters, to tell tokens apart."
    )
    read_only = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user.email})"

    def is_usable(self, now: Any = None) -> bool:
        now = now or timezone.now()
        return (
            self.revoked_at is None
            and (self.expires_at is None or self.expires_at > now)
            and self.user.is_active
        )


class LoginFailure(models.Model):
    """A failed login, counted per email and per address to throttle guessing."""

    email = models.CharField(max_length=254, db_index=True)
    address = models.CharField(max_length=64, db_index=True)
    at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return f"{self.email} from {self.address}"
