from django.apps import AppConfig


class MailConfig(AppConfig):
    name = "mail"
    verbose_name = "Mail"

    def ready(self):
        from core.sections import add_section
        from mail.apply import DovecotService, MailFiles, OpenDkimService, PostfixService
        from mail.models import Mailbox
        from mail.views import server_mail
        from servers.engine import registry
        from websites import plans

        add_section("servers.server_detail", "mail/partials/server_mail.html", server_mail)
        from django.conf import settings

        from core.schedules import every

        every(settings.PANEL_MAIL_USAGE_EVERY_MINUTES, "mail.queue.read_all_usage")
        every(settings.PANEL_MAIL_DNS_CHECK_EVERY_MINUTES, "mail.alerts.check_all")
        from mail.alerts import dns_source, quota_source
        from mail.queue import held_source
        from monitoring.alerts import register_source

        register_source("mail_dns", dns_source, label="Mail domain's DNS records wrong")
        register_source("mail_quota", quota_source, label="Mailbox nearly full (% of quota)")

        register_source(
            "mail_held", held_source, label="Mail held (sending limit)", uses_servers=True
        )

        registry.register_service(PostfixService)
        registry.register_service(DovecotService)
        registry.register_service(OpenDkimService)
        registry.register_provider(MailFiles())
        plans.register_counter(
            "mailboxes", lambda owners: Mailbox.objects.filter(domain__owner__in=owners).count()
        )
