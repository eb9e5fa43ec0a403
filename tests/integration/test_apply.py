"""The apply engine against a real nginx over a real sshd: incremental work, isolation of bad
units, reloads proven live, probes per site, rollback with modes kept, drift, manifest."""

import json
import os
import signal
import socket
import stat

import pytest

from servers import connection
from servers.engine import ApplyError, Step, registry
from servers.engine.engine import Engine, shard_of
from servers.engine.remote import RemoteRun
from servers.models import AppliedFile, DriftItem
from servers.tasks import detect_drift
from websites.apply import WebsiteFiles
from websites.models import Website

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def make_sites(server, nginx, n, owner, prefix="site"):
    sites = []
    for i in range(n):
        domain = f"{prefix}{i}.example.com"
        nginx.page(domain, f"hello from {domain}", owner.account_name)
        sites.append(Website.objects.create(domain=domain, server=server, owner=owner))
    return sites


def run_apply(server, units=None, **kw):
    server.refresh_from_db()
    t = connection.open_transport(server)
    lines = []
    engine = Engine(
        server, t, lines.append, reconnect=lambda: connection.open_transport(server, reuse=False)
    )
    return engine.apply(units, **kw), lines


def vhost(nginx, domain):
    return nginx.sites / f"{domain}.conf"


def leftovers(nginx):
    return sorted(p.name for p in nginx.sites.iterdir() if p.name.startswith("."))


def manifest(nginx) -> dict:
    out = {}
    for shard in (nginx.prefix / "state" / "manifest").glob("*.tsv"):
        for line in shard.read_text().splitlines():
            sha, mode, owner, group, service, unit, path = line.split("\t")
            out[path] = (sha, int(mode, 8), owner, group, service, unit)
    return out


class TestApply:
    def test_many_then_nothing_then_one(self, web_server, nginx, admin_user):
        sites = make_sites(web_server, nginx, 40, admin_user)
        result, _ = run_apply(web_server)
        assert len(result.written) == 40 and result.reloaded == ["nginx"]
        for site in (sites[0], sites[17], sites[39]):
            nginx.wait_for(site.domain, f"hello from {site.domain}")
        recorded = manifest(nginx)
        assert len(recorded) == 40
        assert {a.path: a.sha256 for a in AppliedFile.objects.all()} == {
            p: v[0] for p, v in recorded.items()
        }

        again, lines = run_apply(web_server)
        assert again.written == [] and again.reloaded == [] and "Nothing to do." in lines
        assert again.round_trips == 0  # the database knows nothing changed

        inodes = {p: p.stat().st_ino for p in nginx.sites.iterdir()}  # a rename: a new inode
        sites[5].aliases = "www.site5.example.com"
        sites[5].save()
        one, _ = run_apply(web_server, {sites[5].unit})
        assert one.written == [str(vhost(nginx, sites[5].domain))]
        assert one.reloaded == ["nginx"] and one.round_trips <= 8
        changed = [p for p in nginx.sites.iterdir() if p.stat().st_ino != inodes.get(p)]
        assert changed == [vhost(nginx, sites[5].domain)]
        # The reload was verified before the apply returned: no waiting needed here.
        assert nginx.get("www.site5.example.com") == (200, "hello from site5.example.com")
        assert leftovers(nginx) == []

    def test_invalid_site_is_isolated(self, web_server, nginx, admin_user):
        a, b, c = make_sites(web_server, nginx, 3, admin_user)
        run_apply(web_server)
        before = vhost(nginx, b.domain).read_bytes()
        b.custom_directives = "bogus_directive on;"
        b.save()
        c.aliases = "alias.example.com"
        c.save()
        d = Website.objects.create(
            domain="brand-new.example.com",
            server=web_server,
            owner=admin_user,
            custom_directives="nonsense 1;",
        )
        result, _ = run_apply(web_server)
        assert set(result.failed_units) == {b.unit, d.unit}
        assert "unknown directive" in result.failed_units[b.unit]
        assert str(vhost(nginx, b.domain)) in result.failed_units[b.unit]  # live path
        assert ".panel-" not in result.failed_units[b.unit]
        assert vhost(nginx, b.domain).read_bytes() == before  # previous file kept
        assert not vhost(nginx, d.domain).exists()
        assert result.written == [str(vhost(nginx, c.domain))]
        assert nginx.get("alias.example.com") == (200, f"hello from {c.domain}")
        for site in (a, b):
            assert nginx.get(site.domain) == (200, f"hello from {site.domain}")

        WebsiteFiles().report(web_server, result.ok_units, result.failed_units)
        b.refresh_from_db()
        c.refresh_from_db()
        assert b.status == "failed" and "bogus_directive" in b.status_message
        assert c.status == "active"
        b.custom_directives = "autoindex off;"
        b.save()
        d.delete()
        fixed, _ = run_apply(web_server)
        assert fixed.written == [str(vhost(nginx, b.domain))] and not fixed.failed_units

    def test_bad_units_found_by_bisection_when_the_error_names_no_file(
        self, web_server, nginx, admin_user
    ):
        """Two sites that are each valid alone but clash (the same unique name in two server
        blocks is fine; two `listen ... default_server` on one address are not, and nginx names
        only one of the files): the clash is found without blaming innocent sites."""
        sites = make_sites(web_server, nginx, 6, admin_user)
        run_apply(web_server)
        for s in sites:
            s.aliases = f"www.{s.domain}"
            s.save()
        sites[2].custom_directives = "location /a { return 200; }\nlocation /a { return 201; }"
        sites[2].save()
        result, _ = run_apply(web_server)
        assert set(result.failed_units) == {sites[2].unit}
        assert "duplicate location" in result.failed_units[sites[2].unit]
        assert len(result.written) == 5

    def test_removed_site_file_is_removed(self, web_server, nginx, admin_user):
        a, b = make_sites(web_server, nginx, 2, admin_user)
        run_apply(web_server)
        unit = b.unit
        b.delete()
        result, _ = run_apply(web_server, {unit})
        assert result.removed == [str(vhost(nginx, "site1.example.com"))]
        assert result.reloaded == ["nginx"]
        assert not vhost(nginx, "site1.example.com").exists()
        assert str(vhost(nginx, "site1.example.com")) not in manifest(nginx)
        assert nginx.get("site1.example.com")[0] == 404

    def test_missing_include_is_a_clear_error(self, web_server, nginx, admin_user):
        make_sites(web_server, nginx, 1, admin_user)
        text = nginx.conf.read_text().replace(f"include {nginx.sites}/*.conf;", "")
        nginx.conf.write_text(text)
        with pytest.raises(ApplyError, match="does not include"):
            run_apply(web_server)
        assert list(nginx.sites.iterdir()) == []

    def test_another_sites_name_is_caught_by_the_probe(self, web_server, nginx, admin_user):
        """nginx only warns about a server name claimed twice; the probe asks each name and
        sees the other site's revision, so the claimant is rolled back."""
        a, b = make_sites(web_server, nginx, 2, admin_user)
        run_apply(web_server)
        b.aliases = a.domain
        b.save()
        result, _ = run_apply(web_server, {b.unit})
        assert set(result.failed_units) == {b.unit}
        assert "another site may claim the same name" in result.failed_units[b.unit]
        assert a.domain not in vhost(nginx, b.domain).read_text()
        assert nginx.get(a.domain) == (200, f"hello from {a.domain}")

    def test_listen_on_a_taken_port_fails_before_anything_is_swapped(
        self, web_server, nginx, admin_user
    ):
        """nginx -t accepts a listen on a port another process holds (test mode ignores bind
        errors); the engine checks it against the server's listening sockets."""
        a, b = make_sites(web_server, nginx, 2, admin_user)
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            b.custom_directives = f"listen 127.0.0.1:{port};"
            b.save()
            result, _ = run_apply(web_server)
        assert set(result.failed_units) == {b.unit}
        assert f"127.0.0.1:{port} is in use" in result.failed_units[b.unit]
        assert nginx.get(a.domain) == (200, f"hello from {a.domain}")

    def test_reload_that_fails_is_detected_and_only_its_unit_rolled_back(
        self, web_server, nginx, admin_user
    ):
        """The port is taken after validation: the reload really fails (nginx keeps the old
        configuration and logs an [emerg]); the engine sees it, rolls back the unit the error
        names, reloads and verifies the others."""
        a, b, c = make_sites(web_server, nginx, 3, admin_user)
        run_apply(web_server)
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        b.custom_directives = f"listen 127.0.0.1:{port};"
        b.save()
        c.aliases = "www.site2.example.com"
        c.save()
        holder = socket.socket()
        taken = []

        def take_port(phase):
            if phase == "swap" and not taken:
                holder.bind(("127.0.0.1", port))
                holder.listen()
                taken.append(port)

        web_server.refresh_from_db()
        t = connection.open_transport(web_server)
        try:
            result = Engine(web_server, t, hook=take_port, batch=False).apply()
        finally:
            holder.close()
        assert set(result.failed_units) == {b.unit}
        assert "Address already in use" in result.failed_units[b.unit]
        assert str(port) not in vhost(nginx, b.domain).read_text()
        assert nginx.get("www.site2.example.com") == (200, "hello from site2.example.com")
        assert nginx.get(a.domain) == (200, f"hello from {a.domain}")

    def test_reload_failing_inside_the_batch_rolls_back_its_unit(
        self, web_server, nginx, admin_user
    ):
        """The same, on the one-round-trip path: the port is taken on the server between the
        validation and the reload (by a step), the batch stops at the failed reload, and the
        careful path rolls back only the unit the error names."""
        a, b = make_sites(web_server, nginx, 2, admin_user)
        run_apply(web_server)
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        b.custom_directives = f"listen 127.0.0.1:{port};"
        b.save()
        a.aliases = "www.site0.example.com"
        a.save()
        pid_file = nginx.prefix / "listener.pid"
        listener = (
            "import os, socket, sys, time; s = socket.socket(); "
            f"s.bind(('127.0.0.1', {port})); s.listen(); "
            f"open('{pid_file}', 'w').write(str(os.getpid())); time.sleep(60)"
        )
        grab = Step(
            [
                "sh",
                "-c",
                f'setsid -f python3 -c "{listener}" >/dev/null 2>&1; '
                f"until ss -Hltn | grep -q ':{port} '; do sleep 0.02; done",
            ]
        )
        web_server.refresh_from_db()
        t = connection.open_transport(web_server)
        lines: list[str] = []
        try:
            result = Engine(
                web_server,
                t,
                lines.append,
                step_hook=lambda at: [grab] if at == "before-reload:nginx" else [],
            ).apply()
        finally:
            if pid_file.exists():
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
        assert set(result.failed_units) == {b.unit}, lines
        assert "Address already in use" in result.failed_units[b.unit]
        assert nginx.get("www.site0.example.com") == (200, "hello from site0.example.com")

    def test_rollback_keeps_mode_and_owner(self, web_server, nginx, admin_user, tmp_path):
        """A 0600 www-data file that is rolled back comes back 0600 www-data with its old
        content, not 0644 root; a failure after the swap rolls back every service."""
        from tests import support

        support.register_test_service()
        plain = support.PlainFiles()
        secret = tmp_path / "keys" / "site.key"
        plain.files_wanted = {"plain:key": (str(secret), b"key one\n", 0o600, "www-data")}
        with registry.only_providers(plain, WebsiteFiles()):
            (a,) = make_sites(web_server, nginx, 1, admin_user)
            run_apply(web_server)
            assert secret.read_bytes() == b"key one\n"
            plain.files_wanted["plain:key"] = (str(secret), b"key two\n", 0o644, "root")
            a.aliases = "www.site0.example.com"
            a.save()

            def fail_before_verify(position):  # a failing step inside the batch
                return [Step(["false"])] if position == "before-verify:nginx" else []

            web_server.refresh_from_db()
            t = connection.open_transport(web_server)
            with pytest.raises(ApplyError, match="previous files restored"):
                Engine(web_server, t, step_hook=fail_before_verify).apply()
        st = secret.stat()
        assert secret.read_bytes() == b"key one\n"
        assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 33 and st.st_gid == 33
        assert "www.site0" not in vhost(nginx, a.domain).read_text()
        assert leftovers(nginx) == [] and sorted(os.listdir(secret.parent)) == ["site.key"]


class TestDrift:
    def test_content_mode_and_removal_detected_and_reapply_restores(
        self, web_server, nginx, admin_user
    ):
        a, b, c = make_sites(web_server, nginx, 3, admin_user)
        run_apply(web_server)
        path_a, path_b, path_c = (vhost(nginx, s.domain) for s in (a, b, c))
        original_a = path_a.read_text()
        path_a.write_text(original_a.replace("index index.html", "index hacked.html"))
        os.unlink(path_b)
        os.chmod(path_c, 0o666)

        from core.operations import OperationContext, start_operation

        op = start_operation(kind="t", task="servers.tasks.detect_drift", owner=admin_user)
        detect_drift(OperationContext(op), web_server.pk)
        drift = {d.path: d for d in DriftItem.objects.filter(server=web_server)}
        assert set(drift) == {str(path_a), str(path_b), str(path_c)}
        assert drift[str(path_a)].kind == "changed" and drift[str(path_b)].kind == "missing"
        assert drift[str(path_c)].kind == "mode" and "0666" in drift[str(path_c)].diff
        assert "-    index index.html" in drift[str(path_a)].diff
        assert "+    index hacked.html" in drift[str(path_a)].diff

        from servers.engine.state import dirty

        units, _ = dirty(web_server)
        result, _ = run_apply(web_server, units)
        assert sorted(result.written) == sorted(map(str, (path_a, path_b, path_c)))
        assert path_a.read_text() == original_a and path_b.exists()
        assert stat.S_IMODE(path_c.stat().st_mode) == 0o644
        detect_drift(OperationContext(op), web_server.pk)
        assert not DriftItem.objects.filter(server=web_server).exists()


class TestManifestAndState:
    def test_manifest_is_sharded_and_matches_the_record(self, web_server, nginx, admin_user):
        sites = make_sites(web_server, nginx, 12, admin_user)
        run_apply(web_server)
        shards = {p.stem for p in (nginx.prefix / "state" / "manifest").glob("*.tsv")}
        assert shards == {shard_of(str(vhost(nginx, s.domain))) for s in sites}
        sites[3].delete()
        run_apply(web_server)
        assert len(manifest(nginx)) == 11
        assert not (nginx.prefix / "state" / "lock").exists()
        assert not (nginx.prefix / "state" / "pending").exists()
        assert list((nginx.prefix / "state" / "runs").iterdir()) == []

    def test_check_server_rewrites_what_the_record_does_not_know(
        self, web_server, nginx, admin_user
    ):
        """A server whose files vanished (re-imaged, restored) is repaired by an apply that
        checks the server, although the record says everything is applied."""
        sites = make_sites(web_server, nginx, 3, admin_user)
        run_apply(web_server)
        for p in nginx.sites.glob("*.conf"):
            p.unlink()
        assert run_apply(web_server)[0].written == []  # the record alone sees nothing
        result, _ = run_apply(web_server, check_server=True)
        assert len(result.written) == 3
        assert nginx.get(sites[1].domain) == (200, f"hello from {sites[1].domain}")

    def test_two_applies_never_run_at_once_on_one_server(self, web_server, nginx, admin_user):
        make_sites(web_server, nginx, 2, admin_user)
        web_server.refresh_from_db()
        t = connection.open_transport(web_server)
        other = RemoteRun(t, f"{nginx.prefix}/state", "abcdef123456")
        other.stage([], [])  # another panel's run holds the server-side lock
        from servers.engine.remote import LockedError

        with pytest.raises(LockedError, match="abcdef123456"):
            Engine(web_server, t).apply()
        assert list(nginx.sites.glob("*.conf")) == []
        # Once that run is known dead, its lock is taken over.
        result = Engine(web_server, t, run_is_alive=lambda run: False).apply()
        assert len(result.written) == 2
        assert json.dumps(sorted(leftovers(nginx))) == "[]"


class TestOperation:
    def test_apply_operation_end_to_end(
        self, web_server, nginx, admin_user, q_sync, django_capture_on_commit_callbacks
    ):
        from servers import services

        good, bad = make_sites(web_server, nginx, 2, admin_user)
        bad.custom_directives = "no_such_directive 1;"
        bad.save()
        DriftItem.objects.create(
            server=web_server,
            path=str(vhost(nginx, good.domain)),
            kind="missing",
            expected_sha256="0" * 64,
        )
        with django_capture_on_commit_callbacks(execute=True):
            op = services.start_apply(web_server, actor=admin_user)
        op.refresh_from_db()
        assert op.state == "succeeded", op.error
        assert "1 written" in op.message and "1 failed" in op.message
        assert op.lines.filter(message__contains="failed validation").exists()
        good.refresh_from_db()
        bad.refresh_from_db()
        web_server.refresh_from_db()
        assert good.status == "active" and bad.status == "failed"
        assert "no_such_directive" in bad.status_message
        assert web_server.applied_at is not None and web_server.apply_run == ""
        assert not DriftItem.objects.filter(server=web_server).exists()
        assert not web_server.dirty_units.exists()
        assert nginx.get(good.domain) == (200, f"hello from {good.domain}")

    def test_nothing_dirty_needs_no_connection(
        self, web_server, nginx, admin_user, q_sync, django_capture_on_commit_callbacks
    ):
        from servers import services
        from servers.engine.state import clear_dirty, dirty

        make_sites(web_server, nginx, 1, admin_user)
        run_apply(web_server)
        clear_dirty(web_server, dirty(web_server)[1])
        type(web_server).objects.filter(pk=web_server.pk).update(ssh_port=1)  # unreachable
        with django_capture_on_commit_callbacks(execute=True):
            op = services._start("server.apply", "servers.tasks.apply_server", web_server, None)
        op.refresh_from_db()
        assert op.state == "succeeded" and op.message == "Nothing to do"

    def test_a_failed_apply_is_reported_on_its_sites(
        self, web_server, nginx, admin_user, q_sync, django_capture_on_commit_callbacks
    ):
        """report() runs on failure too: the sites of the failed run do not stay pending."""
        from servers import services

        (site,) = make_sites(web_server, nginx, 1, admin_user)
        nginx.conf.write_text(nginx.conf.read_text().replace(f"include {nginx.sites}/*.conf;", ""))
        with django_capture_on_commit_callbacks(execute=True):
            op = services.start_apply(web_server, actor=admin_user, units={site.unit})
        op.refresh_from_db()
        site.refresh_from_db()
        assert op.state == "failed" and "does not include" in op.error
        assert site.status == "failed" and "does not include" in site.status_message
        assert web_server.dirty_units.exists()  # left for the next apply
