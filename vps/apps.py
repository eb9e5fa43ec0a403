from django.apps import AppConfig


class VpsConfig(AppConfig):
    name = "vps"
    verbose_name = "VPS"
    # Until the app has pages of its own (a urls.py), the portal shows this placeholder.
    placeholder = ("VPS", "cpu", "Virtual servers on your hypervisors will be listed here.")

    def ready(self):
        from core.schedules import every

        every(5, "vps.tasks.refresh_all")
        # Statistics: a round every minute (one getAllDomainStats per hypervisor), 5-minute
        # rollups, hourly pruning (vps/stats.py).
        every(1, "vps.stats.collect", name="vps_stats")
        every(5, "vps.stats.roll_up_job", name="vps_stats_rollup")
        every(60, "vps.stats.prune_job", name="vps_stats_prune")
        # Expiry: suspend at expiry, delete after the grace period; notices are alerts.
        every(15, "vps.expiry.expire_vpses", name="vps_expiry")
        from monitoring.alerts import register_source
        from vps.expiry import vps_expiring_source

        register_source("vps_expiring", vps_expiring_source, label="VPS expiring")
        from vps.alerts import METRICS, vps_metric_source

        register_source(
            "vps_metric", vps_metric_source, label="VPS metric threshold", metrics=METRICS
        )
