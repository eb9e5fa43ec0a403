from django.apps import AppConfig


class PanelConfig(AppConfig):
    name = "panel"
    verbose_name = "Panel"

    def ready(self):
        from panel import checks  # noqa: F401 - registers the secrets check
