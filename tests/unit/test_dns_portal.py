"""The DNS portal: zone list, the zone editor (flat at any size), inline record changes."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from dns import services
from dns.models import Record, Zone
from tests.conftest import login

pytestmark = pytest.mark.django_db


@pytest.fixture
def zone(customer):
    return services.do_create_zone(actor=customer, data={"name": "example.com"})


def htmx(client, method, url, data=None, target="records"):
    return getattr(client, method)(url, data or {}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET=target)


def test_zone_list_and_create(customer):
    client = login(customer)
    assert client.get("/dns/").status_code == 200
    resp = client.post("/dns/new/", {"name": "Bücher.example", "default_ttl": 300})
    assert resp.status_code == 302, resp.content.decode()[:2000]
    zone = Zone.objects.get()
    assert zone.name == "xn--bcher-kva.example" and zone.owner == customer
    body = client.get("/dns/").content.decode()
    assert "xn--bcher-kva.example" in body
    resp = client.post("/dns/new/", {"name": "bad name.example", "default_ttl": 300})
    assert resp.status_code == 400 and "spaces" in resp.content.decode()


def test_create_a_reverse_zone_from_a_template(customer, admin_user):
    template = services.do_save_template(
        actor=admin_user,
        data={
            "name": "ptr",
            "records": [{"name": "{server_ip}", "type": "PTR", "content": "h.x."}],
        },
    )
    client = login(customer)
    assert "Reverse zone of an IP range" in client.get("/dns/new/").content.decode()
    data = {"network": "10.9.8.0/24", "template": template.uuid, "default_ttl": 300}
    resp = client.post("/dns/new/", data)  # the template needs {server_ip}
    assert resp.status_code == 400 and "server_ip" in resp.content.decode()
    resp = client.post("/dns/new/", {**data, "server_ip": "10.9.8.1"})
    assert resp.status_code == 302, resp.content.decode()[:2000]
    zone = Zone.objects.get(name="8.9.10.in-addr.arpa")
    assert list(zone.records.values_list("name", "type", "content")) == [("1", "PTR", "h.x.")]


def test_editor_stays_flat_on_a_big_zone(zone, customer):
    client = login(customer)
    url = zone.get_absolute_url()
    client.get(url)  # the session's first request loads what later ones have cached
    counts, sizes = [], []
    for total in (10, 5000):
        Record.objects.filter(zone=zone).delete()
        Record.objects.bulk_create(
            Record(zone=zone, name=f"h{i:05d}", type="A", content="10.0.0.1") for i in range(total)
        )
        with CaptureQueriesContext(connection) as ctx:
            resp = client.get(url)
        assert resp.status_code == 200
        counts.append(len(ctx.captured_queries))
        sizes.append(len(resp.content))
    assert counts[0] == counts[1], counts
    assert sizes[1] < 100_000
    # Search, filter and the next page are served by the same index, as partials.
    body = htmx(client, "get", url, {"q": "h0420"}).content.decode()
    assert "h04200" in body and "h04210" not in body and "<html" not in body
    resp = client.get(url, {"cursor": "garbage"})
    assert resp.status_code == 200


def test_inline_add_edit_delete_with_errors(zone, customer):
    client = login(customer)
    add = f"/dns/{zone.uuid}/records/"
    body = htmx(client, "post", add, {"name": "www", "type": "A", "content": "10.0.0.1"}).content
    assert b"Added www A" in body and Record.objects.filter(zone=zone).count() == 1
    body = htmx(client, "post", add, {"name": "www", "type": "CNAME", "content": "x.example."})
    assert "cannot sit beside" in body.content.decode()
    body = htmx(client, "post", add, {"name": "a b", "type": "A", "content": "10.0.0.1\n"})
    assert "spaces" in body.content.decode() and Record.objects.count() == 1
    rec = Record.objects.get()
    edit = f"/dns/{zone.uuid}/records/{rec.uuid}/"
    assert b"Save" in htmx(client, "get", edit).content
    body = htmx(client, "post", edit, {"name": "www", "type": "A", "content": "999.1.1.1"})
    assert "Not a valid A record" in body.content.decode()
    body = htmx(client, "post", edit, {"name": "www", "type": "A", "content": "10.0.0.7"})
    assert b"10.0.0.7" in body.content and Record.objects.get().content == "10.0.0.7"
    assert htmx(client, "post", f"{edit}delete/").status_code == 200
    assert not Record.objects.exists()


def test_import_and_export_pages(zone, customer):
    client = login(customer)
    url = f"/dns/{zone.uuid}/import/"
    assert client.get(url).status_code == 200
    resp = client.post(
        url, {"text": "$TTL 60\nwww IN A 10.0.0.1\nmx IN MX mail\n", "replace": "on"}
    )
    assert resp.status_code == 400 and "Line 3" in resp.content.decode()
    resp = client.post(url, {"text": "$TTL 60\nwww IN A 10.0.0.1\n", "replace": "on"})
    assert resp.status_code == 302 and Record.objects.filter(zone=zone).count() == 1
    text = client.get(f"/dns/{zone.uuid}/export/").content.decode()
    assert "www 60 IN A 10.0.0.1" in text


def test_outsiders_get_404(zone, customer, mallory):
    services.do_create_record(
        zone, actor=customer, data={"name": "www", "type": "A", "content": "10.0.0.1"}
    )
    rec = Record.objects.get()
    client = login(mallory)
    assert str(zone.uuid) not in client.get("/dns/").content.decode()
    for url in [
        f"/dns/{zone.uuid}/",
        f"/dns/{zone.uuid}/export/",
        f"/dns/{zone.uuid}/import/",
        f"/dns/{zone.uuid}/records/{rec.uuid}/",
    ]:
        assert client.get(url).status_code == 404, url
    assert client.post(f"/dns/{zone.uuid}/records/{rec.uuid}/delete/").status_code == 404
    assert Record.objects.count() == 1


def test_ns_verification_shown_and_started(zone, customer):
    client = login(customer)
    body = client.get(zone.get_absolute_url()).content.decode()
    assert "NS verification" in body and "Not checked yet" in body
    resp = client.post(f"/dns/{zone.uuid}/check-ns/")  # no nameservers: said, nothing started
    assert resp.status_code == 302
    assert "no nameservers" in client.get(zone.get_absolute_url()).content.decode()
    Zone.objects.filter(pk=zone.pk).update(ns_status="mismatch", ns_message="delegates to x.")
    body = client.get(zone.get_absolute_url()).content.decode()
    assert "NS mismatch" in body and "delegates to x." in body


@pytest.mark.django_db(transaction=True)
def test_the_zone_page_follows_its_status(customer, mallory):
    """A change makes the zone pending, then a publish's outcome is recorded (as the publisher
    does: status, the server's words, an event): the open page's status block is re-rendered
    each time; someone else cannot open the zone's socket."""
    from asgiref.sync import async_to_sync, sync_to_async

    from dns.models import NameserverGroup
    from tests.unit.test_live import connect, open_ready, receive_until, rows

    zone = services.do_create_zone(actor=customer, data={"name": "live.example"})
    page = login(customer).get(zone.get_absolute_url()).content.decode()
    assert f'data-live="/ws/live/zones/{zone.uuid}/"' in page
    block = f"zone-{zone.uuid.hex}-status"
    assert f'id="{block}"' in page

    async def scenario():
        client = await sync_to_async(login)(customer)
        comm, _ = await open_ready(f"/ws/live/zones/{zone.uuid}/?since=0", client)
        await sync_to_async(services.do_create_record)(
            zone,
            actor=customer,
            data={"name": "www", "type": "A", "content": "10.0.0.1", "ttl": None},
        )
        got = await receive_until(comm, lambda m: block in rows(m))
        assert "Pending" in rows(got)[block]["html"]
        await sync_to_async(Zone.objects.filter(pk=zone.pk).update)(
            status="error", status_message="ns1: REFUSED"
        )
        from core import events

        await sync_to_async(events.changed)(await sync_to_async(Zone.objects.get)(pk=zone.pk))
        got = await receive_until(
            comm, lambda m: "REFUSED" in rows(m).get(block, {}).get("html", "")
        )
        await comm.disconnect()
        outsider = await sync_to_async(login)(mallory)
        _comm, ok, code = await connect(f"/ws/live/zones/{zone.uuid}/", outsider)
        assert not ok and code == 4404

    assert NameserverGroup.objects.count() == 0  # nothing to publish to: status stays pending
    async_to_sync(scenario)()
