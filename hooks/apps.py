from django.apps import AppConfig


class HooksConfig(AppConfig):
    """Webhooks for integrators: signed JSON for operations, websites, certificates, VPS
    state and alerts (docs/webhooks.md)."""

    name = "hooks"
    verbose_name = "Webhooks"

    def ready(self):
        from core import events, schedules
        from hooks import dispatch

        events.on_event(dispatch.nudge)
        from django.db.models.signals import pre_delete

        from hooks.services import audit_token_webhooks

        pre_delete.connect(
            audit_token_webhooks, sender="accounts.ApiToken", dispatch_uid="hooks.token_webhooks"
        )
        schedules.every(1, "hooks.tasks.dispatch", name="hooks.dispatch")
        schedules.every(1, "hooks.tasks.retry_deliveries", name="hooks.retry_deliveries")
        schedules.every(60, "hooks.tasks.prune", name="hooks.prune")
