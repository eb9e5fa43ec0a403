from django.apps import AppConfig


class ServersConfig(AppConfig):
    name = "servers"

    def ready(self):
        from django.contrib.auth.signals import user_logged_out

        from core import kinds, schedules
        from servers.engine import registry
        from servers.fail2ban import Fail2banFiles, Fail2banService
        from servers.firewall import FirewallFiles
        from servers.nftables import NftService

        registry.register_service(NftService)
        registry.register_provider(FirewallFiles())
        registry.register_service(Fail2banService)
        registry.register_provider(Fail2banFiles())
        schedules.every(60, "servers.tasks.detect_drift_everywhere", name="drift_check")
        kinds.register("server.test_connection", "Test connection", "SSH login, a command, facts")
        kinds.register("server.gather_facts", "Gather facts", "system, kernel, CPU, memory, disks")
        kinds.register("server.apply", "Apply configuration")
        kinds.register("server.drift_check", "Check drift", "managed files against the manifest")
        kinds.register("publish", "Publish")
        kinds.register("server.prepare", "Prepare server", "nginx, PHP-FPM, include lines")
        kinds.register("server.bans", "Read fail2ban bans")
        kinds.register("server.unban", "Lift a fail2ban ban")

        # Signing out (from any page, or refused by the IP allow-list or idle timeout) ends
        # the terminals that browser session opened.
        user_logged_out.connect(_close_terminals, dispatch_uid="servers.close_terminals")


def _close_terminals(sender, request, user, **kwargs):
    from servers.consumers import close_for_session

    close_for_session(getattr(getattr(request, "session", None), "session_key", None))
