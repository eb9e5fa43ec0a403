"""VPS area: validation, plans within allowances, IP pools, SSH keys, visibility (no
libvirt needed)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from hypothesis import given
from hypothesis import strategies as st

from servers.models import Server
from tests.conftest import login
from vps import services
from vps.models import Hypervisor, IpPool, SshKey, VpsPlan
from vps.validation import parse_public_key, validate_hostname, validate_libvirt_uri

ED25519 = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF0iz7pqOcIJyClBIytvxGYN1bGMzr6BQCmLIk9U5/nP me@laptop"
)


def test_public_key_fingerprint_matches_ssh_keygen(tmp_path):
    import subprocess

    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True
    )
    line = (tmp_path / "k.pub").read_text().strip()
    expected = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(tmp_path / "k.pub")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()[1]
    assert parse_public_key(line)[1] == expected


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "ssh-ed25519",
        "ssh-dss AAAAB3NzaC1kc3MAAACBAP",
        "ssh-ed25519 not-base64!!",
        # an RSA blob labelled ed25519
        "ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAAAgQC7",
        ED25519 + "\nssh-ed25519 AAAA",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDqz evil\x00",
    ],
)
def test_malformed_public_keys_are_refused(bad):
    with pytest.raises(ValidationError):
        parse_public_key(bad)


@given(st.text(max_size=80))
def test_hostname_checks_are_strict(text):
    try:
        validate_hostname(text)
    except ValidationError:
        return
    assert all(c.isascii() and (c.isalnum() or c in ".-") for c in text) and text == text.lower()


@pytest.mark.parametrize(
    "uri,ok",
    [
        ("qemu:///system", True),
        ("qemu+libssh:///system", True),
        ("qemu+ssh:///system", True),
        ("test:///default", True),
        ("test:///tmp/node.xml", True),
        ("qemu+ssh://root@10.0.0.1/system", False),
        ("qemu+libssh:///system?keyfile=/etc/shadow", False),
        ("qemu+ext:///system?command=/bin/sh", False),
        ("test:///../etc/x.xml", False),
        ("qemu:///session", False),
    ],
)
def test_libvirt_uris(uri, ok):
    if ok:
        validate_libvirt_uri(uri)
    else:
        with pytest.raises(ValidationError):
            validate_libvirt_uri(uri)


def test_ssh_key_saved_with_fingerprint_and_once(customer):
    key = services.do_save_ssh_key(actor=customer, data={"name": "laptop", "public_key": ED25519})
    assert key.fingerprint.startswith("SHA256:") and key.owner == customer
    with pytest.raises(ValidationError) as err:
        services.do_save_ssh_key(actor=customer, data={"name": "again", "public_key": ED25519})
    assert "public_key" in err.value.message_dict


def test_reseller_plans_stay_within_the_allowance(admin_user, reseller):
    with pytest.raises(ValidationError, match="allowance"):
        services.do_save_plan(actor=reseller, data={"name": "Small", "vcpus": 1})
    services.do_save_plan(
        actor=admin_user,
        data={"name": "Reseller cap", "vcpus": 4, "memory_mib": 4096, "allowance_for": reseller},
    )
    plan = services.do_save_plan(
        actor=reseller, data={"name": "Small", "vcpus": 2, "memory_mib": 2048}
    )
    assert plan.owner == reseller
    with pytest.raises(ValidationError) as err:
        services.do_save_plan(actor=reseller, data={"name": "Big", "vcpus": 8})
    assert "vcpus" in err.value.message_dict
    with pytest.raises(ValidationError):
        services.do_save_plan(actor=reseller, data={"name": "X", "allowance_for": reseller})


def _hypervisor(owner) -> Hypervisor:
    server = Server.objects.create(
        name="hv1", address="198.51.100.10", transport=Server.Transport.LOCAL, owner=owner
    )
    return Hypervisor.objects.create(
        server=server,
        uri="test:///default",
        status="online",
        cpus=8,
        memory_mib=8192,
        storage_gib=200,
    )


def test_pool_ranges_are_checked(admin_user):
    hv = _hypervisor(admin_user)
    with pytest.raises(ValidationError) as err:
        services.do_save_pool(
            actor=admin_user,
            data={
                "name": "p",
                "hypervisor": hv,
                "network": "203.0.113.0/28",
                "gateway": "203.0.113.1",
                "first": "203.0.113.2",
                "last": "203.0.114.9",
            },
        )
    assert "last" in err.value.message_dict
    pool = services.do_save_pool(
        actor=admin_user,
        data={
            "name": "v6",
            "hypervisor": hv,
            "network": "2001:db8::/64",
            "gateway": "2001:db8::1",
            "first": "2001:db8::10",
            "last": "2001:db8::ffff",
        },
    )
    assert pool.version == 6 and pool.size == 0xFFFF - 0x10 + 1


def test_hypervisor_uri_must_fit_the_server(admin_user):
    server = Server.objects.create(name="remote", address="198.51.100.20", owner=admin_user)
    with pytest.raises(ValidationError) as err:
        services.do_save_hypervisor(
            actor=admin_user, data={"server": server, "uri": "qemu:///system"}
        )
    assert "uri" in err.value.message_dict
    assert not Hypervisor.objects.exists()


def test_ssh_keys_api_is_per_owner(customer, mallory):
    client = login(customer)
    answer = client.post(
        "/api/v1/ssh-keys/",
        {"name": "laptop", "public_key": ED25519},
        content_type="application/json",
    )
    assert answer.status_code == 201, answer.content
    uuid = answer.json()["uuid"]
    bad = client.post(
        "/api/v1/ssh-keys/",
        {"name": "x", "public_key": "ssh-rsa AAAA"},
        content_type="application/json",
    )
    assert bad.status_code == 400 and "public_key" in bad.json()
    assert login(mallory).get(f"/api/v1/ssh-keys/{uuid}/").status_code == 404
    assert login(mallory).get("/api/v1/ssh-keys/").json()["count"] == 0
    assert SshKey.objects.count() == 1


def test_customers_see_no_infrastructure(customer, admin_user):
    _hypervisor(admin_user)
    VpsPlan.objects.create(name="p")
    client = login(customer)
    assert client.get("/api/v1/hypervisors/").json()["count"] == 0
    assert client.get("/api/v1/ip-pools/").json()["count"] == 0
    assert client.post(
        "/api/v1/vps-plans/", {"name": "x"}, content_type="application/json"
    ).status_code in (403, 404)
    assert IpPool.objects.count() == 0
