from django.apps import AppConfig


class WebsitesConfig(AppConfig):
    name = "websites"

    def ready(self):
        from servers.engine import registry
        from websites.apply import WebsiteFiles
        from websites.nginx import NginxService
        from websites.php import PhpFpmService

        registry.register_service(NginxService)
        registry.register_service_family("php-fpm", r"\d+\.\d+", PhpFpmService, PhpFpmService)
        registry.register_provider(WebsiteFiles())
