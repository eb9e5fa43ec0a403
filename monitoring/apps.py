from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"
    # Until the app has pages of its own (a urls.py), the portal shows this placeholder.
    placeholder = ("Monitoring", "activity", "Live metrics and alerts will be shown here.")

    def ready(self):
        from core import schedules
        from core.sections import add_section
        from monitoring.views import server_metrics_section

        add_section(
            "servers.server_detail",
            "monitoring/partials/server_metrics.html",
            server_metrics_section,
            order=10,
        )

        # Collection itself runs every PANEL_MONITORING_INTERVAL seconds in its own loop
        # (manage.py collect_metrics, started by runpanel); rollups and pruning are jobs.
        schedules.every(5, "monitoring.tasks.roll_up", name="monitoring_rollup")
        schedules.every(60, "monitoring.tasks.prune", name="monitoring_prune")
