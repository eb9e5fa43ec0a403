from django.apps import AppConfig


class BillingConfig(AppConfig):
    """Usage, rating, invoices, credit notes and payments (docs/billing.md)."""

    name = "billing"
    verbose_name = "Billing"

    def ready(self):
        from billing import checks  # noqa: F401  (registers the country code checks)
        from billing.payments_views import invoice_section
        from core import schedules
        from core.sections import add_section

        schedules.every(360, "billing.tasks.collect_current", name="billing.collect_current")
        # Daily: what accounts hold (disk, mailboxes ...), billed as the period's average; a
        # collection also samples a day this has not reached yet.
        schedules.every(24 * 60, "billing.tasks.sample_usage", name="billing.sample_usage")
        schedules.every(1440, "billing.tasks.close_previous_period", name="billing.close_period")
        # Daily: dunning steps are counted in days after the due date.
        schedules.every(24 * 60, "billing.tasks.run_dunning", name="billing.dunning")
        schedules.every(10, "billing.tasks.reactivate_paid", name="billing.reactivate_paid")
        add_section(
            "billing.invoice_detail", "billing/partials/invoice_payments.html", invoice_section
        )
