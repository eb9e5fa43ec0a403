"""Admin for the Stripe account (secrets write-only) and read-only payment rows."""

from django import forms
from django.contrib import admin

from billing import payments
from billing.payment_models import (
    DunningStep,
    DunningSuspension,
    PaymentCard,
    StripeAccount,
    StripeEvent,
)
from core.admin_base import PolicyAdmin
from core.forms import secret_field


class StripeAccountForm(forms.ModelForm):
    secret_key = secret_field(help_text="sk_...: stored encrypted. Blank keeps it.")
    webhook_secret = secret_field(help_text="whsec_...: stored encrypted. Blank keeps it.")

    class Meta:
        model = StripeAccount
        fields = [*payments.ACCOUNT_FIELDS, *payments.ACCOUNT_SECRETS]


def _save_account(account=None, *, actor, data):
    return payments.do_save_stripe_account(actor=actor, data=data, account=account)


@admin.register(StripeAccount)
class StripeAccountAdmin(PolicyAdmin):
    form = StripeAccountForm
    list_display = ["__str__", "publishable_key", "updated_at"]
    create_service = staticmethod(lambda *, actor, data: _save_account(actor=actor, data=data))
    update_service = staticmethod(_save_account)


@admin.register(StripeEvent)
class StripeEventAdmin(PolicyAdmin):
    list_display = ["event_id", "type", "invoice", "result", "received_at"]
    list_filter = ["type", "result"]
    search_fields = ["event_id"]
    list_select_related = ["invoice"]


@admin.register(PaymentCard)
class PaymentCardAdmin(PolicyAdmin):
    list_display = ["__str__", "user", "is_default", "created_at"]
    list_select_related = ["user"]
    exclude = ["stripe_id"]


@admin.register(DunningStep)
class DunningStepAdmin(PolicyAdmin):
    list_display = ["invoice", "kind", "days_overdue", "detail", "created_at"]
    list_filter = ["kind"]
    list_select_related = ["invoice"]


@admin.register(DunningSuspension)
class DunningSuspensionAdmin(PolicyAdmin):
    list_display = ["account", "service", "label", "invoice", "suspended_at", "lifted_at"]
    list_filter = ["service"]
    list_select_related = ["account", "invoice"]
