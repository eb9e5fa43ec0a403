import json

from django import forms

from accounts.models import User
from core.forms import secret_field
from core.policy import ADMIN, restrict, role_of
from core.validators import refuse_nul
from servers import services
from servers.models import FirewallRule, Server


class ServerForm(forms.ModelForm):
    private_key = secret_field(
        textarea=True,
        help_text="Leave blank to have the panel generate an ed25519 key; its public half is "
        "shown on the server page for authorized_keys.",
    )
    password = secret_field(help_text="Only for password authentication. Stored encrypted.")
    profile = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "class": "font-mono"}),
        help_text='Overrides of paths and commands as JSON, e.g. {"nginx_listen": "8080"}.',
    )

    class Meta:
        model = Server
        fields = [*services.SERVER_FIELDS, *services.SERVER_SECRETS]
        widgets = {"notes": forms.Textarea(attrs={"rows": 2})}

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user
        self.order_fields(["name", "address", "ssh_port", "ssh_user", "auth_method"])
        if self.instance.pk:
            self.initial["profile"] = (
                json.dumps(self.instance.profile) if self.instance.profile else ""
            )
            self.fields["private_key"].help_text = "Leave blank to keep the current key."
            self.fields["password"].help_text = "Leave blank to keep the current password."
        if role_of(user) == ADMIN:
            self.fields["owner"].queryset = restrict(User, user).filter(role__in=Server.policy.add)
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
        refuse_nul(value, "profile")
        return value

    def clean(self):
        data = super().clean()
        if data.get("auth_method") == Server.Auth.PASSWORD and not (
            data.get("password") or self.instance.password
        ):
            self.add_error("password", "Give the SSH password or use a key.")
        return data

    def service_data(self) -> dict:
        return dict(self.cleaned_data)


class FirewallRuleForm(forms.ModelForm):
    class Meta:
        model = FirewallRule
        fields = services.RULE_FIELDS
