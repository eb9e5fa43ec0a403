"""The VPS portal: list from the database with flat query counts, create form errors,
detail with confirmation pages, SSH keys page; outsiders get 404."""

from __future__ import annotations

import pytest

from servers.models import Server
from tests.conftest import login
from vps.models import Hypervisor, IpAddress, IpPool, SshKey, Vps, VpsPlan

ED25519 = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF0iz7pqOcIJyClBIytvxGYN1bGMzr6BQCmLIk9U5/nP me@laptop"
)


@pytest.fixture
def fleet(admin_user, customer, reseller):
    server = Server.objects.create(
        name="hv", address="198.51.100.10", transport="local", owner=admin_user
    )
    hv = Hypervisor.objects.create(server=server, uri="test:///default")
    pool = IpPool.objects.create(
        name="p",
        hypervisor=hv,
        network="203.0.113.0/24",
        gateway="203.0.113.1",
        first="203.0.113.2",
        last="203.0.113.250",
    )
    plan = VpsPlan.objects.create(name="Small", owner=reseller)

    def add(n: int) -> None:
        for _ in range(n):
            vps = Vps.objects.create(
                hostname=f"fleet-host-{Vps.objects.count()}",
                owner=customer,
                plan=plan,
                hypervisor=hv,
                state="running",
            )
            IpAddress.objects.create(pool=pool, vps=vps, address=f"203.0.113.{vps.pk + 1}")

    return add


def test_list_queries_stay_flat(fleet, customer, django_assert_max_num_queries):
    client = login(customer)
    fleet(2)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as few:
        assert client.get("/vps/").status_code == 200
    fleet(20)
    with django_assert_max_num_queries(len(few)):
        answer = client.get("/vps/")
    assert b"203.0.113." in answer.content and b"fleet-host-21" in answer.content


def test_detail_actions_confirm_and_outsiders_get_404(fleet, customer, mallory):
    fleet(1)
    vps = Vps.objects.get()
    client = login(customer)
    page = client.get(f"/vps/{vps.uuid}/")
    assert page.status_code == 200 and b"Force off" in page.content
    confirm = client.get(f"/vps/{vps.uuid}/power/force_off/")
    assert confirm.status_code == 200 and b"pulling the plug" in confirm.content
    assert client.get(f"/vps/{vps.uuid}/power/explode/").status_code == 404
    outsider = login(mallory)
    assert outsider.get(f"/vps/{vps.uuid}/").status_code == 404
    assert outsider.post(f"/vps/{vps.uuid}/power/force_off/").status_code == 404
    assert b"fleet-host-0" not in outsider.get("/vps/").content


def test_ssh_keys_page(customer):
    client = login(customer)
    bad = client.post("/vps/keys/", {"name": "x", "public_key": "ssh-ed25519 AAAA"})
    assert bad.status_code == 400 and not SshKey.objects.exists()
    ok = client.post("/vps/keys/", {"name": "laptop", "public_key": ED25519})
    assert ok.status_code == 302
    page = client.get("/vps/keys/")
    assert SshKey.objects.get().fingerprint.encode() in page.content


def test_create_form_shows_capacity_error(fleet, customer):
    from tests.integration.libvirt import need_libvirt

    need_libvirt()
    fleet(0)
    from vps.models import Image

    image = Image.objects.create(name="img", path="/x", format="qcow2", sha256="0" * 64)
    plan = VpsPlan.objects.get()
    client = login(customer)
    answer = client.post("/vps/new/", {"hostname": "web", "plan": plan.pk, "image": image.pk})
    # The hypervisor was never inventoried (no capacity): a clear error, nothing created.
    assert answer.status_code == 400 and b"No room" in answer.content
    assert not Vps.objects.exists()


def test_without_libvirt_the_portal_says_so(customer, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "libvirt", None)  # import libvirt raises ImportError
    page = login(customer).get("/vps/")
    assert page.status_code == 200
    assert b"libvirt support is not installed" in page.content
    assert b"/vps/new/" not in page.content


def test_reinstall_and_resize_pages(fleet, customer, mallory, reseller):
    from core.models import Operation
    from vps.models import Image

    fleet(1)
    vps = Vps.objects.get()
    Vps.objects.filter(pk=vps.pk).update(disk_gib=20)
    image = Image.objects.create(name="img", path="/x", format="qcow2", sha256="0" * 64)
    client = login(customer)
    page = client.get(f"/vps/{vps.uuid}/change/reinstall/")
    assert page.status_code == 200 and b"every snapshot is deleted" in page.content
    # Not confirmed: nothing starts.
    answer = client.post(f"/vps/{vps.uuid}/change/reinstall/", {"image": image.pk})
    assert answer.status_code == 400 and not Operation.objects.exists()
    small = VpsPlan.objects.create(name="Less disk", owner=reseller, disk_gib=10)
    answer = client.post(f"/vps/{vps.uuid}/change/resize/", {"plan": small.pk})
    assert answer.status_code == 400 and b"never shrunk" in answer.content
    assert client.get(f"/vps/{vps.uuid}/change/explode/").status_code == 404
    outsider = login(mallory)
    assert outsider.get(f"/vps/{vps.uuid}/change/resize/").status_code == 404
    assert (
        outsider.post(f"/vps/{vps.uuid}/change/reinstall/", {"image": image.pk}).status_code == 404
    )
    answer = client.post(f"/vps/{vps.uuid}/change/reinstall/", {"image": image.pk, "confirm": "on"})
    op = Operation.objects.get(kind="vps.reinstall")
    assert answer.status_code == 302 and answer["Location"] == op.get_absolute_url()


JSON = {"content_type": "application/json"}


def test_reinstall_and_resize_api(fleet, customer, mallory, reseller):
    from core.models import Operation

    fleet(1)
    vps = Vps.objects.get()
    Vps.objects.filter(pk=vps.pk).update(disk_gib=20)
    small = VpsPlan.objects.create(name="Less disk", owner=reseller, disk_gib=10)
    api = login(customer)
    answer = api.post(f"/api/v1/vps/{vps.uuid}/resize/", {"plan": str(small.uuid)}, **JSON)
    assert answer.status_code == 400 and "never shrunk" in str(answer.json())
    outsider = login(mallory).post(f"/api/v1/vps/{vps.uuid}/reinstall/", {}, **JSON)
    assert outsider.status_code == 404
    # No image given and the VPS has none: a field error.
    answer = api.post(f"/api/v1/vps/{vps.uuid}/reinstall/", {}, **JSON)
    assert answer.status_code == 400 and "image" in answer.json()
    bigger = VpsPlan.objects.create(name="More", owner=reseller, disk_gib=30)
    Hypervisor.objects.update(cpus=8, memory_mib=8192, storage_gib=100)
    answer = api.post(f"/api/v1/vps/{vps.uuid}/resize/", {"plan": str(bigger.uuid)}, **JSON)
    assert answer.status_code == 202, answer.json()
    assert Operation.objects.filter(kind="vps.resize").count() == 1


def test_image_copy_page_and_api(fleet, admin_user, customer):
    from core.models import Operation
    from vps.models import Image

    fleet(0)
    image = Image.objects.create(name="img", path="/x", format="qcow2", sha256="0" * 64)
    assert login(customer).post(f"/vps/images/{image.uuid}/copy/").status_code == 404
    assert login(customer).post(f"/api/v1/images/{image.uuid}/copy/").status_code in (403, 404)
    client = login(admin_user)
    answer = client.post(f"/vps/images/{image.uuid}/copy/")
    assert answer.status_code == 302
    op = Operation.objects.get(kind="vps.image_upload")
    assert op.args["image"] == image.pk and op.lock_key.startswith("vps-image:")
    page = client.get(f"/vps/images/{image.uuid}/")
    assert op.get_absolute_url().encode() in page.content
    answer = client.post(f"/api/v1/images/{image.uuid}/copy/", **JSON)
    assert answer.status_code == 202 and len(answer.json()) == 1


def test_deleted_vpses_are_gone_from_the_api_and_its_list_stays_flat(fleet, customer):
    """The API lists what the viewset's own queryset holds (no deleted VPSes), narrowed by
    the policy; its query count does not grow with the rows."""
    from tests.conftest import queries_for

    fleet(2)
    gone = Vps.objects.first()
    Vps.objects.filter(pk=gone.pk).update(state=Vps.State.DELETED)
    api = login(customer)
    listed = api.get("/api/v1/vps/").json()
    assert listed["count"] == 1 and gone.hostname not in str(listed)
    assert api.get(f"/api/v1/vps/{gone.uuid}/").status_code == 404
    few = queries_for(api, "/api/v1/vps/?limit=50")
    fleet(20)
    assert queries_for(api, "/api/v1/vps/?limit=50") == few
    assert api.get("/api/v1/vps/?limit=50").json()["count"] == 21
