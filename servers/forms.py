import json

from django import forms

from accounts.models import Role, User
from servers.engine import validate_overrides
from servers.models import FirewallRule, Server


class ServerForm(forms.ModelForm):
    private_key = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "autocomplete": "off"}),
        help_text="Leave blank to have the panel generate an ed25519 key; its public half is "
        "shown on the server page for authorized_keys.",
    )
    password = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Only for password authentication. Stored encrypted.",
    )
    profile = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "class": "font-mono"}),
        help_text='Overrides of paths and commands as JSON, e.g. {"nginx_listen": "8080"}.',
    )

    class Meta:
        model = Server
        fields = [
            "name",
            "address",
            "ssh_port",
            "ssh_user",
            "auth_method",
            "private_key",
            "password",
            "transport",
            "kind",
            "location",
            "status",
            "owner",
            "notes",
            "profile",
        ]
        widgets = {"notes": forms.Textarea(attrs={"rows": 2})}

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user
        if self.instance.pk:
            self.initial["profile"] = (
                json.dumps(self.instance.profile) if self.instance.profile else ""
            )
            self.fields["private_key"].help_text = "Leave blank to keep the current key."
            self.fields["password"].help_text = "Leave blank to keep the current password."
        if user.role == Role.ADMIN:
            self.fields["owner"].queryset = User.objects.filter(
                role__in=[Role.ADMIN, Role.RESELLER]
            )
            if not self.instance.pk:
                self.initial["owner"] = user.pk  # model_to_dict put None there
        else:
            del self.fields["owner"]
            self.fields["transport"].choices = [
                c for c in Server.Transport.choices if c[0] != Server.Transport.LOCAL
            ]

    def clean_profile(self):
        raw = self.cleaned_data.get("profile") or ""
        if not raw.strip():
            return {}
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}") from exc
        validate_overrides(value)
        return value

    def clean(self):
        data = super().clean()
        if data.get("auth_method") == Server.Auth.PASSWORD and not (
            data.get("password") or self.instance.password
        ):
            self.add_error("password", "Give the SSH password or use a key.")
        return data

    def service_data(self) -> dict:
        data = dict(self.cleaned_data)
        if "owner" not in data:
            data["owner"] = self.instance.owner if self.instance.pk else self.user
        return data


class FirewallRuleForm(forms.ModelForm):
    class Meta:
        model = FirewallRule
        fields = ["position", "action", "protocol", "port", "port_end", "source", "comment"]
