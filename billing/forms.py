from decimal import Decimal

from django import forms

from billing.models import BillingProfile, BillingSettings, TaxRate
from billing.services import PROFILE_FIELDS, SETTINGS_FIELDS, TAX_RATE_FIELDS


class PaymentForm(forms.Form):
    amount = forms.DecimalField(max_digits=14, decimal_places=2, min_value=Decimal("0.01"))
    external_id = forms.CharField(label="Reference", max_length=100, required=False)
    note = forms.CharField(max_length=200, required=False)
    received_at = forms.DateTimeField(required=False, help_text="Empty: now.")


class CreditForm(forms.Form):
    amount = forms.DecimalField(
        max_digits=14,
        decimal_places=2,
        min_value=Decimal("0.01"),
        required=False,
        help_text="Before tax; empty credits all that is left.",
    )
    reason = forms.CharField(max_length=150)


class VoidForm(forms.Form):
    reason = forms.CharField(max_length=200)


class ProfileForm(forms.ModelForm):
    class Meta:
        model = BillingProfile
        fields = PROFILE_FIELDS


class BillingSettingsForm(forms.ModelForm):
    class Meta:
        model = BillingSettings
        fields = SETTINGS_FIELDS


class TaxRateForm(forms.ModelForm):
    class Meta:
        model = TaxRate
        fields = TAX_RATE_FIELDS
