"""Customer databases: database servers (staff), and the databases, users and grants
customers make on them. Rows are the desired state; Operations (tasks.py) make the server
match, and each row says whether that worked (``status``, ``status_message``)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from core.fields import EncryptedTextField
from core.policy import ADMIN, CHANGE, CUSTOMER, DELETE, RESELLER, VIEW, PolicyQuerySet, Rules
from core.validators import validate_plain_text
from servers.validators import validate_address
from websites.databases.naming import MARIADB, POSTGRESQL, validate_full_name

PORT = [MinValueValidator(1), MaxValueValidator(65535)]
ADMIN_USER = r"[A-Za-z0-9_.@-]{1,64}"


def validate_admin_user(value: str) -> None:
    import re

    if not re.fullmatch(ADMIN_USER, value or ""):
        raise ValidationError("Use letters, digits and _ . @ - only.")


class Status(models.TextChoices):
    PENDING = "pending", "Pending"
    ACTIVE = "active", "Active"
    FAILED = "failed", "Failed"
    DELETING = "deleting", "Deleting"


class DatabaseServer(models.Model):
    """A MariaDB/MySQL or PostgreSQL server the panel manages customer databases on, with
    an administrative login (its password encrypted at rest). Staff only."""

    class Engine(models.TextChoices):
        MARIADB = MARIADB, "MariaDB / MySQL"
        POSTGRESQL = POSTGRESQL, "PostgreSQL"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=63, unique=True, validators=[validate_plain_text])
    engine = models.CharField(max_length=10, choices=Engine.choices)
    server = models.ForeignKey(
        "servers.Server",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="database_servers",
        help_text="The server it runs on, if the panel manages it; blank for a standalone host.",
    )
    host = models.CharField(
        max_length=253,
        blank=True,
        validators=[validate_address],
        help_text="Address the panel connects to; blank: the server's address.",
    )
    port = models.PositiveIntegerField(validators=PORT)
    admin_user = models.CharField(max_length=64, validators=[validate_admin_user])
    admin_password = EncryptedTextField(blank=True)
    user_host = models.CharField(
        "user host (MariaDB)",
        max_length=60,
        default="%",
        help_text="Where customers' MariaDB users may connect from ('%' for anywhere).",
    )
    accepts_new = models.BooleanField(
        "accepts new databases", default=True, help_text="Offered to customers for new databases."
    )
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = PolicyQuerySet.as_manager()
    # Infrastructure: administrators manage it, support reads it, tenants never see the row
    # (they see the host and port of their own databases).
    policy = Rules(owner=None)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        from django.urls import reverse

        return reverse("database-server", kwargs={"uuid": self.uuid})

    @property
    def address(self) -> str:
        return self.host or (self.server.address if self.server_id else "")

    @property
    def lock_key(self) -> str:
        return f"dbserver:{self.uuid.hex}"

    def clean(self):
        super().clean()
        if not self.host and not self.server_id:
            raise ValidationError({"host": "Give a host, or the server it runs on."})
        import re

        if not re.fullmatch(r"%|[A-Za-z0-9.:%_-]{1,60}", self.user_host or ""):
            raise ValidationError({"user_host": "A host name, an address or a pattern with %."})


OWNED = Rules(
    owner_may=frozenset({VIEW, CHANGE, DELETE}),
    add=frozenset({ADMIN, RESELLER, CUSTOMER}),
)


class CustomerDatabase(models.Model):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    db_server = models.ForeignKey(
        DatabaseServer, on_delete=models.PROTECT, related_name="databases"
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="customer_databases"
    )
    name = models.CharField(max_length=64, validators=[validate_full_name])
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    status_message = models.TextField(blank=True)
    size_bytes = models.BigIntegerField(null=True, blank=True)
    size_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = PolicyQuerySet.as_manager()
    policy = OWNED

    class Meta:
        ordering = ["name"]
        verbose_name = "customer database"
        constraints = [
            models.UniqueConstraint(fields=["db_server", "name"], name="database_name_once")
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        from django.urls import reverse

        return reverse("database", kwargs={"uuid": self.uuid})


class DatabaseUser(models.Model):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    db_server = models.ForeignKey(DatabaseServer, on_delete=models.PROTECT, related_name="users")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="database_users"
    )
    name = models.CharField(max_length=63, validators=[validate_full_name])
    # Kept (encrypted) so a re-run after a fault sets the same password; shown once.
    password = EncryptedTextField(blank=True)
    password_changed_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    status_message = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = PolicyQuerySet.as_manager()
    policy = OWNED

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["db_server", "name"], name="database_user_once")
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        from django.urls import reverse

        return reverse("database-user", kwargs={"uuid": self.uuid})


class DatabaseGrant(models.Model):
    class Privileges(models.TextChoices):
        ALL = "all", "All (read and write, change tables)"
        READ = "read", "Read only"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    database = models.ForeignKey(CustomerDatabase, on_delete=models.CASCADE, related_name="grants")
    user = models.ForeignKey(DatabaseUser, on_delete=models.CASCADE, related_name="grants")
    privileges = models.CharField(max_length=4, choices=Privileges.choices, default=Privileges.ALL)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    status_message = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = PolicyQuerySet.as_manager()
    policy = Rules(
        owner="database__owner",
        owner_may=frozenset({VIEW, CHANGE, DELETE}),
        add=frozenset({ADMIN, RESELLER, CUSTOMER}),
    )

    class Meta:
        ordering = ["database", "user"]
        constraints = [models.UniqueConstraint(fields=["database", "user"], name="grant_once")]

    def __str__(self) -> str:
        return f"{self.user} on {self.database} ({self.privileges})"

    def get_absolute_url(self) -> str:
        return self.database.get_absolute_url()

    @property
    def owner(self):
        return self.database.owner
