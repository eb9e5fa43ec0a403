"""Portal forms. They only carry input: the services validate (per field) and write."""

from zoneinfo import ZoneInfo

from django import forms
from django.utils import timezone

from core.forms import secret_field
from core.policy import CHANGE, restrict
from monitoring import services
from monitoring.models import AlertRule, Check, MaintenanceWindow, NotificationChannel, StatusPage
from servers.models import Server


class RuleForm(forms.ModelForm):
    kind = forms.ChoiceField(choices=[])
    metric = forms.ChoiceField(
        choices=[("", "—")] + [(m, m) for m in services.METRIC_NAMES], required=False
    )

    class Meta:
        model = AlertRule
        fields = [
            "name",
            "kind",
            "metric",
            "comparison",
            "threshold",
            "duration",
            "scope",
            "server",
            "location",
            "days",
            "channels",
            "enabled",
        ]
        widgets = {"channels": forms.CheckboxSelectMultiple}

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        from monitoring.alerts import kind_choices, sources

        self.fields["kind"].choices = kind_choices()
        # Each field is shown for the kinds that use it (static/js/panel.js hides the rest;
        # the service validates whatever is sent).
        with_servers = " ".join(k for k, s in sources().items() if s.uses_servers)
        # Kinds that watch a figure: "metric" (servers) and those registered with
        # ``metrics=`` (e.g. vps_metric). Each such kind gets its own metric list, a field
        # ``metric_<kind>`` that clean() maps back to ``metric``; the service validates.
        self.metric_kinds = {
            k: f"metric_{k}" for k, s in sorted(sources().items()) if s.metrics and k != "metric"
        }
        current = self.instance.kind if self.instance.pk else None
        fields = dict(self.fields)
        for kind, name in self.metric_kinds.items():
            fields[name] = forms.ChoiceField(
                label="Metric",
                choices=[("", "—")] + [(m, m) for m in sources()[kind].metrics],
                required=False,
                initial=self.instance.metric if current == kind else "",
            )
            fields[name].shown_when = ("kind", kind)
        # New fields just after "metric", in the order the page shows them.
        order = [n for n in self.fields if n != "metric"]
        at = list(self.fields).index("metric")
        order[at:at] = ["metric", *self.metric_kinds.values()]
        self.fields = {n: fields[n] for n in order}
        self.fields["metric"].shown_when = ("kind", "metric")
        figure_kinds = " ".join(["metric", *self.metric_kinds])
        for name in ("comparison", "threshold", "duration"):
            self.fields[name].shown_when = ("kind", figure_kinds)
        for name in ("scope", "server", "location"):
            self.fields[name].shown_when = ("kind", with_servers)
        self.fields["days"].shown_when = ("kind", "certificate_expiring")
        owner = self.instance.owner if self.instance.pk else user
        self.fields["server"].queryset = restrict(Server, owner).order_by("name")
        # The owner's channels and those colleagues shared with them (core/sharing.py).
        self.fields["channels"].queryset = restrict(NotificationChannel, owner).select_related(
            "owner"
        )

    def _metric_field(self) -> str:
        """The form field holding the metric for the kind chosen."""
        kind = (self.data.get("kind") if self.is_bound else None) or self.instance.kind
        return self.metric_kinds.get(kind, "metric")

    def clean(self):
        data = super().clean()
        chosen = self._metric_field()
        for name in self.metric_kinds.values():
            value = data.pop(name, "")
            if name == chosen:
                data["metric"] = value
        return data

    def add_error(self, field, error):
        # The service names "metric": show its message on the field the user filled in.
        if field == "metric":
            field = self._metric_field()
        elif field is None and isinstance(error, dict) and "metric" in error:
            error = {self._metric_field() if k == "metric" else k: v for k, v in error.items()}
        super().add_error(field, error)


class ChannelForm(forms.ModelForm):
    secret = secret_field(
        help_text="Webhook: the signing secret. Telegram: the bot token. "
        "Blank keeps the stored one."
    )

    class Meta:
        model = NotificationChannel
        fields = ["name", "kind", "target", "enabled"]

    def clean_secret(self):
        return self.cleaned_data.get("secret") or ""


class CheckForm(forms.ModelForm):
    dns_type = forms.ChoiceField(choices=[(t, t) for t in services.DNS_TYPES], initial="A")

    class Meta:
        model = Check
        fields = services.CHECK_FIELDS


class SilenceForm(forms.Form):
    hours = forms.TypedChoiceField(
        coerce=int,
        choices=[(1, "1 hour"), (4, "4 hours"), (24, "1 day"), (168, "1 week"), (0, "Lift")],
    )


class StatusPageForm(forms.ModelForm):
    class Meta:
        model = StatusPage
        fields = services.STATUS_PAGE_FIELDS


class LocalDateTimeInput(forms.DateTimeInput):
    input_type = "datetime-local"

    def __init__(self):
        super().__init__(format="%Y-%m-%dT%H:%M")


class MaintenanceWindowForm(forms.ModelForm):
    """Start and end are wall-clock times in the window's own time zone."""

    class Meta:
        model = MaintenanceWindow
        fields = services.WINDOW_FIELDS
        widgets = {"starts_at": LocalDateTimeInput(), "ends_at": LocalDateTimeInput()}

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        owner = self.instance.owner if self.instance.pk else user
        self.fields["server"].queryset = restrict(Server, owner, CHANGE).order_by("name")
        self.fields["server"].shown_when = ("scope", "server")
        self.fields["location"].shown_when = ("scope", "location")
        if self.instance.pk and self.instance.time_zone in _zones():
            tz = ZoneInfo(self.instance.time_zone)
            for name in ("starts_at", "ends_at"):
                moment = getattr(self.instance, name).astimezone(tz)
                self.initial[name] = moment.replace(tzinfo=None)

    def clean(self):
        data = super().clean()
        zone = data.get("time_zone")
        if zone in _zones():
            tz = ZoneInfo(zone)
            for name in ("starts_at", "ends_at"):
                if data.get(name):  # read as the panel's zone: the same wall clock in the window's
                    data[name] = timezone.make_naive(data[name]).replace(tzinfo=tz)
        return data


def _zones():
    from monitoring.maintenance import time_zones

    return time_zones()
