# ruff: noqa: F811 - the fixtures imported from test_certificates are parameters here
"""Faults while a certificate is ordered and installed, against Pebble (real HTTP-01) and a
private nginx over the loopback sshd: the worker killed for real mid-order and between
storing the chain and installing it, and a full disk under the key and chain directory.

A certificate is "active" only while a chain of it is live on the server, and the row says
which one: after each fault the Operation says failed and why, the certificate is failed
(nothing served) or still active with the previous chain (what is served), the previous
files are untouched, and a retry issues and serves."""

from __future__ import annotations

import shutil
import stat
import subprocess

import pytest

from core.operations import retry_operation
from tests.acme_support import https_peer
from tests.integration.faults import die, fill, mount_tmpfs, run_in_doomed_worker, umount
from tests.integration.test_certificates import (  # noqa: F401 - fixtures
    acme,
    dns_standin,
    fingerprint,
    issue,
    make_site,
    pebble,
    tls_nginx,
    tls_server,
    wait_serving,
)
from websites.certificates import services
from websites.certificates.models import Certificate

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def serves_no_certificate(nginx, name: str, root: str) -> bool:
    try:
        https_peer(nginx.tls_port, name, root)
    except OSError:  # refused, reset, or a certificate that is not for this name
        return True
    return False


def queued_request(site, actor, monkeypatch):
    """The issue Operation, queued and not run (a doomed worker runs it)."""
    queued = []
    with monkeypatch.context() as m:
        m.setattr("core.operations._enqueue", queued.append)
        services.request_certificate(site, actor=actor)
    (op,) = queued
    return op


def arm_after_the_order() -> None:
    """In the worker: die once Pebble issued, before the panel stored anything."""
    from websites.certificates import tasks

    real = tasks.AcmeClient.issue

    def issue_then_die(self, *args, **kwargs):
        real(self, *args, **kwargs)
        die()

    tasks.AcmeClient.issue = issue_then_die


def arm_before_the_install() -> None:
    """In the worker: die once the key and chain are stored, before any file is written."""
    from websites.certificates import tasks

    tasks._install = lambda ctx, cert, t: die()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "when", [arm_after_the_order, arm_before_the_install], ids=["ordered", "stored"]
)
def test_worker_killed_mid_order(
    acme, tls_server, tls_nginx, dns_standin, admin_user, monkeypatch, q_sync, when
):
    domain = f"{when.__name__.split('_')[-1]}-killed.example.com"
    site = make_site(tls_server, tls_nginx, admin_user, domain, dns_standin)
    op = queued_request(site, admin_user, monkeypatch)
    run_in_doomed_worker(op, when)
    assert op.state == "failed" and "stopped" in op.error
    cert = Certificate.objects.get(website=site)
    assert cert.status == "failed" and "stopped" in cert.last_error, cert.status
    assert not cert.installed
    root = acme.root_pem()
    assert serves_no_certificate(tls_nginx, domain, root)

    retry = retry_operation(op, actor=admin_user)
    retry.refresh_from_db()
    cert.refresh_from_db()
    assert retry.state == "succeeded", retry.error
    assert cert.status == "active" and cert.installed and cert.last_error == ""
    der, body = wait_serving(tls_nginx, domain, root, cert.fingerprint)
    assert fingerprint(der) == cert.fingerprint and body == f"hello from {domain}"


@pytest.fixture
def tiny_tls_dir(tls_nginx):
    """The key and chain directory on a 1 MB tmpfs of its own (a real ENOSPC)."""
    tls = tls_nginx.prefix / "tls"
    tls.mkdir(mode=0o700, exist_ok=True)
    moved(tls, lambda: mount_tmpfs(tls, "0700"))
    yield tls
    free(tls)
    moved(tls, lambda: umount(tls))


def moved(tls, mount_change) -> None:
    """The live vhosts name the key and chain files here: they stay where nginx looks for
    them while a mount comes or goes."""
    keep = tls.with_name("tls-kept")
    keep.mkdir(mode=0o700)
    subprocess.run(["cp", "-a", f"{tls}/.", str(keep)], check=True)
    mount_change()
    subprocess.run(["cp", "-a", f"{keep}/.", str(tls)], check=True)
    shutil.rmtree(keep)


def free(directory) -> None:
    for name in (".filler", ".filler2"):
        (directory / name).unlink(missing_ok=True)


def test_full_disk_at_the_first_issue(
    acme, tls_server, tls_nginx, dns_standin, admin_user, tiny_tls_dir, q_sync,
    django_capture_on_commit_callbacks,
):  # fmt: skip
    """Pebble issues, the files cannot be written: the certificate is failed (not active:
    nothing of it serves) with the disk's words; with space again a retry serves it."""
    site = make_site(tls_server, tls_nginx, admin_user, "full1.example.com", dns_standin)
    fill(tiny_tls_dir)
    op = issue(site, admin_user, django_capture_on_commit_callbacks)
    assert op.state == "failed" and "No space left on device" in op.error, op.error
    cert = Certificate.objects.get(website=site)
    assert cert.status == "failed" and not cert.installed, cert.status
    assert "No space left on device" in cert.last_error
    assert not (tiny_tls_dir / "full1.example.com.key").exists()
    root = acme.root_pem()
    assert serves_no_certificate(tls_nginx, site.domain, root)

    free(tiny_tls_dir)
    with django_capture_on_commit_callbacks(execute=True):
        retry = retry_operation(op, actor=admin_user)
    retry.refresh_from_db()
    cert.refresh_from_db()
    assert retry.state == "succeeded", retry.error
    assert cert.status == "active" and cert.installed
    der, _body = wait_serving(tls_nginx, site.domain, root, cert.fingerprint)
    assert fingerprint(der) == cert.fingerprint


def test_full_disk_at_a_renewal_keeps_the_live_certificate(
    acme, tls_server, tls_nginx, dns_standin, admin_user, tiny_tls_dir, q_sync,
    django_capture_on_commit_callbacks,
):  # fmt: skip
    """A renewal whose files cannot be written: the live key and chain are untouched (mode
    0600 kept), HTTPS keeps serving them, and the row still describes them (so the renewal
    stays due and is ordered again), with the disk's words; with space again it renews."""
    site = make_site(tls_server, tls_nginx, admin_user, "full2.example.com", dns_standin)
    op = issue(site, admin_user, django_capture_on_commit_callbacks)
    assert op.state == "succeeded", op.error
    live = Certificate.objects.get(website=site)
    key_file = tiny_tls_dir / "full2.example.com.key"
    key_before = key_file.read_bytes()
    root = acme.root_pem()
    wait_serving(tls_nginx, site.domain, root, live.fingerprint)

    fill(tiny_tls_dir)
    op = issue(site, admin_user, django_capture_on_commit_callbacks)
    assert op.state == "failed" and "No space left on device" in op.error, op.error
    cert = Certificate.objects.get(website=site)
    assert key_file.read_bytes() == key_before
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    der, _body = https_peer(tls_nginx.tls_port, site.domain, root)
    assert fingerprint(der) == live.fingerprint
    assert cert.status == "active" and "No space left on device" in cert.last_error
    assert (cert.fingerprint, cert.not_after) == (live.fingerprint, live.not_after)
    assert cert.private_key == live.private_key

    free(tiny_tls_dir)
    op = issue(site, admin_user, django_capture_on_commit_callbacks)
    assert op.state == "succeeded", op.error
    cert.refresh_from_db()
    assert cert.fingerprint != live.fingerprint and cert.status == "active"
    der, _body = wait_serving(tls_nginx, site.domain, root, cert.fingerprint)
    assert fingerprint(der) == cert.fingerprint
    assert key_file.read_text() == cert.private_key
