from django.apps import AppConfig


class ServersConfig(AppConfig):
    name = "servers"

    def ready(self):
        from core import schedules
        from servers.engine import registry
        from servers.firewall import FirewallFiles
        from servers.nftables import NftService

        registry.register_service(NftService)
        registry.register_provider(FirewallFiles())
        schedules.every(60, "servers.tasks.detect_drift_everywhere", name="drift_check")
