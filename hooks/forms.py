from django import forms

from core.forms import secret_field
from core.policy import may
from hooks.models import ALLOW_PRIVATE, SUBSCRIBABLE, EventType, Webhook

EVENT_CHOICES = [(value, EventType(value).label) for value in SUBSCRIBABLE]


class WebhookForm(forms.ModelForm):
    events = forms.MultipleChoiceField(
        choices=EVENT_CHOICES, widget=forms.CheckboxSelectMultiple, required=False
    )
    secret = secret_field(
        help_text="Signs every body (HMAC-SHA256, at least 16 characters). "
        "Blank keeps the stored one."
    )

    class Meta:
        model = Webhook
        fields = ["name", "url", "events", "enabled", "allow_private"]

    def __init__(self, *args, actor=None, **kwargs):
        super().__init__(*args, **kwargs)
        if not kwargs.get("instance") and "enabled" in self.fields:
            self.fields["enabled"].initial = True
        instance = kwargs.get("instance")
        if instance is not None and instance.url_for(actor) != instance.url:
            # Staff and resellers editing it are shown the URL without its credentials; sent
            # back unchanged, the service keeps the stored one.
            self.initial["url"] = instance.url_for(actor)
        if actor is None or not may(actor, ALLOW_PRIVATE, Webhook):
            # The service refuses it from anyone but an administrator; do not offer it.
            del self.fields["allow_private"]

    def clean_secret(self):
        return self.cleaned_data.get("secret") or ""
