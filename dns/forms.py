"""Portal forms. They only carry input: the services validate (per field) and write."""

from django import forms

from dns.models import Zone, ZoneTemplate
from dns.validation import RECORD_TYPES
from dns.zonefiles import TSIG_ALGORITHMS


class ZoneForm(forms.ModelForm):
    name = forms.CharField(
        max_length=300,
        required=False,
        help_text="The domain, such as example.com (IDN allowed); empty for a reverse zone.",
    )
    network = forms.CharField(
        max_length=60,
        required=False,
        label="Reverse zone of an IP range",
        help_text="Such as 10.1.2.0/24 or 2001:db8:5::/48: the zone's name follows from it.",
    )
    template = forms.ModelChoiceField(
        queryset=ZoneTemplate.objects.all(),
        required=False,
        to_field_name="uuid",
        help_text="Records the zone starts with.",
    )
    server_ip = forms.CharField(
        max_length=45, required=False, label="Server IPv4 ({server_ip} in the template)"
    )
    server_ipv6 = forms.CharField(
        max_length=45, required=False, label="Server IPv6 ({server_ipv6} in the template)"
    )

    class Meta:
        model = Zone
        fields = ["name", "default_ttl"]


class RecordForm(forms.Form):
    name = forms.CharField(max_length=300, initial="@", help_text="@ for the zone itself.")
    type = forms.ChoiceField(choices=[(t, t) for t in RECORD_TYPES], initial="A")
    ttl = forms.IntegerField(label="TTL", required=False, min_value=0, max_value=2**31 - 1)
    content = forms.CharField(max_length=4000)


class ImportForm(forms.Form):
    text = forms.CharField(
        label="Zone file",
        widget=forms.Textarea(attrs={"rows": 14, "class": "font-mono text-xs"}),
        max_length=20 * 1024 * 1024,
        required=False,
    )
    file = forms.FileField(required=False, help_text="Or upload the file (up to 20 MB).")
    replace = forms.BooleanField(
        required=False, initial=True, label="Replace the zone's records (else add to them)"
    )


class AxfrForm(forms.Form):
    """Transfer the zone in from a server that serves it (optionally with a TSIG key)."""

    host = forms.CharField(label="Server address", max_length=45, help_text="Its IP address.")
    port = forms.IntegerField(min_value=1, max_value=65535, initial=53)
    tsig_name = forms.CharField(label="TSIG key name", max_length=63, required=False)
    tsig_secret = forms.CharField(
        label="TSIG secret",
        max_length=200,
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Base64, as in BIND's key clause; used for this transfer only, never stored.",
    )
    tsig_algorithm = forms.ChoiceField(
        label="TSIG algorithm",
        choices=[(a, a) for a in TSIG_ALGORITHMS],
        initial="hmac-sha256",
        required=False,
    )
    replace = forms.BooleanField(
        required=False, initial=True, label="Replace the zone's records (else add to them)"
    )
