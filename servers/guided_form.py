"""The add/edit-server form as the portal shows it: a guided form over ServerForm.

ServerForm (servers/forms.py) owns which fields exist and how they validate; this layer only
changes what a person is asked:

- the status is the panel's finding (online, offline ...), never typed in;
- the page re-renders its fields through htmx on every change, so the password box shows
  only with password sign-in and the private key only with key sign-in;
- the profile is one box per plain setting (paths, ports, seconds) with its default as the
  placeholder; only command overrides (lists) are still JSON.
"""

from __future__ import annotations

import json

from django import forms
from django.core.exceptions import ValidationError

from servers.engine import validate_overrides
from servers.engine.profile import keys as profile_keys
from servers.forms import ServerForm
from servers.models import Server

PLAIN_KINDS = ("path", "listen", "seconds")
PREFIX = "setting_"


class GuidedServerForm(ServerForm):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields.pop("status", None)
        if "password" in self.fields:
            # Kept across the htmx re-render (a password box is never filled back in).
            self.fields["password"].widget.attrs["hx-preserve"] = "true"
        self.settings = [k for k in profile_keys().values() if k.kind in PLAIN_KINDS]
        current = (self.instance.profile or {}) if self.instance.pk else {}
        for key in self.settings:
            name = PREFIX + key.name
            self.fields[name] = forms.CharField(
                required=False,
                label=key.name.replace("_", " "),
                help_text=key.help,
                widget=forms.TextInput(attrs={"placeholder": str(key.default)}),
            )
            if key.name in current:
                self.initial[name] = str(current[key.name])
        plain = {key.name for key in self.settings}
        others = {k: v for k, v in current.items() if k not in plain}
        self.initial["profile"] = json.dumps(others) if others else ""
        profile = self.fields["profile"]
        profile.label = "Command overrides (JSON)"
        profile.help_text = 'Rarely needed: commands as lists, e.g. {"nginx_test": ["nginx"]}.'

    def auth_method(self) -> str:
        """The sign-in method the page currently shows (as typed, else as saved)."""
        if self.is_bound:
            return self.data.get("auth_method") or Server.Auth.KEY
        return self.instance.auth_method or Server.Auth.KEY

    def section(self, names: list[str]) -> list:
        return [self[name] for name in names if name in self.fields]

    def where_fields(self) -> list:
        return self.section(["name", "address", "ssh_port", "ssh_user", "transport"])

    def sign_in_fields(self) -> list:
        secret = "password" if self.auth_method() == Server.Auth.PASSWORD else "private_key"
        return self.section(["auth_method", secret])

    def about_fields(self) -> list:
        return self.section(["kind", "location", "owner", "notes"])

    def setting_fields(self) -> list:
        return self.section([PREFIX + key.name for key in self.settings])

    def clean(self):
        data = super().clean()
        profile = dict(data.get("profile") or {})
        for key in self.settings:
            raw = (data.get(PREFIX + key.name) or "").strip()
            if not raw:
                continue
            value = int(raw) if key.kind == "seconds" and raw.isdigit() else raw
            try:
                validate_overrides({key.name: value})
            except ValidationError as exc:
                messages = [m.removeprefix(f"{key.name}: ") for m in exc.messages]
                self.add_error(PREFIX + key.name, messages)
                continue
            profile[key.name] = value
        data["profile"] = profile
        return data

    def service_data(self) -> dict:
        return {k: v for k, v in super().service_data().items() if not k.startswith(PREFIX)}
