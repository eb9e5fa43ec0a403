from django.apps import AppConfig


class CertificatesConfig(AppConfig):
    name = "websites.certificates"
    label = "certificates"
    verbose_name = "TLS certificates"

    def ready(self):
        from django.conf import settings

        from core.schedules import every
        from core.sections import add_section
        from servers.engine import registry
        from websites.certificates.apply import CertificateFiles, TlsFilesService
        from websites.certificates.views import site_section

        registry.register_service(TlsFilesService)
        registry.register_provider(CertificateFiles())
        every(
            settings.PANEL_ACME_RENEW_EVERY_MINUTES,
            "websites.certificates.tasks.renew_due",
            name="renew certificates",
        )
        # The TLS card on a site's page, when the websites app renders its sections.
        add_section(
            "websites.website_detail", "certificates/partials/site_tls_card.html", site_section
        )
