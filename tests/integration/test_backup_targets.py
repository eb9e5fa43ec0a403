"""Backup targets with real restic on the panel's own host (a local-transport server): an
S3 target against a local S3 server (moto's server mode, the protocol restic speaks to
any S3-compatible service), and repository password changes (restic key add/remove),
including one interrupted after the new key was added."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from backups import services
from backups.models import BackupTarget
from backups.restic import Repository, ResticError
from core.models import Operation
from servers.models import Server
from tests.integration.conftest import need
from tests.integration.s3_server import S3, start_s3

pytestmark = [pytest.mark.integration, pytest.mark.django_db]
BUCKET = "panel-backups"


@pytest.fixture(scope="module")
def s3():
    """A local S3 server on 127.0.0.1 that checks signatures (restic init makes the
    bucket)."""
    need("restic")
    server = start_s3()
    yield server
    server.stop()


@pytest.fixture
def here(admin_user, tmp_path, q_sync):
    """The panel's own host as a server (restic runs here, no SSH)."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (tmp_path / "homes").mkdir()
    return Server.objects.create(
        name="here",
        address="127.0.0.1",
        transport=Server.Transport.LOCAL,
        owner=admin_user,
        profile={"state_dir": str(state), "webroot_base": str(tmp_path / "homes")},
    )


def _restic(target: BackupTarget, password: str, *args: str, env: dict | None = None):
    """restic run by the test itself, with ``password`` (never the panel's code path)."""
    d = Path(tempfile.mkdtemp(prefix="uhp-restic-pw-"))
    try:
        (d / "pw").write_text(password)
        argv = ["restic", "-r", target.repository, "--password-file", str(d / "pw"), "--no-cache"]
        return subprocess.run([*argv, *args], capture_output=True, text=True, env=env, timeout=120)
    finally:
        shutil.rmtree(d)


def _s3_env(tmp_path: Path, s3: S3) -> dict:
    import os

    creds = tmp_path / "aws-credentials"
    creds.write_text(
        f"[default]\naws_access_key_id = {s3.access_key}\naws_secret_access_key = {s3.secret_key}\n"
    )
    return {"PATH": os.environ["PATH"], "AWS_SHARED_CREDENTIALS_FILE": str(creds)}


def s3_target(here, s3: S3, admin, run, **extra) -> BackupTarget:
    with run(execute=True):
        target = services.do_create_target(
            actor=admin,
            data={
                "name": "s3",
                "kind": "s3",
                "server": here,
                "path": "/repo",
                "s3_endpoint": s3.endpoint,
                "s3_bucket": BUCKET,
                "s3_access_key": s3.access_key,
                "s3_secret_key": s3.secret_key,
                **extra,
            },
        )
    target.refresh_from_db()
    return target


def test_an_s3_target_is_initialised_and_says_free_space_is_not_measured(
    here, s3, admin_user, django_capture_on_commit_callbacks, tmp_path
):
    target = s3_target(here, s3, admin_user, django_capture_on_commit_callbacks)
    assert target.status == "ready", target.status_message
    assert target.repository == f"s3:{s3.endpoint}/{BUCKET}/repo"
    assert target.free_bytes is None and not target.measures_free_space
    # The keys are encrypted at rest: neither is in the stored row.
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "SELECT s3_access_key, s3_secret_key, password FROM backups_backuptarget WHERE id = %s",
            [target.pk],
        )
        stored = cur.fetchone()
    assert s3.access_key not in stored[0] and s3.secret_key not in stored[1]
    # restic made a repository in the bucket: it opens with the target's password.
    opened = _restic(target, target.password, "cat", "config", env=_s3_env(tmp_path, s3))
    assert opened.returncode == 0, opened.stderr
    # Checking again opens it; the page says S3 has no free-space figure.
    with django_capture_on_commit_callbacks(execute=True):
        op = services.start_check_target(target, actor=admin_user)
    op.refresh_from_db()
    assert op.state == "succeeded" and "opened" in op.message, op.error
    from tests.conftest import login

    page = login(admin_user).get(target.get_absolute_url()).content.decode()
    assert "S3 storage has no free-space figure" in page
    # No secret was left on the server.
    assert not list((Path(here.profile["state_dir"]) / "backups").glob("*/secrets-*"))


def test_an_s3_endpoint_that_does_not_answer_is_unreachable(
    here, s3, admin_user, django_capture_on_commit_callbacks
):
    from tests.integration.conftest import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    target = s3_target(here, s3, admin_user, django_capture_on_commit_callbacks, s3_endpoint=dead)
    assert target.status == "failed" and target.status_message


def _left_on_server(here) -> list[str]:
    """Secrets and dumps directories an Operation left in the state directory."""
    backups = Path(here.profile["state_dir"]) / "backups"
    return [str(p) for p in backups.glob("*/*") if p.name.startswith(("secrets-", "dumps"))]


def test_an_s3_target_with_a_wrong_key_is_not_ready_and_says_authentication_failed(
    here, s3, admin_user, django_capture_on_commit_callbacks
):
    """The storage checks every request's signature, as a provider does: a wrong secret
    key (or an access key it never issued) is refused, the target is not ready and says
    why, and nothing was made (no bucket, no secret left on the server). With the right
    key, checking again makes it ready."""
    run = django_capture_on_commit_callbacks
    bucket = "panel-wrong-key"
    target = s3_target(
        here, s3, admin_user, run, s3_bucket=bucket, s3_secret_key="not-the-secret-key-0123"
    )
    assert target.status == "failed"
    assert "S3 authentication failed" in target.status_message, target.status_message
    assert "signature we calculated does not match" in target.status_message  # S3's words
    op = Operation.objects.filter(kind="backup_target.check").latest("pk")
    assert op.state == "failed" and "S3 authentication failed" in op.error
    assert not s3.bucket_exists(bucket) and _left_on_server(here) == []
    from tests.conftest import login

    page = login(admin_user).get(target.get_absolute_url()).content.decode()
    assert "S3 authentication failed" in page

    other = s3_target(
        here, s3, admin_user, run, name="s3-unknown", s3_bucket=bucket,
        s3_access_key="AKIANEVERISSUED00000",
    )  # fmt: skip
    assert other.status == "failed" and "S3 authentication failed" in other.status_message
    assert "does not exist in our records" in other.status_message
    assert not s3.bucket_exists(bucket)

    services.do_update_target(target, actor=admin_user, data={"s3_secret_key": s3.secret_key})
    with run(execute=True):
        op = services.start_check_target(target, actor=admin_user)
    op.refresh_from_db()
    target.refresh_from_db()
    assert op.state == "succeeded" and target.status == "ready", op.error
    assert target.status_message == "" and s3.bucket_exists(bucket)


def test_a_target_whose_key_was_revoked_fails_its_run_and_alerts(
    here, s3, admin_user, customer, django_capture_on_commit_callbacks
):
    """The provider revokes the key a ready target uses: the next backup fails in S3's
    words, nothing is recorded as succeeded, the backup alert fires, no secret or dump is
    left on the server; the earlier snapshot stays the last success."""
    from backups.models import BackupJob, BackupRun
    from monitoring.alerts import evaluate_alerts
    from monitoring.models import Alert, AlertRule
    from websites.models import SystemAccount

    run = django_capture_on_commit_callbacks
    access, secret = s3.issue("panel-revoked")
    target = s3_target(
        here, s3, admin_user, run, name="s3-revoked", s3_bucket="panel-revoked",
        s3_access_key=access, s3_secret_key=secret,
    )  # fmt: skip
    assert target.status == "ready", target.status_message
    name = customer.account_name
    home = Path(here.profile["webroot_base"]) / name
    home.mkdir()
    (home / "index.html").write_text("<h1>kept</h1>\n")
    account = SystemAccount.objects.create(server=here, user=customer, name=name, status="active")
    job = services.do_create_job(actor=admin_user, data={"account": account, "target": target})
    with run(execute=True):
        op = services.start_backup(job, actor=admin_user)
    op.refresh_from_db()
    assert op.state == "succeeded", op.error
    first = BackupRun.objects.get(job=job)

    s3.revoke("panel-revoked", access)
    with run(execute=True):
        op = services.start_backup(job, actor=admin_user)
    op.refresh_from_db()
    assert op.state == "failed" and "S3 authentication failed" in op.error, op.error
    failed = BackupRun.objects.filter(job=job).exclude(pk=first.pk).get()
    assert (
        failed.state == "failed"
        and failed.snapshot_id == ""
        and "S3 authentication" in (failed.error)
    )
    job = BackupJob.objects.get(pk=job.pk)
    assert job.last_status == "failed" and job.last_success_at == first.finished_at
    assert _left_on_server(here) == []
    AlertRule.objects.create(owner=customer, name="backups", kind="backup_missing")
    evaluate_alerts()
    [alert] = Alert.objects.filter(state="firing", rule__kind="backup_missing")
    assert alert.subject == f"backup:{job.uuid.hex}"
    assert "failed" in alert.message and "S3 authentication failed" in alert.message


def local_target(here, admin, run, repo: Path) -> BackupTarget:
    with run(execute=True):
        target = services.do_create_target(
            actor=admin,
            data={"name": "local", "kind": "local", "server": here, "path": str(repo)},
        )
    target.refresh_from_db()
    assert target.status == "ready", target.status_message
    return target


def _keys(target, password) -> list[dict]:
    import json

    res = _restic(target, password, "key", "list", "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_changing_the_password_adds_the_new_key_and_removes_the_old(
    here, admin_user, django_capture_on_commit_callbacks, tmp_path
):
    repo = tmp_path / "repo"
    target = local_target(here, admin_user, django_capture_on_commit_callbacks, repo)
    old = target.password
    with django_capture_on_commit_callbacks(execute=True):
        op = services.do_change_password(
            target, actor=admin_user, data={"password": "the-new-password-1"}
        )
    op.refresh_from_db()
    assert op.state == "succeeded" and "old key was removed" in op.message, op.error
    target.refresh_from_db()
    assert target.password == "the-new-password-1" and target.pending_password == ""
    assert len(_keys(target, "the-new-password-1")) == 1
    assert _restic(target, old, "cat", "config").returncode != 0  # the old one no longer opens
    from core.models import AuditEntry

    assert AuditEntry.objects.filter(action="backup_target.password").exists()
    assert "the-new-password-1" not in str(Operation.objects.get(pk=op.pk).args)


def test_a_wrong_stored_password_changes_nothing(
    here, admin_user, django_capture_on_commit_callbacks, tmp_path
):
    target = local_target(here, admin_user, django_capture_on_commit_callbacks, tmp_path / "r")
    real = target.password
    BackupTarget.objects.filter(pk=target.pk).update(password="not-the-password")
    target.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        op = services.do_change_password(target, actor=admin_user, data={"password": "x" * 20})
    op.refresh_from_db()
    assert op.state == "failed" and "not changed" in op.error
    target.refresh_from_db()
    assert target.password == "not-the-password" and target.pending_password == ""
    assert len(_keys(target, real)) == 1  # no key was added


def test_an_interrupted_change_leaves_a_working_password_recorded(
    here, admin_user, django_capture_on_commit_callbacks, tmp_path, monkeypatch
):
    """The worker is lost right after restic added the new key (before the panel opened
    the repository with it): the recorded (old) password still opens the repository; a
    later change finishes the job."""
    target = local_target(here, admin_user, django_capture_on_commit_callbacks, tmp_path / "r")
    old = target.password

    def lost(self, password):
        raise ConnectionResetError("the worker lost its connection (test)")

    with monkeypatch.context() as m:
        m.setattr(Repository, "use_password", lost)
        with django_capture_on_commit_callbacks(execute=True):
            op = services.do_change_password(target, actor=admin_user, data={"password": "y" * 24})
    op.refresh_from_db()
    assert op.state == "failed"
    target.refresh_from_db()
    assert target.password == old
    assert len(_keys(target, old)) == 2  # the new key was added, the old one kept
    assert _restic(target, target.password, "cat", "config").returncode == 0
    # Interrupted after the new password was stored, before the old key was removed.
    real_run = Repository.run

    def remove_fails(self, *args, **kw):
        if args[:2] == ("key", "remove"):
            raise ResticError("connection lost (test)")
        return real_run(self, *args, **kw)

    with monkeypatch.context() as m:
        m.setattr(Repository, "run", remove_fails)
        with django_capture_on_commit_callbacks(execute=True):
            op = services.do_change_password(target, actor=admin_user, data={"password": "z" * 24})
    op.refresh_from_db()
    assert op.state == "succeeded" and "still opens" in op.message, op.error
    target.refresh_from_db()
    assert target.password == "z" * 24
    assert _restic(target, target.password, "cat", "config").returncode == 0


def test_a_change_that_fails_after_the_key_was_added_removes_that_key(
    here, admin_user, django_capture_on_commit_callbacks, tmp_path, monkeypatch
):
    """The new key is added but the repository does not open with it, or another change
    took the pending password meanwhile: the new key is removed again, so only the
    recorded password opens the repository."""
    from backups import tasks

    target = local_target(here, admin_user, django_capture_on_commit_callbacks, tmp_path / "r")
    old = target.password
    real_run = Repository.run

    def config_fails(self, *args, **kw):
        if args[:2] == ("cat", "config"):
            raise ResticError("connection lost (test)")
        return real_run(self, *args, **kw)

    with monkeypatch.context() as m:
        m.setattr(Repository, "run", config_fails)
        with django_capture_on_commit_callbacks(execute=True):
            op = services.do_change_password(target, actor=admin_user, data={"password": "v" * 24})
    op.refresh_from_db()
    assert op.state == "failed" and "not changed" in op.error
    assert len(_keys(target, old)) == 1
    assert _restic(target, "v" * 24, "cat", "config").returncode != 0

    real_take = tasks._take_pending

    def lost_race(pk, new, *, store):
        return False if store else real_take(pk, new, store=store)

    with monkeypatch.context() as m:
        m.setattr(tasks, "_take_pending", lost_race)
        with django_capture_on_commit_callbacks(execute=True):
            op = services.do_change_password(target, actor=admin_user, data={"password": "w" * 24})
    op.refresh_from_db()
    assert op.state == "failed" and "meanwhile" in op.error
    target.refresh_from_db()
    assert target.password == old
    assert len(_keys(target, old)) == 1
    assert _restic(target, "w" * 24, "cat", "config").returncode != 0


def test_the_password_cannot_change_before_the_repository_is_ready(here, admin_user):
    from django.core.exceptions import ValidationError

    target = BackupTarget.objects.create(
        name="new", kind="local", server=here, path="/srv/none", password="p" * 20
    )
    with pytest.raises(ValidationError, match="not ready"):
        services.do_change_password(target, actor=admin_user, data={})
