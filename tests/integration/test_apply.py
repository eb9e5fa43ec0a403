import json
import os

import pytest

from servers import connection
from servers.apply import ApplyError, Engine
from servers.models import DriftItem
from servers.tasks import detect_drift
from websites.models import Website

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def make_sites(server, nginx, n, owner):
    sites = []
    for i in range(n):
        domain = f"site{i}.example.com"
        nginx.page(domain, f"hello from {domain}")
        sites.append(Website.objects.create(domain=domain, server=server, owner=owner))
    return sites


def run_apply(server, **kw):
    server.refresh_from_db()
    t = connection.open_transport(server)
    lines = []
    return Engine(server, t, lines.append, **kw).apply(), lines


def vhost(nginx, domain):
    return nginx.sites / f"{domain}.conf"


class TestApply:
    def test_many_then_nothing_then_one(self, web_server, nginx, admin_user):
        sites = make_sites(web_server, nginx, 40, admin_user)
        result, _ = run_apply(web_server)
        assert len(result.written) == 40 and result.reloaded == ["nginx"]
        for site in (sites[0], sites[17], sites[39]):
            nginx.wait_for(site.domain, f"hello from {site.domain}")
        manifest = json.loads((nginx.prefix / "state" / "manifest.json").read_text())["files"]
        assert len(manifest) == 40

        again, lines = run_apply(web_server)
        assert again.written == [] and again.reloaded == [] and "Nothing to do." in lines

        mtimes = {p: p.stat().st_mtime_ns for p in nginx.sites.iterdir()}
        sites[5].aliases = "www.site5.example.com"
        sites[5].save()
        one, _ = run_apply(web_server)
        assert one.written == [str(vhost(nginx, sites[5].domain))]
        assert one.reloaded == ["nginx"]
        changed = [p for p in nginx.sites.iterdir() if p.stat().st_mtime_ns != mtimes[p]]
        assert changed == [vhost(nginx, sites[5].domain)]
        nginx.wait_for("www.site5.example.com", "hello from site5.example.com")

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
        assert str(nginx.prefix) in result.failed_units[b.unit]  # live path, not staging
        assert vhost(nginx, b.domain).read_bytes() == before  # previous file kept
        assert not vhost(nginx, d.domain).exists()
        assert result.written == [str(vhost(nginx, c.domain))]
        nginx.wait_for("alias.example.com", f"hello from {c.domain}")
        for site in (a, b):
            assert nginx.get(site.domain) == (200, f"hello from {site.domain}")

        from websites.apply import WebsiteFiles

        WebsiteFiles().report(web_server, result.ok_units, result.failed_units)
        b.refresh_from_db()
        c.refresh_from_db()
        assert b.status == "failed" and "bogus_directive" in b.status_message
        assert c.status == "active"
        # Fixing it applies it: the manifest still listed the old file for b.
        b.custom_directives = "autoindex off;"
        b.save()
        d.delete()
        fixed, _ = run_apply(web_server)
        assert fixed.written == [str(vhost(nginx, b.domain))] and not fixed.failed_units

    def test_failure_after_swap_rolls_back(self, web_server, nginx, admin_user):
        a, b = make_sites(web_server, nginx, 2, admin_user)
        run_apply(web_server)
        before = {p.name: p.read_bytes() for p in nginx.sites.iterdir()}
        a.aliases = "new-alias.example.com"
        a.save()
        Website.objects.create(domain="late.example.com", server=web_server, owner=admin_user)
        web_server.profile = {**web_server.profile, "nginx_verify_url": "http://127.0.0.1:1/"}
        web_server.save()
        with pytest.raises(ApplyError, match="(?s)does not answer.*previous files restored"):
            run_apply(web_server)
        after = {p.name: p.read_bytes() for p in nginx.sites.iterdir()}
        assert after == before
        # The rollback's reload is asynchronous like any nginx reload: wait for it to land.
        nginx.wait_for_status("new-alias.example.com", 404)
        for site in (a, b):
            assert nginx.get(site.domain) == (200, f"hello from {site.domain}")

    def test_removed_site_file_is_removed(self, web_server, nginx, admin_user):
        a, b = make_sites(web_server, nginx, 2, admin_user)
        run_apply(web_server)
        b.delete()
        result, _ = run_apply(web_server)
        assert result.removed == [str(vhost(nginx, b.domain))] and result.reloaded == ["nginx"]
        assert not vhost(nginx, b.domain).exists()

    def test_missing_include_is_a_clear_error(self, web_server, nginx, admin_user):
        make_sites(web_server, nginx, 1, admin_user)
        text = nginx.conf.read_text().replace(f"include {nginx.sites}/*.conf;", "")
        nginx.conf.write_text(text)
        with pytest.raises(ApplyError, match="does not include"):
            run_apply(web_server)
        assert list(nginx.sites.iterdir()) == []


class TestDrift:
    def test_hand_edits_detected_and_reapply_restores(
        self, web_server, nginx, admin_user, django_capture_on_commit_callbacks
    ):
        a, b, c = make_sites(web_server, nginx, 3, admin_user)
        run_apply(web_server)
        path_a, path_b = vhost(nginx, a.domain), vhost(nginx, b.domain)
        original_a = path_a.read_text()
        path_a.write_text(original_a.replace("index index.html", "index hacked.html"))
        os.unlink(path_b)

        from core.operations import OperationContext, start_operation

        op = start_operation(kind="t", task="servers.tasks.detect_drift", owner=admin_user)
        detect_drift(OperationContext(op), web_server.pk)
        drift = {d.path: d for d in DriftItem.objects.filter(server=web_server)}
        assert set(drift) == {str(path_a), str(path_b)}
        assert drift[str(path_a)].kind == "changed" and drift[str(path_b)].kind == "missing"
        assert "-    index index.html" in drift[str(path_a)].diff
        assert "+    index hacked.html" in drift[str(path_a)].diff

        result, _ = run_apply(web_server)
        assert sorted(result.written) == sorted([str(path_a), str(path_b)])
        assert path_a.read_text() == original_a and path_b.exists()
        detect_drift(OperationContext(op), web_server.pk)
        assert not DriftItem.objects.filter(server=web_server).exists()


def test_apply_operation_end_to_end(
    web_server, nginx, admin_user, q_sync, django_capture_on_commit_callbacks
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
    assert "1 written" in op.message and "1 failed validation" in op.message
    assert op.lines.filter(message__contains="failed validation").exists()
    good.refresh_from_db()
    bad.refresh_from_db()
    web_server.refresh_from_db()
    assert good.status == "active" and bad.status == "failed"
    assert "no_such_directive" in bad.status_message
    assert web_server.applied_at is not None
    assert not DriftItem.objects.filter(server=web_server).exists()
    nginx.wait_for(good.domain, f"hello from {good.domain}")
