from django.apps import AppConfig


class VpsConfig(AppConfig):
    name = "vps"
