from django.apps import AppConfig


class VpsConfig(AppConfig):
    name = "vps"
    verbose_name = "VPS"
    # Until the app has pages of its own (a urls.py), the portal shows this placeholder.
    placeholder = ("VPS", "cpu", "Virtual servers on your hypervisors will be listed here.")

    def ready(self):
        from core.schedules import every

        every(5, "vps.tasks.refresh_all")
