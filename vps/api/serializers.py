from django.utils.functional import SimpleLazyObject
from rest_framework import serializers

from accounts.models import User
from core.api.serializers import ServiceSerializer
from core.policy import ADMIN, CHANGE, restrict, role_of
from servers.models import Server
from vps import services, stats
from vps.models import Hypervisor, Image, IpPool, Snapshot, SshKey, Vps, VpsPlan


def _is_admin(serializer) -> bool:
    request = serializer.context.get("request")
    return request is not None and role_of(request.user) == ADMIN


def _is_instance(serializer) -> bool:
    return serializer.instance is not None and not isinstance(serializer.instance, list | tuple)


class HypervisorSerializer(ServiceSerializer):
    server = serializers.SlugRelatedField(slug_field="uuid", queryset=Server.objects.none())
    create_service = staticmethod(
        lambda *, actor, data: services.do_save_hypervisor(actor=actor, data=data)
    )
    update_service = staticmethod(
        lambda hv, *, actor, data: services.do_save_hypervisor(
            actor=actor, data=data, hypervisor=hv
        )
    )

    class Meta:
        model = Hypervisor
        read_only = [
            "uuid",
            "status",
            "cpus",
            "memory_mib",
            "storage_gib",
            "storage_free_gib",
            "pools",
            "networks",
            "foreign_domains",
            "inventory_at",
            "last_error",
            "created_at",
        ]
        fields = [*services.HYPERVISOR_FIELDS, *read_only]
        read_only_fields = read_only

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None:
            self.fields["server"].queryset = restrict(Server, request.user, CHANGE)
        if _is_instance(self):
            self.fields["server"].read_only = True


class VpsPlanSerializer(ServiceSerializer):
    owner = serializers.SlugRelatedField(
        slug_field="uuid", queryset=User.objects.none(), required=False, allow_null=True
    )
    allowance_for = serializers.SlugRelatedField(
        slug_field="uuid", queryset=User.objects.none(), required=False, allow_null=True
    )
    create_service = staticmethod(
        lambda *, actor, data: services.do_save_plan(actor=actor, data=data)
    )
    update_service = staticmethod(
        lambda plan, *, actor, data: services.do_save_plan(actor=actor, data=data, plan=plan)
    )

    class Meta:
        model = VpsPlan
        fields = ["uuid", *services.PLAN_FIELDS, *services.PLAN_ADMIN_FIELDS, "created_at"]
        read_only_fields = ["uuid", "created_at"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if _is_admin(self):
            self.fields["owner"].queryset = User.objects.filter(role="reseller")
            self.fields["allowance_for"].queryset = User.objects.filter(role="reseller")
        else:
            self.fields["owner"].read_only = True
            self.fields["allowance_for"].read_only = True


class ImageSerializer(ServiceSerializer):
    """Upload with multipart/form-data (``file``); checked with qemu-img before it is kept."""

    file = serializers.FileField(write_only=True, required=True)
    update_service = staticmethod(services.do_update_image)

    class Meta:
        model = Image
        read_only = ["uuid", "format", "virtual_size", "file_size", "sha256", "created_at"]
        fields = [*services.IMAGE_FIELDS, "file", *read_only]
        read_only_fields = read_only

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if _is_instance(self):
            self.fields["file"].read_only = True

    def create(self, validated):
        upload = validated.pop("file")
        return services.do_create_image(actor=self.actor, data=validated, upload=upload)


class SshKeySerializer(ServiceSerializer):
    public_key = serializers.CharField(max_length=16384)
    create_service = staticmethod(
        lambda *, actor, data: services.do_save_ssh_key(actor=actor, data=data)
    )
    update_service = staticmethod(
        lambda key, *, actor, data: services.do_save_ssh_key(actor=actor, data=data, key=key)
    )

    class Meta:
        model = SshKey
        fields = ["uuid", *services.SSH_KEY_FIELDS, "fingerprint", "created_at"]
        read_only_fields = ["uuid", "fingerprint", "created_at"]


class IpPoolSerializer(ServiceSerializer):
    hypervisor = serializers.SlugRelatedField(slug_field="uuid", queryset=Hypervisor.objects.none())
    used = serializers.IntegerField(read_only=True, source="addresses.count")
    create_service = staticmethod(
        lambda *, actor, data: services.do_save_pool(actor=actor, data=data)
    )
    update_service = staticmethod(
        lambda pool, *, actor, data: services.do_save_pool(actor=actor, data=data, pool=pool)
    )

    class Meta:
        model = IpPool
        fields = ["uuid", *services.POOL_FIELDS, "used", "created_at"]
        read_only_fields = ["uuid", "created_at"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None:
            self.fields["hypervisor"].queryset = restrict(Hypervisor, request.user, CHANGE)


class VpsSerializer(ServiceSerializer):
    """A VPS. Created from a plan, an image and the owner's SSH keys; the hypervisor is
    chosen by room (administrators may name one). ``addresses`` are allocated on create."""

    owner = serializers.SlugRelatedField(
        slug_field="uuid", queryset=User.objects.none(), required=False
    )
    plan = serializers.SlugRelatedField(slug_field="uuid", queryset=VpsPlan.objects.none())
    image = serializers.SlugRelatedField(
        slug_field="uuid", queryset=Image.objects.none(), allow_null=True
    )
    ssh_keys = serializers.SlugRelatedField(
        slug_field="uuid", queryset=SshKey.objects.none(), many=True, required=False
    )
    hypervisor = serializers.SlugRelatedField(
        slug_field="uuid", queryset=Hypervisor.objects.none(), required=False, allow_null=True
    )
    addresses = serializers.SlugRelatedField(slug_field="address", many=True, read_only=True)
    location = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=100,
        help_text="Where to place it: one of the hypervisors' server locations with room "
        "(blank: anywhere). Answered with the VPS's location.",
    )
    create_service = staticmethod(services.do_create_vps)
    update_service = staticmethod(services.do_update_vps)

    class Meta:
        model = Vps
        read_only = [
            "uuid",
            "state",
            "state_message",
            "drift",
            "vcpus",
            "memory_mib",
            "disk_gib",
            "addresses",
            "inventory_at",
            "created_at",
        ]
        fields = [*services.VPS_CREATE_FIELDS, *services.VPS_ADMIN_FIELDS, *read_only]
        read_only_fields = read_only

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None:
            user = request.user
            # Lazy: the policy reads the user's grants when a choice is needed (a write,
            # a browsable form), not on every list GET that only reads.
            self.fields["owner"].queryset = SimpleLazyObject(lambda: restrict(User, user))
            self.fields["plan"].queryset = services.visible_plans(user)
            self.fields["image"].queryset = Image.objects.filter(active=True)
            self.fields["ssh_keys"].child_relation.queryset = SimpleLazyObject(
                lambda: restrict(SshKey, user)
            )
            if role_of(user) == ADMIN:
                self.fields["hypervisor"].queryset = Hypervisor.objects.all()
            else:
                self.fields["hypervisor"].read_only = True
        if _is_instance(self):
            names = ("owner", "plan", "image", "ssh_keys", "hypervisor", "expires_at", "location")
            for name in names:
                self.fields[name].read_only = True
        else:
            self.fields["hostname"].required = True

    def to_representation(self, obj):
        data = super().to_representation(obj)
        data["hypervisor"] = obj.hypervisor.uuid if obj.hypervisor_id and _is_admin(self) else None
        data["location"] = obj.hypervisor.server.location if obj.hypervisor_id else ""
        return data


class PowerSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=services.POWER_ACTIONS)


class ReinstallSerializer(serializers.Serializer):
    image = serializers.SlugRelatedField(
        slug_field="uuid",
        queryset=Image.objects.filter(active=True),
        required=False,
        help_text="An offered image; the VPS's own when left out.",
    )


class VpsRenewSerializer(serializers.Serializer):
    expires_at = serializers.DateTimeField(
        allow_null=True, help_text="The new expiry, in the future; null for none."
    )


class ResizeSerializer(serializers.Serializer):
    plan = serializers.SlugRelatedField(slug_field="uuid", queryset=VpsPlan.objects.none())

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None:
            self.fields["plan"].queryset = services.visible_plans(request.user)


class SnapshotSerializer(ServiceSerializer):
    vps = serializers.SlugRelatedField(slug_field="uuid", queryset=Vps.objects.none())

    class Meta:
        model = Snapshot
        fields = ["uuid", "vps", "name", "state", "created_at"]
        read_only_fields = ["uuid", "state", "created_at"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None:
            self.fields["vps"].queryset = restrict(Vps, request.user, "apply")

    def create(self, validated):
        vps = validated.pop("vps")
        return services.do_create_snapshot(vps, actor=self.actor, data=validated)


class MetricsQuerySerializer(serializers.Serializer):
    range = serializers.ChoiceField(choices=list(stats.RANGES), default="1h")


class MetricPointsSerializer(serializers.Serializer):
    min = serializers.ListField(child=serializers.FloatField(allow_null=True))
    avg = serializers.ListField(child=serializers.FloatField(allow_null=True))
    max = serializers.ListField(child=serializers.FloatField(allow_null=True))


class VpsSeriesSerializer(serializers.Serializer):
    vps = serializers.UUIDField()
    range = serializers.CharField()
    step = serializers.IntegerField(help_text="Seconds per point.")
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    t = serializers.ListField(child=serializers.IntegerField(), help_text="Unix times.")
    metrics = serializers.DictField(
        child=MetricPointsSerializer(),
        help_text=f"Per metric ({', '.join(stats.ROLLED)}): min/avg/max per point.",
    )
