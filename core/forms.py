"""Form pieces shared by every app."""

from __future__ import annotations

from django import forms


class SecretTextarea(forms.Textarea):
    """A textarea for write-only secrets (private keys): never renders a stored value."""

    def format_value(self, value):
        return None


class SecretInput(forms.PasswordInput):
    def __init__(self, attrs=None):
        super().__init__(attrs, render_value=False)


def secret_field(*, textarea: bool = False, help_text: str = "") -> forms.CharField:
    """A field whose stored value is never sent back to the browser; blank keeps it."""
    widget = SecretTextarea(attrs={"rows": 3, "autocomplete": "off"}) if textarea else SecretInput()
    return forms.CharField(required=False, strip=False, widget=widget, help_text=help_text)
