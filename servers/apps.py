from django.apps import AppConfig


class ServersConfig(AppConfig):
    name = "servers"

    def ready(self):
        from core import schedules

        schedules.every(60, "servers.tasks.detect_drift_everywhere", name="drift_check")
