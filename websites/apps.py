from django.apps import AppConfig


class WebsitesConfig(AppConfig):
    name = "websites"

    def ready(self):
        from core.sections import add_section
        from servers.engine import registry
        from websites import plans
        from websites.apply import WebsiteFiles
        from websites.models import Website
        from websites.nginx import NginxService
        from websites.php import PhpFpmService
        from websites.sections import server_websites

        registry.register_service(NginxService)
        registry.register_service_family("php-fpm", r"\d+\.\d+", PhpFpmService, PhpFpmService)
        registry.register_provider(WebsiteFiles())
        plans.register_counter(
            "websites", lambda owners: Website.objects.filter(owner__in=owners).count()
        )
        add_section(
            "servers.server_detail", "websites/partials/server_websites.html", server_websites
        )
