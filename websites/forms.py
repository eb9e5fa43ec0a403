"""Portal forms for websites. Writes go through websites.services; these only shape input."""

from __future__ import annotations

from django import forms

from websites import services
from websites.models import Website


class WebsiteCreateForm(forms.Form):
    domain = forms.CharField(
        max_length=253, help_text="e.g. example.com; internationalised names as you write them."
    )
    aliases = forms.CharField(
        required=False, max_length=2000, help_text="More names, separated by spaces."
    )
    server = forms.ModelChoiceField(queryset=None, empty_label=None)
    kind = forms.ChoiceField(choices=Website.Kind.choices, initial=Website.Kind.PHP)
    php_version = forms.ChoiceField(label="PHP version", required=False, help_text="For PHP sites.")
    upstream = forms.CharField(
        required=False,
        max_length=300,
        help_text="For reverse proxies: http://PUBLIC-IP:PORT.",
    )
    start_command = forms.CharField(
        required=False,
        max_length=500,
        help_text="For Node.js and Python apps: the command that starts the app in its "
        "directory, e.g. node server.js or gunicorn app:app (no shell). The app listens on "
        "$HOST:$PORT.",
    )

    def __init__(self, *args, user=None, instance=None, **kwargs):
        super().__init__(*args, **kwargs)
        servers = services.hosting_servers(user).order_by("name")
        self.fields["server"].queryset = servers
        versions = sorted({v for s in servers for v in services.installed_php(s)})
        self.fields["php_version"].choices = [("", "—")] + [(v, f"PHP {v}") for v in versions]
        if versions:
            self.fields["php_version"].initial = versions[-1]


class AliasesForm(forms.Form):
    aliases = forms.CharField(
        required=False,
        max_length=2000,
        help_text="More names for the site, separated by spaces. Each must point at the server.",
    )


class PhpVersionForm(forms.Form):
    php_version = forms.ChoiceField(label="PHP version")

    def __init__(self, *args, site=None, **kwargs):
        super().__init__(*args, **kwargs)
        versions = services.installed_php(site.server) if site else []
        self.fields["php_version"].choices = [(v, f"PHP {v}") for v in versions]
        if site:
            self.fields["php_version"].initial = site.php_version


class StartCommandForm(forms.Form):
    start_command = forms.CharField(
        max_length=500,
        help_text="Run in the app's directory as your system account; no shell.",
    )


class AppEnvForm(forms.Form):
    """Environment variables as NAME=value lines. Stored values are shown as ********: a line
    left that way keeps its value, a removed line removes the variable."""

    env = forms.CharField(
        label="Environment variables",
        required=False,
        max_length=50 * 4200,
        widget=forms.Textarea(attrs={"rows": 5, "spellcheck": "false", "autocomplete": "off"}),
        help_text="One NAME=value per line. Values are kept encrypted and never shown again: "
        "leave ******** to keep one. PORT and HOST are set by the panel.",
    )

    @staticmethod
    def initial_for(site) -> dict:
        from websites.appsites import masked_env

        return {"env": "\n".join(f"{k}={v}" for k, v in masked_env(site).items())}

    def changes(self, stored: dict[str, str]) -> dict:
        """The edit as the service takes it: NAME: value, NAME: None to remove."""
        wanted: dict[str, str] = {}
        for number, line in enumerate(self.cleaned_data["env"].splitlines(), 1):
            if not line.strip():
                continue
            name, sep, value = line.partition("=")
            if not sep:
                raise forms.ValidationError(f"Line {number}: write NAME=value.")
            wanted[name.strip()] = value
        return {**dict.fromkeys(set(stored) - set(wanted)), **wanted}


class SftpPasswordForm(forms.Form):
    password = forms.CharField(
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        min_length=12,
        max_length=128,
        help_text="12 characters or more. The panel sends it to the server and keeps no copy.",
    )


class SshKeyForm(forms.Form):
    ssh_key = forms.CharField(
        label="SSH public key",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One line: ssh-ed25519 AAAA... comment. Empty removes the key.",
    )
