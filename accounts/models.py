from __future__ import annotations

import uuid
import zoneinfo

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone as dj_tz

from accounts.naming import choose_account_name, validate_account_name
from accounts.validators import parse_cidrs, validate_cidr_list
from core.policy import (
    ADMIN,
    CHANGE,
    DELETE,
    LIFT_LOCKOUT,
    RESELLER,
    VIEW,
    PolicyQuerySet,
    Rules,
)
from core.validators import validate_plain_text


def validate_timezone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"{value!r} is not a known time zone (e.g. Europe/Berlin).")


class Role(models.TextChoices):
    ADMIN = "admin", "Administrator"
    SUPPORT = "support", "Support"
    BILLING = "billing", "Billing"
    RESELLER = "reseller", "Reseller"
    CUSTOMER = "customer", "Customer"


STAFF_ROLES = (Role.ADMIN, Role.SUPPORT)
# Billing staff see every customer's invoices: they need a second factor like staff, but
# are not staff (no admin site, no server internals).
SECOND_FACTOR_ROLES = (*STAFF_ROLES, Role.BILLING)


class UserManager(BaseUserManager.from_queryset(PolicyQuerySet)):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra):
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.full_clean(exclude=["password"])
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra):
        """Used by ``manage.py createsuperuser``: audited like every other new user."""
        from django.db import transaction

        from core import audit

        extra["role"] = Role.ADMIN
        with transaction.atomic():
            user = self.create_user(email, password, **extra)
            audit.record("user.create", user, changes={"via": [None, "createsuperuser"]})
        return user


class User(AbstractBaseUser, PermissionsMixin):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    email = models.EmailField(unique=True)
    account_name = models.CharField(
        max_length=12,
        unique=True,
        null=True,
        editable=False,
        validators=[validate_account_name],
        help_text="Chosen at creation, never changed: names this user's system accounts, "
        "databases and database users on servers.",
    )
    name = models.CharField(max_length=150, blank=True, validators=[validate_plain_text])
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.CUSTOMER)
    reseller = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="customers",
        limit_choices_to={"role": Role.RESELLER},
        help_text="The reseller that owns this customer, if any.",
    )
    company = models.CharField(max_length=200, blank=True, validators=[validate_plain_text])
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    avatar = models.ImageField(upload_to="avatars/", blank=True)
    is_active = models.BooleanField(default=True)
    date_joined = models.DateTimeField(default=dj_tz.now)
    # Security settings of the user's own choosing.
    session_timeout_minutes = models.PositiveIntegerField(
        "session timeout (minutes)",
        null=True,
        blank=True,
        help_text="Log out after this many idle minutes (blank: default).",
    )
    ip_allowlist = models.TextField(
        "IP allow-list",
        blank=True,
        validators=[validate_cidr_list],
        help_text="IP addresses or CIDR networks allowed to use this account, one per line. "
        "Blank allows any.",
    )

    # PermissionsMixin's is_superuser field is replaced by the role.
    is_superuser = None

    objects = UserManager()
    # A user row belongs to itself; a reseller also reaches its customers' rows.
    policy = Rules(owner="", owner_may=frozenset({VIEW, CHANGE}), add=frozenset({ADMIN, RESELLER}))

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        ordering = ["email"]

    def __str__(self) -> str:
        return self.email

    @property
    def is_superuser(self) -> bool:  # noqa: F811 - replaces the mixin's field
        return self.is_active and self.role == Role.ADMIN

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF_ROLES

    @property
    def requires_second_factor(self) -> bool:
        return self.role in SECOND_FACTOR_ROLES

    @property
    def display_name(self) -> str:
        return self.name or self.email

    def allowed_networks(self):
        return parse_cidrs(self.ip_allowlist) if self.ip_allowlist else []

    def clean(self):
        super().clean()
        if self.reseller_id:
            if self.role != Role.CUSTOMER:
                raise ValidationError({"reseller": "Only customers belong to a reseller."})
            if self.reseller.role != Role.RESELLER:
                raise ValidationError({"reseller": "The owner must be a reseller."})

    def save(self, *args, **kwargs):
        if not self.account_name and self.email:
            others = User.objects.exclude(pk=self.pk) if self.pk else User.objects.all()
            self.account_name = choose_account_name(
                self.email, lambda name: others.filter(account_name=name).exists()
            )
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = {*kwargs["update_fields"], "account_name"}
        super().save(*args, **kwargs)


class ApiTokenQuerySet(PolicyQuerySet):
    def usable(self):
        now = dj_tz.now()
        return self.filter(revoked_at__isnull=True).filter(
            Q(expires_at__isnull=True) | Q(expires_at__gt=now)
        )


class ApiToken(models.Model):
    class Scope(models.TextChoices):
        READ = "read", "Read only"
        WRITE = "write", "Read and write"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, validators=[validate_plain_text])
    prefix = models.CharField(max_length=12, unique=True, editable=False)
    digest = models.CharField(max_length=64, editable=False)
    scope = models.CharField(max_length=8, choices=Scope.choices, default=Scope.READ)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ApiTokenQuerySet.as_manager()
    # Only their owner sees and revokes tokens; administrators may revoke any (no secret is
    # stored: the digest is never shown).
    policy = Rules(
        owner="user",
        owner_may=frozenset({VIEW, DELETE}),
        support_may=frozenset(),
        admin_may=frozenset({VIEW, DELETE}),
        add=frozenset(Role.values),
        reseller_reaches_customers=False,
    )

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_usable(self) -> bool:
        if self.revoked_at:
            return False
        return self.expires_at is None or self.expires_at > dj_tz.now()

    @property
    def status(self) -> str:
        if self.revoked_at:
            return "revoked"
        if self.expires_at and self.expires_at <= dj_tz.now():
            return "expired"
        return "active"


class LoginAttempt(models.Model):
    email = models.CharField(max_length=254, db_index=True)
    ip = models.GenericIPAddressField(db_index=True)
    user_agent = models.CharField(max_length=300, blank=True)
    success = models.BooleanField(default=False)
    reason = models.CharField(max_length=40, blank=True)
    created_at = models.DateTimeField(default=dj_tz.now, db_index=True)
    # Set when staff lift a lock-out: the attempt stays on record but no longer counts.
    lifted_at = models.DateTimeField(null=True, blank=True)

    policy = Rules(
        owner=None,
        support_may=frozenset({VIEW, LIFT_LOCKOUT}),
        admin_may=frozenset({VIEW, LIFT_LOCKOUT}),
    )
    objects = PolicyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.email} from {self.ip}: {'ok' if self.success else self.reason or 'failed'}"


from accounts.devices import AuthenticatorDevice, BackupCode, BackupCodeDevice  # noqa: E402, F401
