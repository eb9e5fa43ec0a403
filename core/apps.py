from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CoreConfig(AppConfig):
    """The shared kernel: operations, permission policy, audit, live events, generic views."""

    name = "core"
    verbose_name = "Panel core"

    def ready(self):
        from core import checks, kinds, schedules  # noqa: F401 - checks registers a check

        schedules.every(1, "core.tasks.heartbeat", name="heartbeat")
        schedules.every(1, "core.tasks.reap_stale_operations", name="reap_stale_operations")
        schedules.every(10, "core.tasks.witness_audit_head", name="witness_audit_head")
        schedules.every(15, "core.tasks.prune_live_events", name="prune_live_events")
        kinds.register("panel.self_check", "Self-check", "database, channel layer, disk space")
        post_migrate.connect(schedules.sync, sender=self, dispatch_uid="core.schedules")
