"""Portal forms. They only carry input: the services validate (per field) and write."""

from django import forms

from accounts.models import User
from core.forms import secret_field
from core.policy import ADMIN, RESELLER, role_of
from mail import services
from servers.models import Server


class MailDomainForm(forms.Form):
    domain = forms.CharField(max_length=300, help_text="Such as example.com (IDN allowed).")
    server = forms.ModelChoiceField(queryset=Server.objects.none(), empty_label=None)
    owner = forms.ModelChoiceField(queryset=User.objects.none(), required=False)

    def __init__(self, *args, user, **kwargs):
        kwargs.pop("instance", None)
        super().__init__(*args, **kwargs)
        self.fields["server"].queryset = services.mail_servers(user)
        if role_of(user) in (ADMIN, RESELLER):
            self.fields["owner"].queryset = services.owners_for(user)
            self.fields["owner"].help_text = "Blank: yourself."
        else:
            del self.fields["owner"]


class MailboxForm(forms.Form):
    local_part = forms.CharField(
        label="Address", max_length=64, help_text="The part before the @: letters, digits . _ -"
    )
    password = secret_field(help_text="10 characters or more. Only a hash of it is kept.")
    quota_mb = forms.IntegerField(label="Quota (MB)", min_value=1, initial=1024)


class MailboxEditForm(forms.Form):
    password = secret_field(help_text="Blank keeps the current one. Only a hash of it is kept.")
    quota_mb = forms.IntegerField(label="Quota (MB)", min_value=1)
    suspended = forms.BooleanField(required=False, help_text="Refuses logins and mail.")
    send_limit_per_hour = forms.IntegerField(
        label="Sending limit (recipients an hour)",
        min_value=0,
        max_value=100000,
        help_text="Above it, its mail is held for staff and an alert raised (0: no limit).",
    )
    autoreply = forms.BooleanField(
        label="Auto-responder", required=False, help_text="Answer mail once a day per sender."
    )
    autoreply_subject = forms.CharField(label="Reply subject", max_length=200, required=False)
    autoreply_body = forms.CharField(
        label="Reply", widget=forms.Textarea(attrs={"rows": 4}), max_length=5000, required=False
    )
    autoreply_start = forms.DateField(
        label="Reply from",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="First day (empty: from now).",
    )
    autoreply_end = forms.DateField(
        label="Reply until",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Last day, included (empty: until turned off).",
    )

    def __init__(self, *args, user=None, box=None, **kwargs):
        super().__init__(*args, **kwargs)
        if box is not None and not services.may_set_send_limit(user, box):
            # Shown, not editable: a disabled field keeps its initial value on POST.
            self.fields["send_limit_per_hour"].disabled = True
            self.fields["send_limit_per_hour"].help_text = "Set by your provider (0: no limit)."


class MailAliasForm(forms.Form):
    local_part = forms.CharField(label="Address", max_length=64, help_text="Before the @.")
    destinations = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=20000,
        help_text="Addresses it delivers to, one per line: mailboxes here or elsewhere.",
    )
