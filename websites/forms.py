"""Portal forms for websites. Writes go through websites.services; these only shape input."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError

from websites import plans, services
from websites.models import APP_KINDS, Website

WWW_REDIRECTS = [
    ("", "Serve every name as it is"),
    ("to_apex", "Send www.NAME to NAME"),
    ("to_www", "Send NAME to www.NAME"),
]


def _allowed(user, **what) -> bool:
    try:
        plans.check_allowed(user, **what)
    except ValidationError:
        return False
    return True


class WebsiteCreateForm(forms.Form):
    """Every field of a new site, in the wizard's steps (``STEPS``). Without JavaScript the
    page is this one form; with it, the same form is shown a step at a time."""

    STEPS = (
        ("names", "Names", ("domain", "aliases")),
        (
            "where",
            "Server and kind",
            ("server", "kind", "php_version", "upstream", "start_command"),
        ),
        ("options", "Options", ("tls", "www_redirect", "https_redirect")),
        ("review", "Review", ()),
    )

    domain = forms.CharField(
        max_length=253, help_text="e.g. example.com; internationalised names as you write them."
    )
    aliases = forms.CharField(
        required=False, max_length=2000, help_text="More names, separated by spaces."
    )
    server = forms.ModelChoiceField(queryset=None, empty_label=None)
    kind = forms.ChoiceField(choices=())
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
    tls = forms.BooleanField(
        label="Request an HTTPS certificate",
        required=False,
        initial=True,
        help_text="From the ACME directory, once the site answers; its names must point at "
        "the server.",
    )
    www_redirect = forms.ChoiceField(
        label="www and the bare name", choices=WWW_REDIRECTS, required=False
    )
    https_redirect = forms.BooleanField(
        label="Send HTTP visitors to HTTPS",
        required=False,
        help_text="Takes effect once the certificate is live.",
    )

    def __init__(self, *args, user=None, instance=None, **kwargs):
        super().__init__(*args, **kwargs)
        servers = services.hosting_servers(user).order_by("name")
        self.fields["server"].queryset = servers
        # Kinds come from the model, so a new kind appears here by itself; the plan narrows.
        kinds = [(k, label) for k, label in Website.Kind.choices if _allowed(user, kind=k)]
        self.fields["kind"].choices = kinds
        if Website.Kind.PHP in dict(kinds):
            self.fields["kind"].initial = Website.Kind.PHP
        chosen = self._chosen_server(servers)
        on = [chosen] if chosen is not None else list(servers)
        versions = sorted(
            {v for s in on for v in services.installed_php(s) if _allowed(user, php_version=v)},
            key=lambda v: tuple(int(p) for p in v.split(".")),
        )
        self.fields["php_version"].choices = [("", "—")] + [(v, f"PHP {v}") for v in versions]
        if versions:
            self.fields["php_version"].initial = versions[-1]
        self.fields["php_version"].shown_when = ("kind", Website.Kind.PHP)
        self.fields["upstream"].shown_when = ("kind", Website.Kind.PROXY)
        self.fields["start_command"].shown_when = ("kind", " ".join(APP_KINDS))
        if settings.PANEL_ACME_AUTO:  # the panel orders certificates by itself
            del self.fields["tls"]

    def _chosen_server(self, servers):
        value = (self.data if self.is_bound else self.initial).get("server")
        if not value or not str(value).isdigit():
            return None
        return servers.filter(pk=value).first()

    def step_fields(self, upto: int) -> list[str]:
        """The fields of the steps before ``upto`` (their errors stop the wizard there)."""
        return [f for _key, _label, fields in self.STEPS[:upto] for f in fields if f in self.fields]

    def step_of(self, field: str) -> int:
        for i, (_key, _label, fields) in enumerate(self.STEPS):
            if field in fields:
                return i
        return 0

    def options(self) -> dict:
        data = self.cleaned_data
        return {
            "www_redirect": data.get("www_redirect") or "",
            "https_redirect": bool(data.get("https_redirect")),
        }

    def service_data(self) -> dict:
        """What ``do_create_website`` takes."""
        data = self.cleaned_data
        return {
            "domain": data["domain"],
            "aliases": data.get("aliases", ""),
            "server": data["server"],
            "kind": data["kind"],
            # The other kinds' fields stay in the page (hidden): only the chosen kind's count.
            "php_version": data.get("php_version", "") if data["kind"] == Website.Kind.PHP else "",
            "upstream": data.get("upstream", "") if data["kind"] == Website.Kind.PROXY else "",
            "start_command": " ".join(data.get("start_command", "").split())
            if data["kind"] in APP_KINDS
            else "",
            "options": self.options(),
        }


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


class AuthPathForm(forms.Form):
    """Protect a path (with its first user) or add a user / set a user's password."""

    path = forms.CharField(max_length=200, help_text="Starts with /, e.g. /admin.")
    name = forms.CharField(label="User", max_length=32)
    password = forms.CharField(
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        max_length=72,
        help_text="8 to 72 characters. Kept only as a bcrypt hash.",
    )


class AuthRemoveForm(forms.Form):
    path = forms.CharField(max_length=200)
    name = forms.CharField(max_length=32, required=False)
