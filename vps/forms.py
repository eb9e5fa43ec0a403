"""Portal forms. They only carry input: the services validate (per field) and write."""

from django import forms

from vps.models import Image, SshKey, Vps, VpsPlan


class VpsForm(forms.ModelForm):
    plan = forms.ModelChoiceField(queryset=VpsPlan.objects.none())
    image = forms.ModelChoiceField(queryset=Image.objects.none())
    ssh_keys = forms.ModelMultipleChoiceField(
        queryset=SshKey.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="SSH keys",
    )
    location = forms.ChoiceField(
        required=False,
        help_text="Only locations with room for one of your plans are listed.",
    )

    class Meta:
        model = Vps
        fields = ["hostname", "plan", "image", "location", "ssh_keys"]

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        from vps.services import locations_with_room, visible_plans

        self.fields["plan"].queryset = plans = visible_plans(user)
        self.fields["location"].choices = [("", "Any location")] + [
            (where, where) for where in locations_with_room(plans)
        ]
        self.fields["image"].queryset = Image.objects.filter(active=True)
        self.fields["ssh_keys"].queryset = SshKey.objects.filter(owner=user)


class SshKeyForm(forms.ModelForm):
    public_key = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "class": "font-mono text-xs"}),
        max_length=16384,
        help_text="One line, as in ~/.ssh/id_ed25519.pub.",
    )

    class Meta:
        model = SshKey
        fields = ["name", "public_key"]


class SnapshotForm(forms.Form):
    name = forms.CharField(max_length=50)


class ReinstallForm(forms.Form):
    image = forms.ModelChoiceField(queryset=Image.objects.filter(active=True))
    confirm = forms.BooleanField(
        label="I understand that everything on the disk and every snapshot is deleted."
    )


class RenewForm(forms.Form):
    expires_at = forms.DateTimeField(
        label="New expiry",
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="In the panel's time zone. Leave empty for no expiry.",
    )


class ResizeForm(forms.Form):
    plan = forms.ModelChoiceField(queryset=VpsPlan.objects.none())

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        from vps.services import visible_plans

        self.fields["plan"].queryset = visible_plans(user)
