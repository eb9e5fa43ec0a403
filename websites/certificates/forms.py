from django import forms

from websites.certificates.models import Certificate


class IssueForm(forms.Form):
    key_type = forms.ChoiceField(
        choices=Certificate.KeyType.choices, initial=Certificate.KeyType.ECDSA, label="Key type"
    )
    challenge = forms.ChoiceField(
        choices=Certificate.Challenge.choices,
        initial=Certificate.Challenge.HTTP01,
        required=False,
        label="Validation",
        help_text="DNS-01 needs every name in a zone the panel serves for you.",
    )
    wildcard = forms.BooleanField(
        required=False,
        label="Also cover every subdomain (*.domain)",
        help_text="Wildcards are validated with DNS-01.",
    )


class UploadForm(forms.Form):
    certificate = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false"}),
        label="Certificate and chain (PEM)",
        help_text="The site's certificate first, then the intermediates.",
        max_length=64 * 1024,
    )
    private_key = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false", "autocomplete": "off"}),
        label="Private key (PEM, unencrypted)",
        help_text="Stored encrypted; written on the server readable by root only.",
        max_length=16 * 1024,
    )
