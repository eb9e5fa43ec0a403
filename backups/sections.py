"""What backups add to other apps' pages (registered in BackupsConfig.ready)."""

from __future__ import annotations

from core.policy import restrict


def website_backups(site, user) -> dict:
    """The backups of the site owner's account on the site's server, with the newest
    snapshot: where to restore this site from."""
    from backups.models import BackupJob

    jobs = (
        restrict(BackupJob, user)
        .filter(account__user_id=site.owner_id, account__server_id=site.server_id)
        .select_related("account", "target")
        .order_by("target__name")[:5]
    )
    return {"backup_jobs": list(jobs), "site": site}
