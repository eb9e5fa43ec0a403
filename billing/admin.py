"""The admin shows billing rows through the policy; changes go through billing.services
(an admin without a service for a model is read-only)."""

from django.contrib import admin

from billing import services
from billing.models import (
    BillingProfile,
    BillingSettings,
    Invoice,
    InvoiceLine,
    InvoiceSequence,
    Payment,
    TaxRate,
    UsageRecord,
    UsageSample,
    UsageSampleDay,
)
from core.admin_base import PolicyAdmin


class InvoiceLineInline(admin.TabularInline):
    model = InvoiceLine
    fields = ["position", "description", "quantity", "unit", "unit_price", "amount"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Invoice)
class InvoiceAdmin(PolicyAdmin):
    list_display = ["__str__", "kind", "state", "customer", "issuer", "total", "currency"]
    list_filter = ["state", "kind", "currency"]
    search_fields = ["number", "customer__email"]
    list_select_related = ["customer", "issuer"]
    inlines = [InvoiceLineInline]
    show_full_result_count = False


@admin.register(Payment)
class PaymentAdmin(PolicyAdmin):
    list_display = ["invoice", "amount", "currency", "method", "state", "received_at"]
    list_filter = ["method", "state"]
    search_fields = ["invoice__number", "external_id"]
    list_select_related = ["invoice"]
    show_full_result_count = False


@admin.register(UsageRecord)
class UsageRecordAdmin(PolicyAdmin):
    list_display = ["account", "period_start", "kind", "quantity", "amount", "rated_at"]
    list_filter = ["kind", "period_start"]
    search_fields = ["account__email"]
    list_select_related = ["account"]
    show_full_result_count = False


@admin.register(UsageSample)
class UsageSampleAdmin(PolicyAdmin):
    list_display = ["day", "account", "kind", "value"]
    list_filter = ["kind", "day"]
    search_fields = ["account__email"]
    list_select_related = ["account"]
    show_full_result_count = False


@admin.register(UsageSampleDay)
class UsageSampleDayAdmin(PolicyAdmin):
    list_display = ["day", "taken_at", "samples"]


@admin.register(TaxRate)
class TaxRateAdmin(PolicyAdmin):
    create_service = staticmethod(services.do_create_tax_rate)
    update_service = staticmethod(services.do_update_tax_rate)
    delete_service = staticmethod(services.do_delete_tax_rate)
    fields = services.TAX_RATE_FIELDS
    list_display = ["country", "name", "rate", "updated_at"]


@admin.register(BillingSettings)
class BillingSettingsAdmin(PolicyAdmin):
    update_service = staticmethod(services.do_update_settings)
    fields = services.SETTINGS_FIELDS
    list_display = ["__str__", "currency", "period", "due_days", "suspend_after_days"]


@admin.register(BillingProfile)
class BillingProfileAdmin(PolicyAdmin):
    list_display = ["user", "legal_name", "country", "tax_id"]
    search_fields = ["user__email", "legal_name"]
    list_select_related = ["user"]
    exclude = ["stripe_customer_id", "stripe_payment_method_id"]


@admin.register(InvoiceSequence)
class InvoiceSequenceAdmin(PolicyAdmin):
    list_display = ["key", "last"]


@admin.register(InvoiceLine)
class InvoiceLineAdmin(PolicyAdmin):
    list_display = ["invoice", "description", "quantity", "unit_price", "amount"]
    list_select_related = ["invoice"]
    show_full_result_count = False


# Stripe account, events, cards and dunning rows (their own module).
from billing import payments_admin  # noqa: E402, F401
