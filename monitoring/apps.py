from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"
    # Until the app has pages of its own (a urls.py), the portal shows this placeholder.
    placeholder = ("Monitoring", "activity", "Live metrics and alerts will be shown here.")
