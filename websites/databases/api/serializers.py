from rest_framework import serializers

from accounts.models import User
from core.api.serializers import OperationSerializer, ServiceSerializer
from core.policy import CHANGE, restrict
from servers.models import Server
from websites.databases import services
from websites.databases.models import CustomerDatabase, DatabaseGrant, DatabaseServer, DatabaseUser

STATE = ["uuid", "status", "status_message", "created_at"]


class DatabaseServerSerializer(ServiceSerializer):
    server = serializers.SlugRelatedField(
        slug_field="uuid", queryset=Server.objects.none(), required=False, allow_null=True
    )
    admin_password = serializers.CharField(write_only=True, required=False, allow_blank=True)
    create_service = staticmethod(services.do_create_database_server)
    update_service = staticmethod(services.do_update_database_server)

    class Meta:
        model = DatabaseServer
        fields = [
            "uuid",
            *services.DATABASE_SERVER_FIELDS,
            *services.DATABASE_SERVER_SECRETS,
            "last_error",
            "created_at",
        ]
        read_only_fields = ["uuid", "last_error", "created_at"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None:
            self.fields["server"].queryset = restrict(Server, request.user, CHANGE)

    def update(self, instance, validated_data):
        if not validated_data.get("admin_password"):
            validated_data.pop("admin_password", None)
        return super().update(instance, validated_data)


class _DbServerRef(serializers.SlugRelatedField):
    """Database servers by uuid; any that takes new databases (the service checks the
    owner's), without exposing the staff-only rows themselves."""

    def get_queryset(self):
        request = self.context.get("request")
        return services.servers_for(request.user if request else None)


class DatabaseSerializer(ServiceSerializer):
    db_server = _DbServerRef(slug_field="uuid")
    owner = serializers.SlugRelatedField(
        slug_field="uuid", queryset=User.objects.none(), required=False
    )
    name = serializers.CharField(
        max_length=64,
        help_text="On create: the part after your account name and _ (e.g. shop); "
        "read back: the whole name on the server.",
    )
    engine = serializers.CharField(source="db_server.engine", read_only=True)
    host = serializers.CharField(source="db_server.address", read_only=True)
    port = serializers.IntegerField(source="db_server.port", read_only=True)
    with_user = serializers.BooleanField(
        write_only=True,
        required=False,
        default=False,
        help_text="Also create a user of the same name with all privileges; its password "
        "is in the response, once.",
    )
    password = serializers.SerializerMethodField(
        help_text="The new user's password, only in the response that created it."
    )

    class Meta:
        model = CustomerDatabase
        fields = [
            *STATE,
            "db_server",
            "name",
            "owner",
            "engine",
            "host",
            "port",
            "size_bytes",
            "size_at",
            "with_user",
            "password",
        ]
        read_only_fields = [*STATE, "size_bytes", "size_at"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None:
            self.fields["owner"].queryset = services.owners_for(request.user)

    def get_password(self, obj) -> str | None:
        return getattr(obj, "new_password", None)

    def create(self, validated):
        with_user = validated.pop("with_user", False)
        database, password = services.do_create_database(
            actor=self.actor, data=validated, with_user=with_user
        )
        database.new_password = password
        return database


class DatabaseUserSerializer(ServiceSerializer):
    db_server = _DbServerRef(slug_field="uuid", required=False)
    owner = serializers.SlugRelatedField(
        slug_field="uuid", queryset=User.objects.none(), required=False
    )
    name = serializers.CharField(
        max_length=63, help_text="On create: the part after your account name and _."
    )
    database = serializers.SlugRelatedField(
        slug_field="uuid",
        queryset=CustomerDatabase.objects.none(),
        required=False,
        write_only=True,
        help_text="Grant all privileges on this database (its server is the user's).",
    )
    password = serializers.SerializerMethodField(
        help_text="The password, only in the response that made it (create, rotate)."
    )

    class Meta:
        model = DatabaseUser
        fields = [
            *STATE,
            "db_server",
            "name",
            "owner",
            "password_changed_at",
            "database",
            "password",
        ]
        read_only_fields = [*STATE, "password_changed_at"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None:
            self.fields["owner"].queryset = services.owners_for(request.user)
            self.fields["database"].queryset = restrict(CustomerDatabase, request.user, CHANGE)

    def get_password(self, obj) -> str | None:
        return getattr(obj, "new_password", None)

    def create(self, validated):
        database = validated.pop("database", None)
        if database is not None and "owner" not in validated:
            validated["owner"] = database.owner
        user, password, _op = services.do_create_user(
            actor=self.actor, data=validated, database=database
        )
        user.new_password = password
        return user


class DatabaseGrantSerializer(ServiceSerializer):
    database = serializers.SlugRelatedField(
        slug_field="uuid", queryset=CustomerDatabase.objects.none()
    )
    user = serializers.SlugRelatedField(slug_field="uuid", queryset=DatabaseUser.objects.none())

    class Meta:
        model = DatabaseGrant
        fields = [*STATE, *services.GRANT_FIELDS]
        read_only_fields = STATE

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None:
            self.fields["database"].queryset = restrict(CustomerDatabase, request.user, CHANGE)
            self.fields["user"].queryset = restrict(DatabaseUser, request.user, CHANGE)

    def create(self, validated):
        return services.do_grant(actor=self.actor, data=validated)


class PasswordSerializer(serializers.Serializer):
    password = serializers.CharField(read_only=True)
    operation = OperationSerializer(read_only=True)
