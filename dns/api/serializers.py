from rest_framework import serializers

from accounts.models import User
from core.api.serializers import ServiceSerializer
from core.policy import ADMIN, CHANGE, restrict, role_of
from dns import services
from dns.models import NameserverGroup, Record, Zone, ZoneTemplate

ZONE_READ_ONLY = [
    "uuid",
    "serial",
    "status",
    "status_message",
    "published_serial",
    "published_at",
    "ns_status",
    "ns_message",
    "ns_checked_at",
    "dnssec",
    "ds",
    "ds_status",
    "created_at",
]


class ZoneSerializer(ServiceSerializer):
    """A zone. ``name`` is given once (IDN becomes punycode); administrators may choose the
    owner and the nameserver group, everyone else gets the default group."""

    owner = serializers.SlugRelatedField(
        slug_field="uuid", queryset=User.objects.none(), required=False
    )
    group = serializers.SlugRelatedField(
        slug_field="uuid",
        queryset=NameserverGroup.objects.none(),
        required=False,
        allow_null=True,
        help_text="The nameserver group's uuid (administrators).",
    )
    name = serializers.CharField(max_length=300, required=False)
    network = serializers.CharField(
        max_length=60,
        required=False,
        write_only=True,
        help_text="On creation: an IP range (10.1.2.0/24); the zone is its reverse zone.",
    )
    template = serializers.SlugRelatedField(
        slug_field="uuid",
        queryset=ZoneTemplate.objects.all(),
        required=False,
        write_only=True,
        help_text="On creation: a zone template's uuid; its records are added.",
    )
    variables = serializers.DictField(
        child=serializers.CharField(max_length=100),
        required=False,
        write_only=True,
        help_text='On creation: the template\'s variables, such as {"server_ip": "10.0.0.5"}.',
    )
    ds = serializers.ListField(
        source="ds_list",
        child=serializers.CharField(),
        read_only=True,
        help_text="DS records for the registrar while the zone is signed.",
    )
    create_service = staticmethod(services.do_create_zone)
    update_service = staticmethod(services.do_update_zone)

    class Meta:
        model = Zone
        fields = [*services.ZONE_FIELDS, *services.ZONE_START_FIELDS, *ZONE_READ_ONLY]
        read_only_fields = ZONE_READ_ONLY

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None:
            self.fields["owner"].queryset = restrict(User, request.user)
            if role_of(request.user) == ADMIN:
                self.fields["group"].queryset = NameserverGroup.objects.all()
        if self.instance is not None and not isinstance(self.instance, list | tuple):
            self.fields["name"].read_only = True  # a zone is never renamed
            for name in services.ZONE_START_FIELDS:
                self.fields[name].read_only = True
        if request is None or role_of(request.user) != ADMIN:
            if self.instance is not None:
                self.fields["owner"].read_only = True
            self.fields["group"].read_only = True


class DnssecSerializer(serializers.Serializer):
    sign = serializers.BooleanField(help_text="true: sign the zone; false: serve it unsigned.")


class RecordSerializer(ServiceSerializer):
    """One record; ``zone`` on creation only. Errors come back per field."""

    zone = serializers.SlugRelatedField(slug_field="uuid", queryset=Zone.objects.none())
    name = serializers.CharField(max_length=300, help_text="Relative name, @ or an absolute name.")
    type = serializers.CharField(max_length=10)
    content = serializers.CharField(max_length=4000)

    class Meta:
        model = Record
        fields = ["uuid", "zone", *services.RECORD_FIELDS, "created_at"]
        read_only_fields = ["uuid", "created_at"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None:
            self.fields["zone"].queryset = restrict(Zone, request.user, CHANGE)
        if self.instance is not None and not isinstance(self.instance, list | tuple):
            self.fields["zone"].read_only = True

    def create(self, validated):
        zone = validated.pop("zone")
        return services.do_create_record(zone, actor=self.actor, data=validated)

    def update(self, record, validated):
        return services.do_update_record(record, actor=self.actor, data=validated)


class AxfrSerializer(serializers.Serializer):
    host = serializers.CharField(max_length=45, help_text="The server's IP address.")
    port = serializers.IntegerField(min_value=1, max_value=65535, default=53)
    replace = serializers.BooleanField(default=True)
    tsig_name = serializers.CharField(max_length=63, required=False, allow_blank=True)
    tsig_secret = serializers.CharField(
        max_length=200, required=False, allow_blank=True, write_only=True
    )
    tsig_algorithm = serializers.CharField(max_length=20, required=False, allow_blank=True)


class BulkDeleteResult(serializers.Serializer):
    deleted = serializers.IntegerField()


class BulkDeleteSerializer(serializers.Serializer):
    records = serializers.ListField(
        child=serializers.UUIDField(), min_length=1, max_length=500, help_text="Record uuids."
    )
