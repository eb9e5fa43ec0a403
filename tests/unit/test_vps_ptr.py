"""Reverse DNS of VPS addresses through the DNS app: a PTR ``<address> -> <hostname>.`` in
the reverse zone the panel serves for the hypervisor's owner, added when the address is
allocated and removed when it is released; nothing where no such zone is served."""

from __future__ import annotations

import pytest

from core.models import AuditEntry
from dns import services as dns_services
from dns.models import Nameserver, NameserverGroup, Record
from servers.models import Server
from tests.conftest import login
from vps import services
from vps.models import Hypervisor, Image, IpPool, VpsPlan

pytestmark = pytest.mark.django_db


@pytest.fixture
def fleet(admin_user, reseller):
    server = Server.objects.create(
        name="hv", address="198.51.100.10", transport="local", owner=admin_user
    )
    hv = Hypervisor.objects.create(
        server=server,
        uri="test:///default",
        status=Hypervisor.Status.ONLINE,
        cpus=8,
        memory_mib=8192,
        storage_gib=100,
    )
    IpPool.objects.create(
        name="p",
        hypervisor=hv,
        network="203.0.113.0/24",
        gateway="203.0.113.1",
        first="203.0.113.2",
        last="203.0.113.9",
    )
    plan = VpsPlan.objects.create(name="Small", owner=reseller, disk_gib=5, ipv6=False)
    image = Image.objects.create(name="img", path="/x", format="qcow2", sha256="0" * 64)
    return hv, plan, image


@pytest.fixture
def reverse_zone(admin_user):
    group = NameserverGroup.objects.create(name="g")
    Nameserver.objects.create(group=group, hostname="ns1.example.net", host="127.0.0.1")
    return dns_services.do_create_zone(
        actor=admin_user, data={"network": "203.0.113.0/24", "group": group}
    )


def _create(customer, fleet, hostname):
    _hv, plan, image = fleet
    return services.do_create_vps(
        actor=customer, data={"hostname": hostname, "plan": plan, "image": image}
    )


def test_ptr_added_on_allocation_and_removed_on_release(customer, fleet, reverse_zone):
    vps = _create(customer, fleet, "web1.example.com")
    assert list(vps.addresses.values_list("address", flat=True)) == ["203.0.113.2"]
    ptr = Record.objects.get(zone=reverse_zone, type="PTR")
    assert (ptr.name, ptr.content) == ("2", "web1.example.com.")
    reverse_zone.refresh_from_db()
    assert reverse_zone.serial > 0
    # A second VPS gets its own.
    other = _create(customer, fleet, "web2.example.com")
    assert Record.objects.filter(zone=reverse_zone, type="PTR").count() == 2
    assert services.release_addresses(vps) == 1
    assert list(Record.objects.filter(zone=reverse_zone).values_list("name", "content")) == [
        ("3", "web2.example.com.")
    ]
    assert other.addresses.count() == 1


def test_no_ptr_without_a_served_reverse_zone_or_a_full_host_name(
    customer, fleet, reverse_zone, admin_user
):
    vps = _create(customer, fleet, "web1")  # one label: nothing to point at
    assert not Record.objects.filter(type="PTR").exists()
    services.release_addresses(vps)
    dns_services.do_delete_zone(reverse_zone, actor=admin_user)
    vps = _create(customer, fleet, "web3.example.com")
    assert vps.addresses.count() == 1 and not Record.objects.filter(type="PTR").exists()


def test_a_ptr_someone_set_is_kept(customer, fleet, reverse_zone, admin_user):
    dns_services.do_create_record(
        reverse_zone,
        actor=admin_user,
        data={"name": "203.0.113.2", "type": "PTR", "ttl": None, "content": "mail.example.org."},
    )
    vps = _create(customer, fleet, "web1.example.com")
    assert list(Record.objects.filter(type="PTR").values_list("content", flat=True)) == [
        "mail.example.org."
    ]
    services.release_addresses(vps)  # not ours: stays
    assert Record.objects.filter(type="PTR").count() == 1


def test_rename_points_the_panel_ptr_at_the_new_name(customer, fleet, reverse_zone):
    vps = _create(customer, fleet, "web1.example.com")
    ptr = Record.objects.get(zone=reverse_zone, type="PTR")
    reverse_zone.refresh_from_db()
    serial = reverse_zone.serial
    # Through the API, as the owner renames it.
    answer = login(customer).patch(
        f"/api/v1/vps/{vps.uuid}/",
        {"hostname": "shop.example.com"},
        content_type="application/json",
    )
    assert answer.status_code == 200, answer.content
    ptr.refresh_from_db()  # the same record, changed in place
    assert (ptr.name, ptr.content) == ("2", "shop.example.com.")
    assert Record.objects.filter(zone=reverse_zone, type="PTR").count() == 1
    reverse_zone.refresh_from_db()
    assert reverse_zone.serial > serial  # published again
    entry = AuditEntry.objects.filter(action="record.update").latest("id")
    assert entry.actor_id == customer.pk and entry.object_id == str(ptr.uuid)
    # What delete removes follows the new name.
    vps.refresh_from_db()
    assert services.release_addresses(vps) == 1
    assert not Record.objects.filter(type="PTR").exists()


def test_rename_to_one_label_removes_the_ptr_and_back_adds_it(customer, fleet, reverse_zone):
    vps = _create(customer, fleet, "web1.example.com")
    services.do_update_vps(vps, actor=customer, data={"hostname": "web1"})
    assert not Record.objects.filter(type="PTR").exists()
    services.do_update_vps(vps, actor=customer, data={"hostname": "web2.example.com"})
    assert list(Record.objects.filter(type="PTR").values_list("name", "content")) == [
        ("2", "web2.example.com.")
    ]


def test_rename_leaves_ptrs_the_panel_did_not_set(customer, fleet, reverse_zone, admin_user):
    dns_services.do_create_record(
        reverse_zone,
        actor=admin_user,
        data={"name": "203.0.113.2", "type": "PTR", "ttl": None, "content": "mail.example.org."},
    )
    vps = _create(customer, fleet, "web1.example.com")  # .2, whose PTR is someone else's
    other = _create(customer, fleet, "web3.example.com")  # .3, the panel's
    # A PTR someone added by hand for .3 pointing elsewhere stays too.
    dns_services.do_create_record(
        reverse_zone,
        actor=admin_user,
        data={"name": "203.0.113.3", "type": "PTR", "ttl": None, "content": "extra.example.org."},
    )
    services.do_update_vps(vps, actor=customer, data={"hostname": "web2.example.com"})
    services.do_update_vps(other, actor=customer, data={"hostname": "web4.example.com"})
    assert sorted(Record.objects.filter(type="PTR").values_list("name", "content")) == [
        ("2", "mail.example.org."),
        ("3", "extra.example.org."),
        ("3", "web4.example.com."),
    ]
