from django.apps import AppConfig


class BillingConfig(AppConfig):
    """Usage, rating, invoices, credit notes and payments (docs/billing.md)."""

    name = "billing"
    verbose_name = "Billing"

    def ready(self):
        from core import schedules

        schedules.every(360, "billing.tasks.collect_current", name="billing.collect_current")
        schedules.every(1440, "billing.tasks.close_previous_period", name="billing.close_period")
