from django.apps import AppConfig


class WebsitesConfig(AppConfig):
    name = "websites"

    def ready(self):
        from core.schedules import every
        from core.sections import add_section
        from monitoring.alerts import register_source
        from servers.engine import registry
        from websites import plans
        from websites.apply import WebsiteFiles
        from websites.appservices import SupervisorService, SystemdService
        from websites.appsites import AppFiles
        from websites.bandwidth import month_gb
        from websites.default_server import DefaultServerFiles
        from websites.models import SystemAccount, Website
        from websites.nginx import NginxService
        from websites.php import PhpFpmService
        from websites.sections import server_websites
        from websites.sftp import SftpFiles, SshdService

        registry.register_service(NginxService)
        registry.register_service(SshdService)
        registry.register_service(SupervisorService)
        registry.register_service(SystemdService)
        registry.register_service_family("php-fpm", r"\d+\.\d+", PhpFpmService, PhpFpmService)
        registry.register_provider(WebsiteFiles())
        registry.register_provider(SftpFiles())
        registry.register_provider(AppFiles())
        registry.register_provider(DefaultServerFiles())
        plans.register_counter(
            "websites", lambda owners: Website.objects.filter(owner__in=owners).count()
        )
        plans.register_counter(
            "disk_mb",
            lambda owners: sum(
                SystemAccount.objects.filter(user__in=owners)
                .exclude(disk_used_mb=None)
                .values_list("disk_used_mb", flat=True)
            ),
        )
        every(60, "websites.tasks.measure_disk", name="websites.measure_disk")
        every(60, "websites.bandwidth.measure_bandwidth", name="websites.measure_bandwidth")
        every(5, "websites.tasks.refresh_app_states", name="websites.refresh_app_states")
        plans.register_counter("bandwidth_gb", month_gb)
        from websites.quota import over_quota_source

        register_source("disk_over_quota", over_quota_source, label="Over disk/bandwidth quota")
        from websites.alerts import certificate_failing_source, site_failing_source

        register_source("site_failing", site_failing_source, label="Website failing")
        register_source(
            "certificate_failing", certificate_failing_source, label="Certificate not issued"
        )
        add_section(
            "servers.server_detail", "websites/partials/server_websites.html", server_websites
        )
