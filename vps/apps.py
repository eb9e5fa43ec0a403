from django.apps import AppConfig


class VpsConfig(AppConfig):
    name = "vps"
    # Until the app has pages of its own (a urls.py), the portal shows this placeholder.
    placeholder = ("VPS", "cpu", "Virtual servers on your hypervisors will be listed here.")
