"""DNS zones and records: validation by dnspython, services, API and visibility."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from hypothesis import given, settings
from hypothesis import strategies as st

from core.models import AuditEntry
from dns import services
from dns.models import Record, Zone
from dns.validation import normalise_content, normalise_record_name, normalise_zone_name
from tests.conftest import login

pytestmark = pytest.mark.django_db


@pytest.fixture
def zone(customer):
    return services.do_create_zone(actor=customer, data={"name": "Example.COM."})


def add(zone, actor, **data):
    return services.do_create_record(zone, actor=actor, data={"ttl": None, **data})


class TestValidation:
    def test_zone_names(self):
        assert normalise_zone_name("Bücher.Example.") == "xn--bcher-kva.example"
        assert normalise_zone_name("2.0.10.in-addr.arpa") == "2.0.10.in-addr.arpa"
        for bad in ["com", "a..b", "-a.com", "a b.com", "x\n.com", "a" * 64 + ".com", "a_b.com"]:
            with pytest.raises(ValidationError):
                normalise_zone_name(bad)

    def test_record_names(self):
        assert normalise_record_name("@", "example.com") == "@"
        assert normalise_record_name("WWW.example.com.", "example.com") == "www"
        assert normalise_record_name("example.com.", "example.com") == "@"
        assert normalise_record_name("*.dev", "example.com") == "*.dev"
        assert normalise_record_name("_dmarc", "example.com") == "_dmarc"
        for bad in ["a b", "www\nx", "other.org.", "a.*", "x" * 64, "a;b", '"a"']:
            with pytest.raises(ValidationError):
                normalise_record_name(bad, "example.com")

    def test_content_is_parsed_by_dnspython(self):
        assert normalise_content("MX", "10 mail", "example.com") == "10 mail.example.com."
        assert normalise_content("AAAA", "2001:DB8::1", "example.com") == "2001:db8::1"
        assert normalise_content("CAA", '0 issue "letsencrypt.org"', "example.com")
        srv = normalise_content("SRV", "0 5 5060 sip", "example.com")
        assert srv == "0 5 5060 sip.example.com."
        for rdtype, bad in [
            ("A", "10.0.0.1\n10.0.0.2"),
            ("A", "300.1.1.1"),
            ("A", "example.com"),
            ("MX", "mail"),
            ("CNAME", "a b"),
            ("TXT", '"' + "a" * 256 + '"'),
            ("SOA", "x"),
        ]:
            with pytest.raises(ValidationError):
                normalise_content(rdtype, bad, "example.com")

    def test_long_txt_is_split_in_255_byte_strings(self):
        text = normalise_content("TXT", "v=DKIM1; p=" + "A" * 600, "example.com")
        parts = text.split('" "')
        assert len(parts) == 3 and all(len(p.strip('"')) <= 255 for p in parts)

    @settings(max_examples=150, deadline=None)
    @given(st.text(max_size=80))
    def test_anything_accepted_is_one_clean_line(self, text):
        for rdtype in ("TXT", "A", "CNAME", "MX"):
            try:
                out = normalise_content(rdtype, text, "example.com")
            except ValidationError:
                continue
            assert "\n" not in out and "\r" not in out and "\x00" not in out
        try:
            name = normalise_record_name(text, "example.com")
        except ValidationError:
            return
        assert name == "@" or all(c.isalnum() or c in "-_.*" for c in name)


class TestServices:
    def test_zone_creation_normalises_and_audits(self, zone, customer):
        assert zone.name == "example.com" and zone.owner == customer
        assert zone.serial >= 2020010100 and zone.status == Zone.Status.PENDING
        assert AuditEntry.objects.filter(action="zone.create").exists()
        with pytest.raises(ValidationError) as err:
            services.do_create_zone(actor=customer, data={"name": "example.com"})
        assert "name" in err.value.message_dict
        with pytest.raises(ValidationError):  # a zone inside another one
            services.do_create_zone(actor=customer, data={"name": "sub.example.com"})

    def test_customers_cannot_choose_group_or_owner(self, customer, mallory):
        with pytest.raises(ValidationError) as err:
            services.do_create_zone(actor=customer, data={"name": "a.example", "owner": mallory})
        assert "owner" in err.value.message_dict

    def test_records_and_serial(self, zone, customer):
        serial = zone.serial
        rec = add(zone, customer, name="www", type="A", content="10.0.0.1")
        zone.refresh_from_db()
        assert zone.serial > serial
        assert rec.name == "www" and rec.content == "10.0.0.1"
        add(zone, customer, name="www", type="A", content="10.0.0.2", ttl=60)
        assert set(Record.objects.filter(name="www").values_list("ttl", flat=True)) == {60}

    def test_cname_conflicts_and_duplicates(self, zone, customer):
        add(zone, customer, name="www", type="A", content="10.0.0.1")
        cases = [
            (dict(name="www", type="CNAME", content="other.example.net."), "type"),
            (dict(name="www", type="A", content="10.0.0.1"), "content"),
            (dict(name="@", type="CNAME", content="x.example.net."), "type"),
            (dict(name="@", type="NS", content="ns.example.net."), "name"),
            (dict(name="bad name", type="A", content="10.0.0.1"), "name"),
            (dict(name="x", type="A", content="10.0.0.1\n@ NS evil."), "content"),
            (dict(name="x" * 64, type="A", content="10.0.0.1"), "name"),
            (dict(name="x", type="BOGUS", content="1"), "type"),
            (dict(name="x", type="A", content="10.0.0.1", ttl=-5), "ttl"),
        ]
        for data, field in cases:
            with pytest.raises(ValidationError) as err:
                add(zone, customer, **data)
            assert field in err.value.message_dict, (data, err.value)
        add(zone, customer, name="alias", type="CNAME", content="www")
        with pytest.raises(ValidationError) as err:
            add(zone, customer, name="alias", type="TXT", content="hello")
        assert "CNAME" in str(err.value)

    def test_update_and_delete(self, zone, customer):
        rec = add(zone, customer, name="www", type="A", content="10.0.0.1")
        rec = services.do_update_record(rec, actor=customer, data={"content": "10.0.0.9"})
        assert Record.objects.get(pk=rec.pk).content == "10.0.0.9"
        with pytest.raises(ValidationError):
            services.do_update_record(rec, actor=customer, data={"content": "nope"})
        services.do_delete_record(rec, actor=customer)
        assert not Record.objects.filter(zone=zone).exists()
        actions = set(AuditEntry.objects.values_list("action", flat=True))
        assert {"record.create", "record.update", "record.delete"} <= actions


class TestApi:
    def test_crud_through_the_api(self, customer):
        client = login(customer)
        resp = client.post("/api/v1/zones/", {"name": "münchen.example"}, "application/json")
        assert resp.status_code == 201, resp.content
        zone = resp.json()
        assert zone["name"] == "xn--mnchen-3ya.example"
        url = "/api/v1/records/"
        body = {"zone": zone["uuid"], "name": "www", "type": "A", "content": "10.0.0.1"}
        resp = client.post(url, body, "application/json")
        assert resp.status_code == 201, resp.content
        bad = {**body, "content": "not an address"}
        resp = client.post(url, bad, "application/json")
        assert resp.status_code == 400 and "content" in resp.json()
        cname = {**body, "type": "CNAME", "content": "x.example.net."}
        resp = client.post(url, cname, "application/json")
        assert resp.status_code == 400 and "type" in resp.json()
        listing = client.get(url, {"zone": zone["uuid"]}).json()
        assert [r["name"] for r in listing["results"]] == ["www"]
        rec = listing["results"][0]["uuid"]
        resp = client.patch(f"{url}{rec}/", {"ttl": 120}, "application/json")
        assert resp.status_code == 200 and resp.json()["ttl"] == 120
        assert client.delete(f"{url}{rec}/").status_code == 204
        assert client.delete(f"/api/v1/zones/{zone['uuid']}/").status_code == 204

    def test_outsiders_see_nothing(self, zone, customer, mallory):
        rec = add(zone, customer, name="www", type="A", content="10.0.0.1")
        client = login(mallory)
        assert client.get("/api/v1/zones/").json()["results"] == []
        assert client.get("/api/v1/records/").json()["results"] == []
        assert client.get(f"/api/v1/zones/{zone.uuid}/").status_code == 404
        assert client.get(f"/api/v1/records/{rec.uuid}/").status_code == 404
        body = {"zone": str(zone.uuid), "name": "x", "type": "A", "content": "10.0.0.1"}
        resp = client.post("/api/v1/records/", body, "application/json")
        assert resp.status_code == 400 and "zone" in resp.json()
        assert Record.objects.count() == 1

    def test_record_list_queries_stay_flat(self, zone, customer, django_assert_max_num_queries):
        Record.objects.bulk_create(
            Record(zone=zone, name=f"h{i:04d}", type="A", content="10.0.0.1") for i in range(300)
        )
        client = login(customer)
        client.get("/api/v1/records/", {"zone": str(zone.uuid)})
        with django_assert_max_num_queries(12):
            page = client.get("/api/v1/records/", {"zone": str(zone.uuid), "limit": 200}).json()
        assert len(page["results"]) == 200 and page["next"]
        nxt = client.get(page["next"]).json()
        assert len(nxt["results"]) == 100 and nxt["results"][0]["name"] == "h0200"


class TestTemplatesReverseVanity:
    def test_reverse_zone_names_and_ptr_checks(self, admin_user):
        from dns.validation import reverse_zone_for

        assert reverse_zone_for("10.1.2.0/24") == "2.1.10.in-addr.arpa"
        assert reverse_zone_for("10.0.0.0/8") == "10.in-addr.arpa"
        assert reverse_zone_for("2001:db8:5::/48") == "5.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
        for bad in ["10.1.2.0/25", "10.1.2.1/24", "10.1.2.7/32", "nonsense", "2001:db8::/47"]:
            with pytest.raises(ValidationError):
                reverse_zone_for(bad)
        zone = services.do_create_zone(actor=admin_user, data={"network": "10.1.2.0/24"})
        assert zone.name == "2.1.10.in-addr.arpa"
        rec = add(zone, admin_user, name="10.1.2.7", type="PTR", content="host.example.com.")
        assert rec.name == "7"
        for data, field in [
            ({"name": "10.1.3.7", "type": "PTR", "content": "h.example.com."}, "name"),
            ({"name": "300", "type": "PTR", "content": "h.example.com."}, "name"),
            ({"name": "1.2", "type": "PTR", "content": "h.example.com."}, "name"),
            ({"name": "8", "type": "PTR", "content": "host"}, "content"),
            ({"name": "8", "type": "A", "content": "10.0.0.1"}, "type"),
        ]:
            with pytest.raises(ValidationError) as err:
                add(zone, admin_user, **data)
            assert field in err.value.message_dict, (data, err.value.message_dict)
        v6 = services.do_create_zone(actor=admin_user, data={"network": "2001:db8:5::/48"})
        assert add(v6, admin_user, name="2001:db8:5::1", type="PTR", content="h.example.com.")

    def test_templates_with_variables(self, admin_user, customer):
        template = services.do_save_template(
            actor=admin_user,
            data={
                "name": "web",
                "records": [
                    {"name": "@", "type": "A", "content": "{server_ip}"},
                    {"name": "www", "type": "CNAME", "content": "{zone}."},
                    {"name": "@", "type": "MX", "content": "10 mail.{zone}."},
                ],
            },
        )
        zone = services.do_create_zone(
            actor=customer,
            data={
                "name": "shop.example",
                "template": template,
                "variables": {"server_ip": "10.4.4.4"},
            },
        )
        got = set(Record.objects.filter(zone=zone).values_list("name", "type", "content"))
        assert got == {
            ("@", "A", "10.4.4.4"),
            ("www", "CNAME", "shop.example."),
            ("@", "MX", "10 mail.shop.example."),
        }
        entry = AuditEntry.objects.filter(action="zone.create").latest("pk")
        assert entry.changes["template"] == [None, "web"]
        with pytest.raises(ValidationError) as err:  # the variable it needs is missing
            services.do_create_zone(
                actor=customer, data={"name": "b.example", "template": template}
            )
        assert "server_ip" in str(err.value) and not Zone.objects.filter(name="b.example").exists()
        with pytest.raises(ValidationError):  # a bad value is a bad record
            services.do_create_zone(
                actor=customer,
                data={"name": "c.example", "template": template, "variables": {"server_ip": "x"}},
            )
        for records in (
            [{"name": "@", "type": "A", "content": "{nope}"}],
            [{"name": "@", "type": "A", "content": "300.0.0.1"}],
            [
                {"name": "a", "type": "CNAME", "content": "b."},
                {"name": "a", "type": "A", "content": "{server_ip}"},
            ],
            "not a list",
        ):
            with pytest.raises(ValidationError):
                services.do_save_template(
                    actor=admin_user, data={"name": "bad", "records": records}
                )
        with pytest.raises(ValidationError):
            services.do_save_template(actor=customer, data={"name": "mine", "records": []})

    def test_vanity_nameservers_in_export(self, admin_user):
        from dns.models import NameserverGroup
        from dns.zonefiles import export_zone_file

        group = services.do_save_group(
            actor=admin_user, data={"name": "g", "vanity_nameservers": "NS1.Brand.Example\n"}
        )
        assert group.vanity == ["ns1.brand.example"]
        with pytest.raises(ValidationError):
            services.do_save_group(
                actor=admin_user, group=group, data={"vanity_nameservers": "bad_name.example"}
            )
        zone = services.do_create_zone(
            actor=admin_user, data={"name": "v.example", "group": NameserverGroup.objects.get()}
        )
        assert "@ IN NS ns1.brand.example." in export_zone_file(zone)


def test_api_creates_a_reverse_zone_from_a_template(customer, admin_user):
    template = services.do_save_template(
        actor=admin_user,
        data={"name": "t", "records": [{"name": "{server_ip}", "type": "PTR", "content": "h.x."}]},
    )
    client = login(customer)
    body = {"network": "10.3.3.0/24", "template": str(template.uuid), "variables": {}}
    resp = client.post("/api/v1/zones/", body, "application/json")
    assert resp.status_code == 400 and "server_ip" in resp.content.decode()
    body["variables"] = {"server_ip": "10.3.3.4"}
    resp = client.post("/api/v1/zones/", body, "application/json")
    assert resp.status_code == 201, resp.content.decode()
    assert resp.json()["name"] == "3.3.10.in-addr.arpa" and "template" not in resp.json()
    assert Record.objects.get(zone__uuid=resp.json()["uuid"]).name == "4"


class TestNestedRecordsAndBulkDelete:
    def test_records_under_their_zone(
        self, zone, customer, mallory, django_capture_on_commit_callbacks
    ):
        other = services.do_create_zone(actor=customer, data={"name": "other.example"})
        add(other, customer, name="www", type="A", content="10.0.0.7")
        client = login(customer)
        url = f"/api/v1/zones/{zone.uuid}/records/"
        resp = client.post(
            url, {"name": "www", "type": "A", "content": "10.0.0.1"}, "application/json"
        )
        assert resp.status_code == 201, resp.content
        assert Record.objects.get(uuid=resp.json()["uuid"]).zone == zone
        bad = client.post(url, {"name": "www", "type": "A", "content": "x"}, "application/json")
        assert bad.status_code == 400 and "content" in bad.json()
        listed = client.get(url).json()["results"]
        assert [(r["name"], r["content"]) for r in listed] == [("www", "10.0.0.1")]  # not other's
        one = listed[0]["uuid"]
        assert client.get(f"{url}{one}/").status_code == 200
        assert client.get(f"/api/v1/zones/{other.uuid}/records/{one}/").status_code == 404
        # Someone else: the zone is out of reach, whatever the method.
        outsider = login(mallory)
        assert outsider.get(url).status_code == 404
        assert (
            outsider.post(
                url, {"name": "x", "type": "A", "content": "10.0.0.2"}, "application/json"
            ).status_code
            == 404
        )
        assert (
            outsider.post(f"{url}bulk-delete/", {"records": [one]}, "application/json").status_code
            == 404
        )
        assert Record.objects.filter(zone=zone).count() == 1

    def test_bulk_delete_is_one_change(self, zone, customer, django_capture_on_commit_callbacks):
        made = [add(zone, customer, name=f"h{i}", type="A", content="10.0.0.1") for i in range(5)]
        zone.refresh_from_db()
        serial = zone.serial
        client = login(customer)
        url = f"/api/v1/zones/{zone.uuid}/records/bulk-delete/"
        resp = client.post(url, {"records": [str(r.uuid) for r in made[:3]]}, "application/json")
        assert resp.status_code == 200 and resp.json() == {"deleted": 3}
        zone.refresh_from_db()
        assert zone.serial > serial
        assert sorted(Record.objects.filter(zone=zone).values_list("name", flat=True)) == [
            "h3",
            "h4",
        ]
        assert client.post(url, {"records": ["nope"]}, "application/json").status_code == 400
        assert client.post(url, {"records": []}, "application/json").status_code == 400

        # The portal: ticked records of this zone only (a uuid of another zone is ignored).
        other = services.do_create_zone(actor=customer, data={"name": "other.example"})
        theirs = add(other, customer, name="keep", type="A", content="10.0.0.9")
        page = client.get(zone.get_absolute_url()).content.decode()
        assert 'form="bulk-delete"' in page and f'value="{made[3].uuid}"' in page
        resp = client.post(
            f"/dns/{zone.uuid}/records/delete/", {"records": [str(made[3].uuid), str(theirs.uuid)]}
        )
        assert resp.status_code == 302
        assert list(Record.objects.filter(zone=zone).values_list("name", flat=True)) == ["h4"]
        assert Record.objects.filter(pk=theirs.pk).exists()
        assert login(customer).post(f"/dns/{zone.uuid}/records/delete/", {}).status_code == 302
