from django.apps import AppConfig


class WebsitesConfig(AppConfig):
    name = "websites"
