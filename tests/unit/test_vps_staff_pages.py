"""The VPS staff pages: hypervisors with capacity, images (uploads checked by the real
qemu-img), plans (resellers within their allowance), IP pools with used/free counts. Lists
cost the same queries at any size; customers get 404 everywhere here."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core.models import AuditEntry
from servers.models import Server
from tests.conftest import login
from vps.models import Hypervisor, Image, IpAddress, IpPool, Vps, VpsPlan

pytestmark = pytest.mark.django_db

STAFF_LISTS = ["/vps/hypervisors/", "/vps/images/", "/vps/plans/", "/vps/pools/"]
STAFF_FORMS = ["/vps/hypervisors/new/", "/vps/images/new/", "/vps/plans/new/", "/vps/pools/new/"]


def make_hypervisor(owner, name: str, **inventory) -> Hypervisor:
    server = Server.objects.create(
        name=name, address="198.51.100.10", transport="local", owner=owner
    )
    values = {"cpus": 8, "memory_mib": 16384, "storage_gib": 500, "status": "online"}
    return Hypervisor.objects.create(server=server, uri="test:///default", **(values | inventory))


def make_pool(hv: Hypervisor, name: str = "v4", net: str = "203.0.113") -> IpPool:
    return IpPool.objects.create(
        name=name,
        hypervisor=hv,
        network=f"{net}.0/24",
        gateway=f"{net}.1",
        first=f"{net}.1",
        last=f"{net}.10",
    )


def add_vps(hv, owner, plan, hostname: str, state: str = "running", **res) -> Vps:
    values = {"vcpus": 2, "memory_mib": 2048, "disk_gib": 40} | res
    return Vps.objects.create(
        hostname=hostname, owner=owner, plan=plan, hypervisor=hv, state=state, **values
    )


@pytest.fixture
def provider_plan(db):
    return VpsPlan.objects.create(name="Provider S", vcpus=2, memory_mib=2048, disk_gib=40)


def assert_flat(client, url: str, grow) -> bytes:
    """The page costs no more queries after ``grow()`` added rows than before."""
    with CaptureQueriesContext(connection) as few:
        assert client.get(url).status_code == 200
    grow()
    with CaptureQueriesContext(connection) as many:
        answer = client.get(url)
    assert answer.status_code == 200
    assert len(many) <= len(few), [q["sql"] for q in many.captured_queries]
    return answer.content


# -- who reaches the pages ----------------------------------------------------------------
@pytest.mark.parametrize("url", STAFF_LISTS + STAFF_FORMS)
def test_customers_get_404_on_every_staff_page(customer, url):
    assert login(customer).get(url).status_code == 404
    assert login(customer).post(url, {"name": "x"}).status_code == 404


@pytest.mark.parametrize("url", ["/vps/hypervisors/", "/vps/images/", "/vps/pools/"])
def test_resellers_reach_only_the_plans(reseller, url):
    client = login(reseller)
    assert client.get(url).status_code == 404
    assert client.get(url + "new/").status_code == 404
    assert client.get("/vps/plans/").status_code == 200


def test_support_reads_but_is_offered_no_changes(admin_user, support, provider_plan):
    hv = make_hypervisor(admin_user, "hv-a")
    pool = make_pool(hv)
    client = login(support)
    for url in STAFF_LISTS + [f"/vps/hypervisors/{hv.uuid}/", f"/vps/pools/{pool.uuid}/"]:
        page = client.get(url)
        assert page.status_code == 200, url
        assert b"/edit/" not in page.content and b"/delete/" not in page.content, url
    for url in STAFF_FORMS:
        assert client.get(url).status_code == 404
    assert client.post(f"/vps/hypervisors/{hv.uuid}/edit/", {"cpu_ratio": 9}).status_code == 404


def test_vps_list_shows_staff_tabs_to_staff_only(admin_user, reseller, customer):
    assert b"/vps/hypervisors/" in login(admin_user).get("/vps/").content
    reseller_page = login(reseller).get("/vps/").content
    assert b"/vps/plans/" in reseller_page and b"/vps/hypervisors/" not in reseller_page
    assert b'data-testid="vps-tabs"' not in login(customer).get("/vps/").content


# -- hypervisors --------------------------------------------------------------------------
def test_hypervisor_list_shows_capacity_after_overcommit(admin_user, customer, provider_plan):
    hv = make_hypervisor(admin_user, "hv-a", cpus=8)
    hv.cpu_ratio = 2.0
    hv.save()
    add_vps(hv, customer, provider_plan, "one", vcpus=4, memory_mib=4096, disk_gib=100)
    add_vps(hv, customer, provider_plan, "two", vcpus=2, memory_mib=2048, disk_gib=50)
    add_vps(hv, customer, provider_plan, "gone", state="deleted", vcpus=64)
    page = login(admin_user).get("/vps/hypervisors/").content.decode()
    # 6 of 8 × 2 vCPUs; memory 6 of 16 GiB × 1; storage 150 of 500 GiB.
    assert "6 of 16</span>" in page and "(38%)" in page and "8 × 2" in page
    assert "6 of 16 GiB" in page and "150 of 500 GiB" in page
    assert ">2</td>" in page  # the deleted VPS neither counts nor takes room


def test_over_capacity_is_marked(admin_user, customer, provider_plan):
    hv = make_hypervisor(admin_user, "hv-a", cpus=1)
    hv.cpu_ratio = 1.0
    hv.save()
    add_vps(hv, customer, provider_plan, "big", vcpus=4)
    page = login(admin_user).get("/vps/hypervisors/").content.decode()
    assert "4 of 1</span>" in page and "text-red-700" in page


def test_hypervisor_list_queries_stay_flat(admin_user, customer, provider_plan):
    make_hypervisor(admin_user, "hv-0")

    def grow():
        for n in range(1, 8):
            hv = make_hypervisor(admin_user, f"hv-{n}")
            add_vps(hv, customer, provider_plan, f"vm-{n}")
            make_pool(hv, net=f"10.0.{n}")

    body = assert_flat(login(admin_user), "/vps/hypervisors/", grow)
    assert b"hv-7" in body


def test_hypervisor_detail_shows_pools_networks_and_its_vpses(admin_user, customer, provider_plan):
    hv = make_hypervisor(admin_user, "hv-a")
    Hypervisor.objects.filter(pk=hv.pk).update(
        pools=[{"name": "default", "capacity": 2**40, "available": 2**39}],
        networks=["default", "isolated"],
        foreign_domains=["someone-elses"],
    )
    pool = make_pool(hv)
    vps = add_vps(hv, customer, provider_plan, "web-1")
    IpAddress.objects.create(pool=pool, vps=vps, address="203.0.113.2")
    add_vps(hv, customer, provider_plan, "old", state="deleted")
    page = login(admin_user).get(f"/vps/hypervisors/{hv.uuid}/").content.decode()
    assert "512.0\xa0GB free of 1.0\xa0TB" in page
    assert "isolated" in page and "someone-elses" in page
    assert "web-1" in page and ">old<" not in page
    assert "1 used, 8 free" in page  # 10 addresses, the gateway and one held
    assert f"/vps/hypervisors/{hv.uuid}/edit/" in page and "Refresh inventory" in page


def test_add_and_edit_a_hypervisor_through_the_service(admin_user, q_sync):
    server = Server.objects.create(
        name="new-hv", address="198.51.100.20", transport="local", owner=admin_user
    )
    client = login(admin_user)
    form = client.get("/vps/hypervisors/new/").content.decode()
    assert "new-hv" in form
    data = {
        "server": server.pk,
        "uri": "test:///default",
        "enabled": "on",
        "storage_pool": "default",
        "network": "default",
        "cpu_ratio": "4",
        "memory_ratio": "1",
        "disk_ratio": "1",
    }
    bad = client.post("/vps/hypervisors/new/", data | {"uri": "qemu+ext:///system"})
    assert bad.status_code == 400 and not Hypervisor.objects.exists()
    answer = client.post("/vps/hypervisors/new/", data)
    hv = Hypervisor.objects.get()
    assert answer.status_code == 302 and answer["Location"] == f"/vps/hypervisors/{hv.uuid}/"
    assert AuditEntry.objects.filter(action="hypervisor.save").count() == 1
    edit = {k: v for k, v in data.items() if k != "server"} | {"cpu_ratio": "8"}
    assert client.post(f"/vps/hypervisors/{hv.uuid}/edit/", edit).status_code == 302
    hv.refresh_from_db()
    assert hv.cpu_ratio == 8.0 and hv.server == server
    over = client.post(f"/vps/hypervisors/{hv.uuid}/edit/", edit | {"cpu_ratio": "100"})
    assert over.status_code == 400 and b"cpu_ratio" in over.content


def test_a_hypervisor_with_vpses_is_not_deleted(admin_user, customer, provider_plan):
    hv = make_hypervisor(admin_user, "hv-a")
    add_vps(hv, customer, provider_plan, "web-1")
    client = login(admin_user)
    answer = client.post(f"/vps/hypervisors/{hv.uuid}/delete/")
    assert answer.status_code == 302 and Hypervisor.objects.filter(pk=hv.pk).exists()
    Vps.objects.all().delete()
    client.post(f"/vps/hypervisors/{hv.uuid}/delete/")
    assert not Hypervisor.objects.exists()


# -- plans --------------------------------------------------------------------------------
@pytest.fixture
def allowance(reseller):
    return VpsPlan.objects.create(
        name="Reseller allowance", vcpus=4, memory_mib=4096, disk_gib=80, allowance_for=reseller
    )


PLAN = {
    "name": "Tiny",
    "vcpus": "1",
    "memory_mib": "1024",
    "disk_gib": "20",
    "bandwidth_gib": "",
    "ip_count": "1",
    "snapshot_limit": "2",
    "price": "5.00",
}


def test_a_reseller_sells_within_its_allowance(reseller, allowance):
    client = login(reseller)
    page = client.get("/vps/plans/").content.decode()
    assert 'data-testid="vps-allowance"' in page and "at most 4 vCPUs" in page
    assert "Reseller allowance</td>" not in page  # the provider's plan is not its own row
    over = client.post("/vps/plans/new/", PLAN | {"vcpus": "8"})
    assert over.status_code == 400 and b"Your allowance gives at most 4" in over.content
    assert not VpsPlan.objects.filter(owner=reseller).exists()
    form = client.get("/vps/plans/new/").content.decode()
    assert 'name="owner"' not in form and 'name="allowance_for"' not in form
    assert client.post("/vps/plans/new/", PLAN).status_code == 302
    plan = VpsPlan.objects.get(owner=reseller)
    assert plan.name == "Tiny" and "Tiny" in client.get("/vps/plans/").content.decode()
    edit = client.post(f"/vps/plans/{plan.uuid}/edit/", PLAN | {"memory_mib": "8192"})
    assert edit.status_code == 400
    assert client.post(f"/vps/plans/{plan.uuid}/edit/", PLAN | {"vcpus": "3"}).status_code == 302
    plan.refresh_from_db()
    assert plan.vcpus == 3


def test_resellers_never_reach_each_others_plans(reseller, allowance, django_user_model):
    from tests.conftest import make_user

    other = make_user("other-reseller@example.com", "reseller")
    theirs = VpsPlan.objects.create(name="Theirs", owner=other)
    client = login(reseller)
    assert b"Theirs" not in client.get("/vps/plans/").content
    assert client.get(f"/vps/plans/{theirs.uuid}/edit/").status_code == 404
    assert client.post(f"/vps/plans/{theirs.uuid}/delete/").status_code == 404
    assert client.get(f"/vps/plans/{allowance.uuid}/edit/").status_code == 404
    assert VpsPlan.objects.filter(pk=theirs.pk).exists()


def test_administrators_manage_provider_plans(admin_user, reseller, customer, provider_plan):
    client = login(admin_user)
    form = client.get("/vps/plans/new/").content.decode()
    assert 'name="allowance_for"' in form and reseller.email in form
    data = PLAN | {"name": "Allowance", "allowance_for": reseller.pk, "owner": ""}
    assert client.post("/vps/plans/new/", data).status_code == 302
    assert VpsPlan.objects.get(name="Allowance").allowance_for == reseller
    hv = make_hypervisor(admin_user, "hv-a")
    add_vps(hv, customer, provider_plan, "web-1")
    page = client.get("/vps/plans/").content.decode()
    assert f"/vps/plans/{provider_plan.uuid}/delete/" not in page  # in use
    refused = client.post(f"/vps/plans/{provider_plan.uuid}/delete/")
    assert refused.status_code == 302 and VpsPlan.objects.filter(pk=provider_plan.pk).exists()
    unused = VpsPlan.objects.get(name="Allowance")
    assert f"/vps/plans/{unused.uuid}/delete/" in page
    client.post(f"/vps/plans/{unused.uuid}/delete/")
    assert not VpsPlan.objects.filter(pk=unused.pk).exists()
    assert AuditEntry.objects.filter(action="vps_plan.delete").count() == 1


def test_plan_list_queries_stay_flat(reseller, allowance, customer):
    hv = make_hypervisor(reseller, "hv-a")
    VpsPlan.objects.create(name="First", owner=reseller)

    def grow():
        for n in range(8):
            plan = VpsPlan.objects.create(name=f"P{n}", owner=reseller)
            add_vps(hv, customer, plan, f"vm-{n}")

    body = assert_flat(login(reseller), "/vps/plans/", grow)
    assert b"P7" in body and b"/vps/plans/" in body


# -- images -------------------------------------------------------------------------------
def qcow2(tmp_path, name: str = "disk.qcow2") -> bytes:
    if not shutil.which("qemu-img"):
        from tests.conftest import require_real

        require_real("qemu-img is not installed")
    path = tmp_path / name
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True)
    return path.read_bytes()


IMAGE = {"name": "Debian 12", "os_family": "linux", "os_version": "12", "default_user": "debian"}


def test_upload_an_image_and_see_what_qemu_img_found(admin_user, tmp_path, settings):
    from django.core.files.uploadedfile import SimpleUploadedFile

    settings.VAR_DIR = tmp_path / "var"
    client = login(admin_user)
    form = client.get("/vps/images/new/").content.decode()
    assert 'enctype="multipart/form-data"' in form
    vdi = tmp_path / "disk.vdi"
    qcow2(tmp_path)  # skips (or fails under PANEL_REQUIRE_REAL) without qemu-img
    subprocess.run(["qemu-img", "create", "-q", "-f", "vdi", str(vdi), "8M"], check=True)
    other = SimpleUploadedFile("disk.qcow2", vdi.read_bytes())  # the name proves nothing
    bad = client.post("/vps/images/new/", IMAGE | {"active": "on", "file": other})
    assert bad.status_code == 400 and b"this one is vdi" in bad.content
    assert not Image.objects.exists() and not any((tmp_path / "var" / "vps-images").iterdir())
    upload = SimpleUploadedFile("disk.qcow2", qcow2(tmp_path))
    answer = client.post("/vps/images/new/", IMAGE | {"active": "on", "file": upload})
    image = Image.objects.get()
    assert answer.status_code == 302 and answer["Location"] == f"/vps/images/{image.uuid}/"
    page = client.get(f"/vps/images/{image.uuid}/").content.decode()
    assert "qcow2" in page and "67108864 bytes" in page and image.sha256 in page
    listing = client.get("/vps/images/").content.decode()
    assert "Debian 12" in listing and "64.0\xa0MB" in listing


def test_an_image_with_a_backing_file_is_refused(admin_user, tmp_path, settings):
    from django.core.files.uploadedfile import SimpleUploadedFile

    settings.VAR_DIR = tmp_path / "var"
    qcow2(tmp_path, "base.qcow2")
    child = tmp_path / "child.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", "base.qcow2", str(child)],
        check=True,
        cwd=tmp_path,
    )
    upload = SimpleUploadedFile("child.qcow2", child.read_bytes())
    answer = login(admin_user).post("/vps/images/new/", IMAGE | {"file": upload})
    assert answer.status_code == 400 and b"backing" in answer.content
    assert not Image.objects.exists()


def test_an_image_in_use_is_not_deleted(admin_user, customer, provider_plan):
    image = Image.objects.create(name="img", path="/nonexistent", format="qcow2", sha256="0" * 64)
    hv = make_hypervisor(admin_user, "hv-a")
    vps = add_vps(hv, customer, provider_plan, "web-1")
    Vps.objects.filter(pk=vps.pk).update(image=image)
    client = login(admin_user)
    page = client.get(f"/vps/images/{image.uuid}/").content.decode()
    assert f"/vps/images/{image.uuid}/delete/" not in page and "cannot be deleted" in page
    refused = client.post(f"/vps/images/{image.uuid}/delete/")
    assert refused.status_code == 302 and Image.objects.filter(pk=image.pk).exists()
    Vps.objects.filter(pk=vps.pk).update(state="deleted")
    client.post(f"/vps/images/{image.uuid}/delete/")
    assert not Image.objects.exists()


def test_image_edit_hides_it(admin_user):
    image = Image.objects.create(name="img", path="/x", format="qcow2", sha256="0" * 64)
    client = login(admin_user)
    data = {"name": "img", "os_family": "linux", "os_version": "", "default_user": "debian"}
    assert client.post(f"/vps/images/{image.uuid}/edit/", data).status_code == 302
    image.refresh_from_db()
    assert image.active is False


def test_image_list_queries_stay_flat(admin_user, customer, provider_plan):
    hv = make_hypervisor(admin_user, "hv-a")
    Image.objects.create(name="img-0", path="/x", format="qcow2", sha256="0" * 64)

    def grow():
        for n in range(1, 8):
            image = Image.objects.create(name=f"img-{n}", path="/x", format="raw", sha256="1" * 64)
            vps = add_vps(hv, customer, provider_plan, f"vm-{n}")
            Vps.objects.filter(pk=vps.pk).update(image=image)

    assert b"img-7" in assert_flat(login(admin_user), "/vps/images/", grow)


# -- IP pools -----------------------------------------------------------------------------
def test_pool_list_counts_used_and_free_in_flat_queries(admin_user, customer, provider_plan):
    hv = make_hypervisor(admin_user, "hv-a")
    pool = make_pool(hv)
    vps = add_vps(hv, customer, provider_plan, "web-1")
    IpAddress.objects.create(pool=pool, vps=vps, address="203.0.113.2")
    IpAddress.objects.create(pool=pool, vps=vps, address="203.0.113.3")

    def grow():
        for n in range(1, 8):
            other = make_pool(hv, f"p{n}", net=f"10.1.{n}")
            IpAddress.objects.create(pool=other, vps=vps, address=f"10.1.{n}.5")

    body = assert_flat(login(admin_user), "/vps/pools/", grow).decode()
    # 10 addresses: 2 held, the gateway (inside the range) never handed out: 7 free.
    assert 'data-testid="pool-used">2<' in body and 'data-testid="pool-free">7<' in body
    assert 'data-testid="pool-free">8<' in body  # the others: one held, gateway .1 inside


def test_pool_detail_lists_its_addresses(admin_user, customer, provider_plan):
    hv = make_hypervisor(admin_user, "hv-a")
    pool = make_pool(hv)
    vps = add_vps(hv, customer, provider_plan, "web-1")
    IpAddress.objects.create(pool=pool, vps=vps, address="203.0.113.2")
    client = login(admin_user)
    page = client.get(f"/vps/pools/{pool.uuid}/").content.decode()
    assert "203.0.113.2" in page and "web-1" in page and "1 used, 8 free" in page
    assert f"/vps/pools/{pool.uuid}/delete/" not in page  # addresses are held
    refused = client.post(f"/vps/pools/{pool.uuid}/delete/")
    assert refused.status_code == 302 and IpPool.objects.filter(pk=pool.pk).exists()


def test_create_and_edit_a_pool(admin_user):
    hv = make_hypervisor(admin_user, "hv-a")
    client = login(admin_user)
    data = {
        "name": "v6",
        "hypervisor": hv.pk,
        "network": "2001:db8::/64",
        "gateway": "2001:db8::1",
        "first": "2001:db8::10",
        "last": "2001:db8::ff",
    }
    outside = client.post("/vps/pools/new/", data | {"last": "2001:db9::1"})
    assert outside.status_code == 400 and b"Not inside" in outside.content
    assert not IpPool.objects.exists()
    assert client.post("/vps/pools/new/", data).status_code == 302
    pool = IpPool.objects.get()
    assert client.post(f"/vps/pools/{pool.uuid}/edit/", data | {"name": "v6b"}).status_code == 302
    pool.refresh_from_db()
    assert pool.name == "v6b"
    assert AuditEntry.objects.filter(action="ip_pool.save").count() == 2
    page = client.get("/vps/pools/").content.decode()
    assert 'data-testid="pool-free">240<' in page  # ::10..::ff, gateway outside the range


def test_lists_filter_by_status_and_hypervisor(admin_user):
    up = make_hypervisor(admin_user, "hv-up")
    down = make_hypervisor(admin_user, "hv-down", status="offline")
    make_pool(up, "pool-up")
    make_pool(down, "pool-down", net="10.2.0")
    client = login(admin_user)
    listing = client.get("/vps/hypervisors/?status=offline").content.decode()
    assert "hv-down" in listing and "hv-up" not in listing
    assert (
        f"/vps/pools/?hypervisor={down.uuid}"
        in client.get(down.get_absolute_url()).content.decode()
    )
    pools = client.get(f"/vps/pools/?hypervisor={down.uuid}").content.decode()
    assert "pool-down" in pools and ">pool-up<" not in pools
    api = client.get(f"/api/v1/ip-pools/?hypervisor={down.uuid}").json()
    assert [p["name"] for p in api["results"]] == ["pool-down"]
    assert client.get("/api/v1/hypervisors/?status=offline").json()["count"] == 1


def test_the_api_refuses_to_delete_an_image_in_use(admin_user, customer, provider_plan):
    image = Image.objects.create(name="img", path="/nonexistent", format="qcow2", sha256="0" * 64)
    vps = add_vps(make_hypervisor(admin_user, "hv-a"), customer, provider_plan, "web-1")
    Vps.objects.filter(pk=vps.pk).update(image=image)
    answer = login(admin_user).delete(f"/api/v1/images/{image.uuid}/")
    assert answer.status_code == 400 and Image.objects.filter(pk=image.pk).exists()
