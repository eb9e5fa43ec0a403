from django.apps import AppConfig


class DnsConfig(AppConfig):
    # dnspython shares the package name: see dns/__init__.py.
    name = "dns"
    label = "dns"
    verbose_name = "DNS"

    def ready(self):
        from dns.publishers import ZonePublisher
        from servers.engine import registry

        registry.register_publisher(ZonePublisher())
        from core import sharing
        from dns.models import Zone

        sharing.register(Zone)  # a customer may give a colleague one zone
        from django.conf import settings

        from core.schedules import every

        every(
            getattr(settings, "PANEL_DNS_NS_CHECK_MINUTES", 360),
            "dns.nscheck.check_all",
            name="verify zone delegations",
        )
        from django.apps import apps

        if apps.is_installed("monitoring"):
            from dns.nscheck import ns_mismatch_source
            from monitoring.alerts import register_source

            register_source("ns_mismatch", ns_mismatch_source, label="Zone nameservers mismatch")
