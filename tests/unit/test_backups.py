"""Backups without restic: who sees and changes what (portal, API, admin), the services'
checks, the command builder (no secret on any argv), flat query counts, and the outsider
sweep over the backup routes. Real restic, MariaDB, PostgreSQL and sshd runs are in
tests/integration/test_backups.py."""

from __future__ import annotations

import shlex
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import given
from hypothesis import strategies as st

from backups import services
from backups.models import (
    BackupJob,
    BackupRun,
    BackupTarget,
    validate_repo_path,
    validate_s3_endpoint,
)
from backups.restic import Repository, error_of
from core.models import AuditEntry, Operation
from servers.models import Server
from tests.conftest import login, make_user
from websites.models import SystemAccount

pytestmark = pytest.mark.django_db
PASSWORD = "backup-repo-password-material"
SFTP_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----backup-sftp-key-material"


def server_of(owner, name="web1"):
    return Server.objects.create(name=name, address="10.0.0.5", owner=owner)


def target_of(server, name="local", **extra):
    return BackupTarget.objects.create(
        name=name, kind="local", server=server, path="/srv/backups", password=PASSWORD, **extra
    )


def job_of(user, server, target, name=None):
    account = SystemAccount.objects.create(
        server=server, user=user, name=name or user.account_name, status="active"
    )
    return BackupJob.objects.create(account=account, target=target)


@pytest.fixture
def setup(admin_user, customer):
    server = server_of(admin_user)
    target = target_of(server)
    job = job_of(customer, server, target)
    run = BackupRun.objects.create(
        job=job,
        state="succeeded",
        snapshot_id="0123abcd",
        files=10,
        size_bytes=1000,
        bytes_added=100,
        manifest={"sites": [{"domain": "a.example.com", "dir": "/home/x/sites/a.example.com"}]},
    )
    return SimpleNamespace(server=server, target=target, job=job, run=run)


class TestTargets:
    def test_created_by_administrators_with_a_generated_password_and_an_init(
        self, admin_user, django_capture_on_commit_callbacks
    ):
        server = server_of(admin_user)
        with django_capture_on_commit_callbacks(execute=False):
            target = services.do_create_target(
                actor=admin_user,
                data={"name": "t1", "kind": "local", "server": server, "path": "/srv/b"},
            )
        assert len(target.password) >= 32
        op = Operation.objects.get(kind="backup_target.check")
        assert op.target_id == str(target.uuid)
        assert AuditEntry.objects.filter(action="backup_target.create").exists()
        assert PASSWORD not in str(AuditEntry.objects.values_list("changes", flat=True))

    def test_customers_and_resellers_may_not(self, customer, reseller, admin_user):
        server = server_of(admin_user)
        for who in (customer, reseller):
            with pytest.raises(PermissionDenied):
                services.do_create_target(
                    actor=who, data={"name": "t", "kind": "local", "server": server, "path": "/b"}
                )

    def test_sftp_needs_host_user_and_pinned_key_and_gets_a_key_pair(self, admin_user):
        server = server_of(admin_user)
        data = {"name": "off", "kind": "sftp", "server": server, "path": "/b"}
        with pytest.raises(ValidationError) as err:
            services.do_create_target(actor=admin_user, data=data)
        assert {"sftp_host", "sftp_user", "sftp_host_key"} <= set(err.value.message_dict)
        target = services.do_create_target(
            actor=admin_user,
            data={
                **data,
                "sftp_host": "10.0.0.9",
                "sftp_user": "backup",
                "sftp_host_key": "ssh-ed25519 " + "A" * 68,
            },
        )
        assert target.sftp_public_key.startswith("ssh-ed25519 ")
        assert target.repository == "sftp:backup@10.0.0.9:/b"

    def test_the_password_of_a_ready_repository_cannot_change(self, setup, admin_user):
        BackupTarget.objects.filter(pk=setup.target.pk).update(status="ready")
        with pytest.raises(ValidationError):
            services.do_update_target(
                BackupTarget.objects.get(pk=setup.target.pk),
                actor=admin_user,
                data={"password": "another-password-123"},
            )

    def test_s3_needs_endpoint_bucket_and_keys(self, admin_user):
        server = server_of(admin_user)
        base = {"name": "s3", "kind": "s3", "server": server, "path": "/"}
        with pytest.raises(ValidationError) as exc:
            services.do_create_target(actor=admin_user, data=base)
        assert {"s3_endpoint", "s3_bucket", "s3_access_key", "s3_secret_key"} <= set(
            exc.value.message_dict
        )
        good = {
            **base,
            "s3_endpoint": "https://s3.example.com:9000",
            "s3_bucket": "panel-b",
            "s3_access_key": "AKIA1234",
            "s3_secret_key": "secret-key-value",
        }
        for name, bad in [
            ("s3_endpoint", "https://s3.example.com/path?x"),
            ("s3_endpoint", "ftp://s3.example.com"),
            ("s3_bucket", "Upper_Case"),
            ("s3_secret_key", "has a space in it"),
            # restic's credentials parser: a comment from # or ; on, a leading quote
            ("s3_secret_key", "secret#rest-is-a-comment"),
            ("s3_secret_key", "secret;rest-is-a-comment"),
            ("s3_secret_key", '"quoted-secret"'),
            ("s3_secret_key", "'quoted-secret'"),
            ("s3_access_key", "new\nline"),
        ]:
            with pytest.raises(ValidationError) as exc:
                services.do_create_target(actor=admin_user, data={**good, name: bad})
            assert name in exc.value.message_dict, name
        target = services.do_create_target(actor=admin_user, data=good)
        assert target.repository == "s3:https://s3.example.com:9000/panel-b"
        assert not target.measures_free_space

    def test_password_changes_go_through_an_operation_with_the_new_one_pending(
        self, setup, admin_user, customer, django_capture_on_commit_callbacks
    ):
        target = setup.target
        with pytest.raises(ValidationError, match="not ready"):
            services.do_change_password(target, actor=admin_user, data={})
        BackupTarget.objects.filter(pk=target.pk).update(status="ready")
        target.refresh_from_db()
        with pytest.raises(PermissionDenied):
            services.do_change_password(target, actor=customer, data={})
        with pytest.raises(ValidationError):
            services.do_change_password(target, actor=admin_user, data={"password": " padded "})
        with django_capture_on_commit_callbacks(execute=False):
            op = services.do_change_password(
                target, actor=admin_user, data={"password": "new-password-123"}
            )
        target.refresh_from_db()
        # Stored only once restic has the key: pending (encrypted) until then.
        assert target.password == PASSWORD and target.pending_password == "new-password-123"
        assert op.kind == "backup_target.password" and "new-password" not in str(op.args)
        with connection.cursor() as cur:
            cur.execute(
                "SELECT pending_password FROM backups_backuptarget WHERE id = %s", [target.pk]
            )
            assert "new-password-123" not in cur.fetchone()[0]
        assert AuditEntry.objects.filter(action="backup_target.password").exists()
        assert "new-password-123" not in str(AuditEntry.objects.values_list("changes", flat=True))

    def test_in_use_targets_are_kept(self, setup, admin_user):
        with pytest.raises(ValidationError):
            services.do_delete_target(setup.target, actor=admin_user)


@given(st.text(max_size=60))
def test_repository_paths_never_carry_shell_or_option_text(value):
    try:
        validate_repo_path(value)
    except ValidationError:
        return
    assert value.startswith("/") and ".." not in value.split("/")
    assert shlex.split(shlex.quote(value)) == [value]
    assert not set(value) & set(" \t\n'\"$`;&|<>*?\\")


@given(st.text(max_size=80))
def test_s3_endpoints_are_a_scheme_a_host_and_a_port_only(value):
    try:
        validate_s3_endpoint(value)
    except ValidationError:
        return
    assert value.startswith(("http://", "https://"))
    assert not set(value) & set(" \t\n'\"$`;&|<>*?\\/@#%") - {"/"}
    assert value.count("/") == 2


class TestCommands:
    def test_s3_keys_reach_a_credentials_file_not_an_argv(self, setup):
        target = setup.target
        target.kind, target.s3_endpoint, target.s3_bucket = "s3", "http://127.0.0.1:9", "bkt"
        target.s3_access_key, target.s3_secret_key = "AKIA5555", "s3-secret-material"
        repo = Repository(target, transport=None, server=setup.server, key="k")
        argv = repo.command("snapshots", "--json")
        text = " ".join(argv)
        assert "s3-secret-material" not in text and "AKIA5555" not in text
        assert f"AWS_SHARED_CREDENTIALS_FILE={repo.secrets}/s3_credentials" in argv
        assert argv[argv.index("-r") + 1] == "s3:http://127.0.0.1:9/bkt/srv/backups"
        assert repo.free_bytes() is None  # S3 has no free-space figure (no command runs)

    def test_no_secret_reaches_an_argv(self, setup, admin_user):
        target = setup.target
        target.kind, target.sftp_host, target.sftp_user = "sftp", "10.0.0.9", "backup"
        target.sftp_host_key = "ssh-ed25519 " + "A" * 68
        target.sftp_private_key = SFTP_KEY
        repo = Repository(target, transport=None, server=setup.server, key="k")
        argv = repo.argv("backup", "--json", "/home/x")
        text = " ".join(argv)
        assert PASSWORD not in text and SFTP_KEY not in text
        assert argv[argv.index("--password-file") + 1].startswith(repo.secrets)
        command = next(a for a in argv if a.startswith("sftp.command="))
        ssh = shlex.split(command.removeprefix("sftp.command="))
        assert ssh[0] == "ssh" and "StrictHostKeyChecking=yes" in ssh and ssh[-2:] == ["-s", "sftp"]

    def test_errors_name_a_wrong_password(self):
        exc = error_of(1, ["Fatal: wrong password or no key found"])
        assert "password is wrong" in str(exc) and not exc.retryable
        assert error_of(1, ["ssh: connect to host x port 22: Connection refused"]).retryable

    @pytest.mark.parametrize(
        "said",
        [
            "client.BucketExists: The request signature we calculated does not match the "
            "signature you provided. Check your key and signing method.",
            "Stat: The AWS Access Key Id you provided does not exist in our records.",
        ],
    )
    def test_errors_name_keys_s3_refused(self, said):
        exc = error_of(1, [f"Fatal: create repository at s3:http://x/b failed: {said}"])
        assert str(exc).startswith("S3 authentication failed") and said in str(exc)
        assert not exc.retryable
        denied = error_of(1, ["Fatal: unable to open config file: Stat: Access Denied."])
        assert "S3 denied access" in str(denied) and not denied.retryable


class TestJobs:
    def test_a_directory_target_takes_only_its_servers_accounts(self, admin_user, customer):
        target = target_of(server_of(admin_user, "a"))
        other = server_of(admin_user, "b")
        account = SystemAccount.objects.create(server=other, user=customer, name="cust")
        with pytest.raises(ValidationError):
            services.do_create_job(actor=admin_user, data={"account": account, "target": target})

    def test_owners_back_up_now_but_do_not_edit(self, setup, customer):
        with pytest.raises(PermissionDenied):
            services.do_update_job(setup.job, actor=customer, data={"keep_daily": 1})
        op = services.start_backup(setup.job, actor=customer)
        assert op.owner == customer and op.lock_key == setup.target.lock_key
        with pytest.raises(ValidationError):  # one at a time
            services.start_backup(setup.job, actor=customer)

    def test_only_administrators_start_test_restores(self, setup, customer, admin_user):
        with pytest.raises(PermissionDenied):
            services.start_test_restore(setup.job, actor=customer)
        op = services.start_test_restore(setup.job, actor=admin_user)
        assert op.kind == "backup.test_restore" and op.lock_key == setup.target.lock_key

    def test_restore_checks_its_input(self, setup, customer):
        good = {"run": setup.run, "kind": "files", "site": "a.example.com"}
        services.do_restore(setup.job, actor=customer, data=good)
        whole = {"run": setup.run, "kind": "account", "destination": "new", "new_path": "r/all"}
        op = services.do_restore(setup.job, actor=customer, data=whole)
        assert op.args["kind"] == "account" and op.args["new_path"] == "r/all"
        assert op.args["dry_run"] is True
        for bad in (
            {**good, "site": "other.example.com"},
            {**good, "destination": "new", "new_path": "../../etc"},
            {**good, "destination": "new", "new_path": "/etc"},
            {**good, "kind": "everything"},
            {"run": setup.run, "kind": "account", "destination": "new"},
            {"run": setup.run, "kind": "account", "destination": "new", "new_path": ".ssh"},
        ):
            with pytest.raises(ValidationError):
                services.do_restore(setup.job, actor=customer, data=bad)
        BackupRun.objects.filter(pk=setup.run.pk).update(forgotten=True)
        setup.run.refresh_from_db()
        with pytest.raises(ValidationError):
            services.do_restore(setup.job, actor=customer, data=good)

    def test_restores_and_browsing_check_the_actor_themselves_and_browsing_is_audited(
        self, setup, customer, mallory
    ):
        """The services are called by the portal, the API and scripts alike: one who may
        not change the job is refused before anything is made or queued."""
        manifest = {**setup.run.manifest, "home": "/home/x"}
        BackupRun.objects.filter(pk=setup.run.pk).update(manifest=manifest)
        setup.run.refresh_from_db()
        good = {"run": setup.run, "kind": "files", "site": "a.example.com"}
        before = Operation.objects.count(), AuditEntry.objects.count()
        with pytest.raises(PermissionDenied):
            services.do_restore(setup.job, actor=mallory, data=good, dry_run=False)
        with pytest.raises(PermissionDenied):
            services.start_browse(setup.job, actor=mallory, run=setup.run, path="")
        assert (Operation.objects.count(), AuditEntry.objects.count()) == before
        op = services.start_browse(setup.job, actor=customer, run=setup.run, path="")
        entry = AuditEntry.objects.get(action="backup.browse")
        assert entry.actor_id == customer.pk and entry.object_id == str(setup.job.uuid)
        assert entry.changes["browse"][1] == {"run": setup.run.uuid.hex, "path": "/home/x"}
        assert op.args["path"] == "/home/x"


class TestPortal:
    def test_owner_sees_its_backups_and_snapshots(self, setup, customer):
        client = login(customer)
        page = client.get("/backups/").content.decode()
        assert setup.job.account.name in page
        detail = client.get(f"/backups/{setup.job.uuid}/").content.decode()
        assert "0123abcd" in detail and "Restore" in detail
        assert client.get("/backups/targets/").status_code == 404
        assert client.get(f"/backups/{setup.job.uuid}/edit/").status_code == 404

    def test_the_site_page_shows_its_accounts_backups(self, setup, customer, mallory):
        from websites.models import Website

        site = Website.objects.create(domain="a.example.com", server=setup.server, owner=customer)
        page = login(customer).get(f"/websites/{site.uuid}/").content.decode()
        assert 'data-testid="site-backups"' in page and f"/backups/{setup.job.uuid}/" in page

    def test_restore_form_starts_a_dry_run(self, setup, customer):
        client = login(customer)
        resp = client.post(
            f"/backups/{setup.job.uuid}/restore/",
            {"run": setup.run.pk, "kind": "files", "site": "", "destination": "original"},
        )
        assert resp.status_code == 400  # no site chosen
        from websites.models import Website

        Website.objects.create(domain="a.example.com", server=setup.server, owner=customer)
        resp = client.post(
            f"/backups/{setup.job.uuid}/restore/",
            {
                "run": setup.run.pk,
                "kind": "files",
                "site": "a.example.com",
                "destination": "original",
            },
        )
        assert resp.status_code == 302
        assert Operation.objects.get(kind="backup.restore_check").args["dry_run"] is True

    def test_staff_see_the_targets_without_secrets(self, setup, admin_user):
        client = login(admin_user)
        for url in (
            "/backups/targets/",
            f"/backups/targets/{setup.target.uuid}/",
            f"/backups/targets/{setup.target.uuid}/edit/",
        ):
            resp = client.get(url)
            assert resp.status_code == 200 and PASSWORD not in resp.content.decode()

    @pytest.mark.parametrize(
        "url",
        ["/backups/", "/api/v1/backup-jobs/", "/api/v1/backup-runs/", "/api/v1/backup-targets/"],
    )
    def test_lists_are_flat(self, admin_user, url):
        client = login(admin_user)
        counts = []
        for n in (2, 12):
            server = server_of(admin_user, f"s{n}")
            target = target_of(server, f"t{n}")
            for i in range(n):
                user = make_user(f"c{n}x{i}@example.com", "customer")
                job = job_of(user, server, target, name=f"c{n}x{i}")
                BackupRun.objects.create(job=job, state="succeeded", snapshot_id="abcdef01")
            with CaptureQueriesContext(connection) as ctx:
                assert client.get(url).status_code == 200
            counts.append(len(ctx))
        assert counts[0] == counts[1], counts


def test_the_password_form_starts_the_change_or_says_why_not(
    setup, admin_user, django_capture_on_commit_callbacks
):
    client = login(admin_user)
    url = f"/backups/targets/{setup.target.uuid}/password/"
    resp = client.post(url, {"password": "new-password-123"})
    assert resp.status_code == 302 and resp["Location"] == setup.target.get_absolute_url()
    assert not Operation.objects.filter(kind="backup_target.password").exists()  # not ready
    BackupTarget.objects.filter(pk=setup.target.pk).update(status="ready")
    with django_capture_on_commit_callbacks(execute=False):
        resp = client.post(url, {"password": "new-password-123"})
    op = Operation.objects.get(kind="backup_target.password")
    assert resp.status_code == 302 and resp["Location"] == op.get_absolute_url()
    assert BackupTarget.objects.get(pk=setup.target.pk).pending_password == "new-password-123"


class TestBrowser:
    HOME = "/home/x"

    def _listing(self, setup, n: int, path: str):
        from backups.models import SnapshotListing

        entries = [
            {"name": f"f{i}", "type": "file", "size": i, "permissions": "-rw-r--r--"}
            for i in range(n)
        ]
        SnapshotListing.objects.update_or_create(
            run=setup.run, path=path, defaults={"entries": entries}
        )

    def test_the_page_reads_listings_paged_with_flat_queries(self, setup, customer):
        BackupRun.objects.filter(pk=setup.run.pk).update(manifest={"home": self.HOME})
        client = login(customer)
        url = f"/backups/{setup.job.uuid}/browse/?run={setup.run.uuid}&path={self.HOME}/a"
        assert "not been listed yet" in client.get(url).content.decode()
        counts = []
        for n in (3, 450):
            self._listing(setup, n, f"{self.HOME}/a")
            with CaptureQueriesContext(connection) as ctx:
                body = client.get(url).content.decode()
            counts.append(len(ctx))
            assert "f2" in body
        assert counts[0] == counts[1], counts
        assert "Page 1 of 3" in body  # 200 a page

    def test_listing_starts_an_operation_within_the_home_only(self, setup, customer):
        BackupRun.objects.filter(pk=setup.run.pk).update(manifest={"home": self.HOME})
        setup.run.refresh_from_db()
        op = services.start_browse(setup.job, actor=customer, run=setup.run, path="")
        assert op.kind == "backup.browse" and op.args["path"] == self.HOME
        for bad in ("/etc", f"{self.HOME}/../etc", f"{self.HOME}/a*", "/home/xy"):
            with pytest.raises(ValidationError):
                services.start_browse(setup.job, actor=customer, run=setup.run, path=bad)
        client = login(customer)
        resp = client.post(
            f"/api/v1/backup-jobs/{setup.job.uuid}/browse/",
            {"run": str(setup.run.uuid), "path": f"{self.HOME}/sites"},
            content_type="application/json",
        )
        assert resp.status_code == 202, resp.content
        listing = f"/api/v1/backup-jobs/{setup.job.uuid}/listing/?run={setup.run.uuid}"
        assert client.get(f"{listing}&path={self.HOME}/sites").json()["listed"] is False
        self._listing(setup, 2, f"{self.HOME}/sites")
        body = client.get(f"{listing}&path={self.HOME}/sites").json()
        assert body["listed"] and [e["name"] for e in body["entries"]] == ["f0", "f1"]
        other = login(make_user("other-b@example.com", "customer"))
        assert other.get(f"{listing}&path={self.HOME}/sites").status_code == 404
        assert other.get(f"/backups/{setup.job.uuid}/browse/").status_code == 404


class TestApi:
    def test_owner_reads_runs_snapshots_and_restores(self, setup, customer):
        client = login(customer)
        jobs = client.get("/api/v1/backup-jobs/").json()
        assert [j["uuid"] for j in jobs["results"]] == [str(setup.job.uuid)]
        snaps = client.get(f"/api/v1/backup-jobs/{setup.job.uuid}/snapshots/").json()
        assert [s["snapshot_id"] for s in snaps] == ["0123abcd"]
        resp = client.post(
            f"/api/v1/backup-jobs/{setup.job.uuid}/restore/",
            {"run": str(setup.run.uuid), "kind": "files", "site": "a.example.com"},
            content_type="application/json",
        )
        assert resp.status_code == 202, resp.content
        assert client.get("/api/v1/backup-targets/").json()["results"] == []

    def test_targets_never_return_secrets(self, setup, admin_user):
        body = login(admin_user).get(f"/api/v1/backup-targets/{setup.target.uuid}/").content
        assert PASSWORD.encode() not in body


def test_outsiders_reach_no_backup(setup, customer):
    """The outsider sweep's walk, over the backup objects (its own victims lack them)."""
    from tests.unit.test_outsider_sweep import _request, methods, requests_for

    objects = [setup.target, setup.job, setup.run]
    urls = [u for u in requests_for(objects) if "backup" in u]
    assert len(urls) > 10
    for who in ("customer", "reseller"):
        client = login(make_user(f"outsider-{who}@example.com", who))
        for url in urls:
            for method in methods(url):
                resp = _request(client, method, url)
                if url.startswith("/admin/"):
                    assert resp.status_code == 302, (method, url)
                    continue
                assert resp.status_code in (404, 405), (who, method, url, resp.status_code)
    support = login(make_user("support-b@example.com", "support"))
    for url in urls:
        resp = support.get(url)
        assert resp.status_code < 500 and PASSWORD.encode() not in resp.content, url
    assert not Operation.objects.exists()


def local_host_target(admin_user, tmp_path) -> BackupTarget:
    here = Server.objects.create(
        name="here",
        address="127.0.0.1",
        transport=Server.Transport.LOCAL,
        owner=admin_user,
        profile={"state_dir": str(tmp_path / "state")},
    )
    return BackupTarget.objects.create(
        name="local", kind="local", server=here, path=str(tmp_path / "repo"), password=PASSWORD
    )


def test_two_panel_backups_at_once_do_not_remove_each_others_secrets(
    admin_user, tmp_path, settings
):
    """Opening sweeps the secrets directory for what an interrupted run left: a second
    run while one is using its secrets is refused instead of removing them."""
    from backups.panel_self import PanelBackupError, target_repository

    settings.VAR_DIR = str(tmp_path / "var")
    (tmp_path / "var").mkdir()
    target = local_host_target(admin_user, tmp_path)
    with target_repository(target) as restic:
        argv = restic("snapshots")
        password_file = argv[argv.index("--password-file") + 1]
        with (
            pytest.raises(PanelBackupError, match="Another panel backup"),
            target_repository(target),
        ):
            pass
        assert Path(password_file).read_text() == PASSWORD  # still there for the first run
    with target_repository(target) as restic:  # free again afterwards
        assert restic("snapshots")


def test_the_exported_target_file_is_private_never_written_through_a_link_and_audited(
    admin_user, tmp_path
):
    import os
    import stat

    from backups.panel_self import PanelBackupError, export_target

    target = local_host_target(admin_user, tmp_path)
    out = tmp_path / "target.json"
    export_target(target, str(out))
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and PASSWORD in out.read_text()
    entry = AuditEntry.objects.get(action="backup_target.export")
    assert str(out) in str(entry.changes) and PASSWORD not in str(entry.changes)
    with pytest.raises(PanelBackupError, match="exists already"):
        export_target(target, str(out))
    # A link another user left at the path (standing for one to /etc/shadow).
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    link = tmp_path / "link.json"
    link.symlink_to(victim)
    with pytest.raises(PanelBackupError, match="exists already"):
        export_target(target, str(link))
    export_target(target, str(link), force=True)  # replaces the link itself
    assert victim.read_text() == "untouched" and not link.is_symlink()
    assert stat.S_IMODE(os.stat(link).st_mode) == 0o600 and PASSWORD in link.read_text()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".panel")) == []


def test_a_stored_s3_secret_the_credentials_file_would_cut_short_is_refused(admin_user, tmp_path):
    """A target stored before the rule: nothing is written, the error says why."""
    from backups.restic import ResticError
    from servers.transport import LocalTransport

    here = Server.objects.create(
        name="here", address="127.0.0.1", transport=Server.Transport.LOCAL, owner=admin_user
    )
    target = BackupTarget.objects.create(
        name="s3",
        kind="s3",
        server=here,
        path="/",
        password=PASSWORD,
        s3_endpoint="http://127.0.0.1:9000",
        s3_bucket="panel-b",
        s3_access_key="AKIA1234",
        s3_secret_key="secret#cut-here",
    )
    repo = Repository(target, LocalTransport(), None, "x", directory=str(tmp_path / "d"))
    with pytest.raises(ResticError, match="no spaces, # or ;"):
        repo.open()
    assert not (tmp_path / "d").exists()  # no secret was written


def test_opening_writes_every_secret_in_one_round_trip_and_closing_removes_them(
    admin_user, tmp_path
):
    """One command sets the directory up: a stale secrets directory an interrupted
    Operation left is removed, each secret (a multi-line key too) is written exactly,
    mode 0600, from stdin (never an argv); closing removes the secrets and the scratch
    paths in one more."""
    import os
    import stat

    from servers.transport import LocalTransport

    class Recording(LocalTransport):
        argvs: list = []

        def run(self, argv, **kw):
            self.argvs.append([str(a) for a in argv])
            return super().run(argv, **kw)

    here = Server.objects.create(
        name="here", address="127.0.0.1", transport=Server.Transport.LOCAL, owner=admin_user
    )
    target = BackupTarget.objects.create(
        name="sftp",
        kind="sftp",
        server=here,
        path="/srv/repo",
        password=PASSWORD,
        sftp_host="10.0.0.9",
        sftp_user="backup",
        sftp_host_key="ssh-ed25519 " + "A" * 68,
        sftp_private_key=SFTP_KEY + "\nsecond line\n-----END OPENSSH PRIVATE KEY-----",
    )
    d = tmp_path / "d"
    (d / "secrets-stale").mkdir(parents=True)
    (d / "secrets-stale" / "password").write_text("left by a broken connection")
    t = Recording()
    repo = Repository(target, t, None, "x", directory=str(d))
    repo.extra["db-1.cnf"] = "[client]\npassword=db-secret-material\n"
    repo.scratch.append(str(d / "dumps"))
    (d / "dumps").mkdir()
    with repo:
        assert len(t.argvs) == 1
        box = Path(repo.secrets)
        assert sorted(p.name for p in d.iterdir()) == ["dumps", box.name]
        assert (box / "password").read_text() == PASSWORD
        assert (box / "ssh_key").read_text() == target.sftp_private_key.strip() + "\n"
        assert (box / "known_hosts").read_text() == "10.0.0.9 " + target.sftp_host_key + "\n"
        assert (box / "db-1.cnf").read_text() == repo.extra["db-1.cnf"]
        for p in (box, *box.iterdir()):
            assert stat.S_IMODE(os.stat(p).st_mode) == (0o700 if p == box else 0o600)
        assert repo.secret_file("db-1.cnf", repo.extra["db-1.cnf"]) == f"{box}/db-1.cnf"
        assert len(t.argvs) == 1  # written already: not sent again
    assert sorted(p.name for p in d.iterdir()) == []
    assert len(t.argvs) == 2
    text = " ".join(" ".join(a) for a in t.argvs)
    assert PASSWORD not in text and "db-secret-material" not in text and "second line" not in text
