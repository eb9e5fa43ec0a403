from django.apps import AppConfig


class BillingConfig(AppConfig):
    """Usage, rating, invoices, credit notes and payments (docs/billing.md)."""

    name = "billing"
    verbose_name = "Billing"
