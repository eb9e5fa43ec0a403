"""Forms of the staff pages (hypervisors, images, plans, IP pools). They only carry input:
the services in vps/services.py validate per field and write; the field lists come from
there."""

from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model

from core.policy import ADMIN, CHANGE, RESELLER, restrict, role_of
from servers.models import Server
from vps import services
from vps.models import Hypervisor, Image, IpPool, VpsPlan


class HypervisorForm(forms.ModelForm):
    noun, list_url = "a hypervisor", "/vps/hypervisors/"

    class Meta:
        model = Hypervisor
        fields = services.HYPERVISOR_FIELDS

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            del self.fields["server"]  # a hypervisor stays on its server (the service says so)
        else:
            self.fields["server"].queryset = restrict(Server, user, CHANGE).filter(
                hypervisor__isnull=True
            )


class PlanForm(forms.ModelForm):
    """A reseller edits its own plan's limits; administrators also say whose plan it is and
    which reseller's allowance it is (the service takes those fields from them only)."""

    noun, list_url = "a VPS plan", "/vps/plans/"

    class Meta:
        model = VpsPlan
        fields = [*services.PLAN_FIELDS, *services.PLAN_ADMIN_FIELDS]

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        if role_of(user) == ADMIN:
            resellers = restrict(get_user_model(), user).filter(role=RESELLER)
            self.fields["owner"].queryset = resellers
            self.fields["allowance_for"].queryset = resellers
        else:
            for name in services.PLAN_ADMIN_FIELDS:
                del self.fields[name]


class ImageUploadForm(forms.ModelForm):
    noun, list_url = "an image", "/vps/images/"

    file = forms.FileField(
        help_text="qcow2 or raw, without a backing file (checked with qemu-img)."
    )

    class Meta:
        model = Image
        fields = services.IMAGE_FIELDS


class ImageForm(forms.ModelForm):
    noun, list_url = "an image", "/vps/images/"

    class Meta:
        model = Image
        fields = services.IMAGE_FIELDS


class PoolForm(forms.ModelForm):
    noun, list_url = "an IP pool", "/vps/pools/"

    class Meta:
        model = IpPool
        fields = services.POOL_FIELDS

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["hypervisor"].queryset = restrict(Hypervisor, user, CHANGE).select_related(
            "server"
        )
