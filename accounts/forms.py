import zoneinfo

from allauth.account.forms import AddEmailForm as AllauthAddEmailForm
from allauth.account.models import EmailAddress
from django import forms

from accounts.models import ApiToken, User


class ProfileForm(forms.ModelForm):
    timezone = forms.ChoiceField(
        choices=lambda: [(tz, tz) for tz in sorted(zoneinfo.available_timezones())]
    )

    class Meta:
        model = User
        fields = ["name", "company", "timezone", "avatar"]

    def clean_avatar(self):
        avatar = self.cleaned_data.get("avatar")
        if avatar and getattr(avatar, "size", 0) > 512 * 1024:
            raise forms.ValidationError("Choose an image under 512 KB.")
        return avatar


class SecurityForm(forms.ModelForm):
    class Meta:
        model = User
        fields = ["session_timeout_minutes", "ip_allowlist"]
        widgets = {"ip_allowlist": forms.Textarea(attrs={"rows": 4})}

    def clean_session_timeout_minutes(self):
        value = self.cleaned_data.get("session_timeout_minutes")
        if value is not None and not 5 <= value <= 7 * 24 * 60:
            raise forms.ValidationError("Choose between 5 minutes and 7 days (10080 minutes).")
        return value


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100)
    scope = forms.ChoiceField(choices=ApiToken.Scope.choices)
    expires_at = forms.DateTimeField(
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="Leave blank for a token that does not expire.",
    )


class CodeForm(forms.Form):
    code = forms.CharField(
        max_length=20,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}
        ),
    )


class AddEmailForm(AllauthAddEmailForm):
    """A new address for the signed-in user. One that belongs to another account is refused
    here, instead of allauth mailing its owner (the panel never mails third parties because
    someone typed their address)."""

    def clean_email(self):
        email = super().clean_email()
        other = User.objects.exclude(pk=self.user.pk).filter(email__iexact=email).exists()
        other = other or (
            EmailAddress.objects.exclude(user=self.user).filter(email__iexact=email).exists()
        )
        if other:
            raise forms.ValidationError("This address belongs to another account.")
        return email
