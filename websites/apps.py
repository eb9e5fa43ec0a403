from django.apps import AppConfig


class WebsitesConfig(AppConfig):
    name = "websites"
    # Until the app has pages of its own (a urls.py), the portal shows this placeholder.
    placeholder = ("Websites", "globe", "Websites, PHP pools and certificates will be listed here.")

    def ready(self):
        from core.sections import add_section
        from servers.engine import registry
        from websites.apply import WebsiteFiles
        from websites.nginx import NginxService
        from websites.php import PhpFpmService
        from websites.sections import server_websites

        registry.register_service(NginxService)
        registry.register_service_family("php-fpm", r"\d+\.\d+", PhpFpmService, PhpFpmService)
        registry.register_provider(WebsiteFiles())
        add_section(
            "servers.server_detail", "websites/partials/server_websites.html", server_websites
        )
