"""Zones published to a real BIND (TSIG-signed RFC 2136 updates, rndc addzone/delzone) and a
real PowerDNS (HTTP API, gsqlite3), each a private instance on loopback; what they serve is
read back by AXFR and DNS queries with dnspython, independently of the panel."""

from __future__ import annotations

import tempfile
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.tsig
import dns.tsigkeyring
import dns.update
import pytest

from core.models import Operation
from dns import services
from dns.models import Nameserver, NameserverGroup, PublishedRRSet, Record, Zone
from dns.zonefiles import do_import_axfr, do_import_zone_file, export_zone_file
from tests.integration.dns_servers import (
    PanelBind,
    PowerDns,
    ask,
    axfr,
    remove_powerdns,
    start_panel_bind,
    start_powerdns,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


@pytest.fixture(scope="module")
def bind():
    from tests.integration.bind import remove

    daemon = start_panel_bind(Path(tempfile.mkdtemp(prefix="uhp-dns-bind-")))
    yield daemon
    remove(daemon)


@pytest.fixture(scope="module")
def pdns():
    server = start_powerdns(Path(tempfile.mkdtemp(prefix="uhp-dns-pdns-")))
    yield server
    remove_powerdns(server)


def bind_nameserver(bind: PanelBind, group) -> Nameserver:
    return services.do_save_nameserver(
        actor=None,
        data={
            "group": group,
            "hostname": "ns1.example.net",
            "kind": "bind",
            "host": bind.host,
            "port": bind.port,
            "tsig_key_name": bind.key_name,
            "tsig_secret": bind.secret,
            "rndc_port": bind.control_port,
            "rndc_secret": bind.rndc_secret,
            "zone_dir": str(bind.zone_dir),
        },
    )


def pdns_nameserver(pdns: PowerDns, group) -> Nameserver:
    return services.do_save_nameserver(
        actor=None,
        data={
            "group": group,
            "hostname": "ns2.example.net",
            "kind": "powerdns",
            "host": pdns.host,
            "port": pdns.port,
            "api_url": pdns.api_url,
            "api_key": pdns.api_key,
        },
    )


@pytest.fixture(params=["bind", "powerdns"])
def server(request, bind, pdns, db):
    group = NameserverGroup.objects.create(name="ns", is_default=True)
    if request.param == "bind":
        ns = bind_nameserver(bind, group)
        tsig = {
            "keyring": bind.keyring(),
            "keyname": bind.key_name,
            "keyalgorithm": dns.tsig.HMAC_SHA256,
        }
        return ns, bind, tsig
    return pdns_nameserver(pdns, group), pdns, {}


_count = iter(range(10_000))


def new_zone_name(kind: str) -> str:
    return f"z{next(_count)}-{kind}.test"


def ops_since(mark: int):
    return list(Operation.objects.filter(pk__gt=mark).order_by("pk"))


def mark() -> int:
    return Operation.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def run(capture, fn, *args, **kwargs):
    before = mark()
    with capture(execute=True):
        result = fn(*args, **kwargs)
    ops = ops_since(before)
    for op in ops:
        op.refresh_from_db()
    return result, ops


def served(host, port, zone, tsig):
    return axfr(host, port, zone, **tsig)


def panel_view(zone: Zone) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for r in Record.objects.filter(zone=zone):
        ttl = r.ttl if r.ttl is not None else zone.default_ttl
        out.setdefault(f"{r.name} {r.type}", set()).add(f"{ttl} {r.content}")
    return out


def test_publish_change_and_remove(server, customer, q_sync, django_capture_on_commit_callbacks):
    ns, daemon, tsig = server
    capture = django_capture_on_commit_callbacks
    name = new_zone_name(ns.kind)
    zone, ops = run(capture, services.do_create_zone, actor=customer, data={"name": name})
    assert [op.state for op in ops] == ["succeeded"], [op.error for op in ops]
    zone.refresh_from_db()
    assert zone.status == Zone.Status.PUBLISHED
    soa = ask(daemon.host, daemon.port, f"{name}.", "SOA")
    assert soa[0].serial == zone.serial

    records = [
        ("www", "A", "10.0.0.1"),
        ("www", "AAAA", "2001:db8::1"),
        ("@", "MX", "10 mail"),
        ("mail", "A", "10.0.0.2"),
        ("alias", "CNAME", "www"),
        ("_sip._tcp", "SRV", "0 5 5060 sip.example.net."),
        ("@", "CAA", '0 issue "letsencrypt.org"'),
        ("dkim._domainkey", "TXT", "v=DKIM1; p=" + "A" * 400),
        ("sub", "NS", "ns.elsewhere.example."),
    ]
    for rname, rdtype, content in records:
        _rec, ops = run(
            capture,
            services.do_create_record,
            zone,
            actor=customer,
            data={"name": rname, "type": rdtype, "content": content},
        )
        assert [op.state for op in ops] == ["succeeded"], [op.error for op in ops]
    zone.refresh_from_db()
    assert zone.status == Zone.Status.PUBLISHED, zone.status_message
    assert served(daemon.host, daemon.port, name, tsig) == panel_view(zone)
    assert ask(daemon.host, daemon.port, f"www.{name}.", "A")[0].address == "10.0.0.1"

    # One change: the zone's SOA and one record set, nothing else read or sent.
    www = Record.objects.get(zone=zone, name="www", type="A")
    _r, ops = run(
        capture, services.do_update_record, www, actor=customer, data={"content": "10.0.0.9"}
    )
    assert ops[0].state == "succeeded" and ops[0].message == "2 changed, 0 unchanged"
    assert ask(daemon.host, daemon.port, f"www.{name}.", "A")[0].address == "10.0.0.9"
    zone.refresh_from_db()
    assert ask(daemon.host, daemon.port, f"{name}.", "SOA")[0].serial == zone.serial

    # Publishing again with nothing changed sends nothing.
    _r, ops = run(capture, services.publish_zone, zone, actor=customer)
    assert ops[0].state == "succeeded" and ops[0].message.startswith("0 changed"), ops[0].message

    # Deleting a record set and the zone.
    _r, ops = run(capture, services.do_delete_record, www, actor=customer)
    assert ops[0].state == "succeeded"
    assert ask(daemon.host, daemon.port, f"www.{name}.", "A") is None
    _r, ops = run(capture, services.do_delete_zone, zone, actor=customer)
    assert ops[0].state == "succeeded", ops[0].error
    assert ask(daemon.host, daemon.port, f"{name}.", "SOA") is None
    assert not PublishedRRSet.objects.filter(zone_name=name).exists()


def test_a_hand_edit_is_detected_not_overwritten(
    server, customer, q_sync, django_capture_on_commit_callbacks
):
    ns, daemon, tsig = server
    capture = django_capture_on_commit_callbacks
    name = new_zone_name(ns.kind)
    zone, _ops = run(capture, services.do_create_zone, actor=customer, data={"name": name})
    rec, _ops = run(
        capture,
        services.do_create_record,
        zone,
        actor=customer,
        data={"name": "www", "type": "A", "content": "10.0.0.1"},
    )
    # Someone changes the record on the server directly.
    if ns.kind == "bind":
        msg = dns.update.UpdateMessage(
            f"{name}.", keyring=daemon.keyring(), keyname=daemon.key_name
        )
        msg.replace("www", 300, "A", "10.6.6.6")
        dns.query.tcp(msg, daemon.host, port=daemon.port, timeout=3)
    else:
        from dns.providers import PowerDns

        PowerDns(ns)._call(
            "PATCH",
            f"/zones/{name}.",
            {
                "rrsets": [
                    {
                        "name": f"www.{name}.",
                        "type": "A",
                        "ttl": 300,
                        "changetype": "REPLACE",
                        "records": [{"content": "10.6.6.6", "disabled": False}],
                    }
                ]
            },
        )
    _r, ops = run(
        capture, services.do_update_record, rec, actor=customer, data={"content": "10.0.0.2"}
    )
    zone.refresh_from_db()
    assert zone.status == Zone.Status.ERROR and "changed on the nameserver" in zone.status_message
    assert ask(daemon.host, daemon.port, f"www.{name}.", "A")[0].address == "10.6.6.6"
    # Publishing again after the error makes the server serve the panel's records.
    _r, ops = run(capture, services.publish_zone, zone, actor=customer)
    zone.refresh_from_db()
    assert zone.status == Zone.Status.PUBLISHED, zone.status_message
    assert ask(daemon.host, daemon.port, f"www.{name}.", "A")[0].address == "10.0.0.2"


def test_imported_zone_file_is_served_exactly(
    server, customer, q_sync, django_capture_on_commit_callbacks
):
    ns, daemon, tsig = server
    capture = django_capture_on_commit_callbacks
    name = new_zone_name(ns.kind)
    zone, _ops = run(capture, services.do_create_zone, actor=customer, data={"name": name})
    text = "\n".join(
        ["$TTL 600", "@ IN SOA ns. h. 1 2 3 4 5", "@ IN NS ns1.example.net."]
        + [f"h{i} IN A 10.1.{i // 250}.{i % 250 + 1}" for i in range(600)]
        + ['t 300 IN TXT "hello world"', "@ IN MX 5 h1"]
    )
    _r, ops = run(capture, do_import_zone_file, zone, text, actor=customer)
    assert ops[0].state == "succeeded", ops[0].error
    zone.refresh_from_db()
    assert zone.status == Zone.Status.PUBLISHED, zone.status_message
    assert served(daemon.host, daemon.port, name, tsig) == panel_view(zone)
    assert len(panel_view(zone)) == 602
    exported = export_zone_file(zone)
    assert "h599 600 IN A 10.1.2.100" in exported


def test_axfr_import_from_a_server(pdns, admin_user, q_sync, django_capture_on_commit_callbacks):
    """A zone served elsewhere (made on PowerDNS through its API by hand) is transferred in."""
    from dns.providers import PowerDns as Api
    from dns.providers import ZoneState
    from dns.zonefiles import do_import_axfr

    ns = Nameserver(
        hostname="x", kind="powerdns", host=pdns.host, api_url=pdns.api_url, api_key=pdns.api_key
    )
    name = new_zone_name("axfr")
    api = Api(ns)
    api.create_zone(
        name, ZoneState("ns1.example.net.", "h.example.net.", 7, 1, 2, 3, 4, 300, ("ns1.x.",))
    )
    rrsets = [
        {
            "name": f"{h}.{name}.",
            "type": "A",
            "ttl": 60,
            "changetype": "REPLACE",
            "records": [{"content": f"10.9.0.{i}", "disabled": False}],
        }
        for i, h in enumerate(["a", "b", "c"], start=1)
    ]
    rrsets.append(
        {
            "name": f"{name}.",
            "type": "TXT",
            "ttl": 300,
            "changetype": "REPLACE",
            "records": [{"content": '"v=spf1 -all"', "disabled": False}],
        }
    )
    api._call("PATCH", f"/zones/{name}.", {"rrsets": rrsets})
    zone = services.do_create_zone(actor=admin_user, data={"name": name})
    with django_capture_on_commit_callbacks(execute=True):
        op = do_import_axfr(zone, pdns.host, pdns.port, actor=admin_user)
    op.refresh_from_db()
    assert op.state == "succeeded", op.error
    assert panel_view(zone) == {
        "a A": {"60 10.9.0.1"},
        "b A": {"60 10.9.0.2"},
        "c A": {"60 10.9.0.3"},
        "@ TXT": {'300 "v=spf1 -all"'},
    }
    # A customer may not make the panel transfer from its own network.
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        do_import_axfr(zone, "127.0.0.1", 53, actor=zone.owner if False else _customer())


def _customer():
    from tests.conftest import make_user

    return make_user("axfr-customer@example.com", "customer")


def test_reverse_zone_from_a_template_with_vanity_nameservers(
    server, admin_user, q_sync, django_capture_on_commit_callbacks
):
    """A reverse zone made from an IP range, its PTR records from a template with
    variables, served by the group under its vanity NS names."""
    from dns.models import ZoneTemplate

    ns, daemon, _tsig = server
    capture = django_capture_on_commit_callbacks
    group = ns.group
    services.do_save_group(
        actor=admin_user,
        group=group,
        data={"vanity_nameservers": "NS1.Brand.example\nns2.brand.example"},
    )
    template = services.do_save_template(
        actor=admin_user,
        data={
            "name": f"ptr-{ns.kind}",
            "records": [
                {"name": "{server_ip}", "type": "PTR", "content": "server.brand.example."},
                {"name": "9", "type": "PTR", "content": "mail.brand.example."},
                {"name": "@", "type": "TXT", "content": "reverse of {zone}"},
            ],
        },
    )
    third = next(_count) % 250
    zone, ops = run(
        capture,
        services.do_create_zone,
        actor=admin_user,
        data={
            "network": f"10.77.{third}.0/24",
            "template": template,
            "variables": {"server_ip": f"10.77.{third}.5"},
        },
    )
    assert zone.name == f"{third}.77.10.in-addr.arpa"
    assert ops and all(op.state == "succeeded" for op in ops), [op.error for op in ops]
    zone.refresh_from_db()
    assert zone.status == Zone.Status.PUBLISHED, zone.status_message
    ptr = ask(daemon.host, daemon.port, f"5.{zone.name}.", "PTR")
    assert {r.to_text() for r in ptr} == {"server.brand.example."}
    txt = ask(daemon.host, daemon.port, f"{zone.name}.", "TXT")
    assert {r.to_text() for r in txt} == {f'"reverse of {zone.name}"'}
    assert {r.to_text() for r in ask(daemon.host, daemon.port, f"9.{zone.name}.", "PTR")} == {
        "mail.brand.example."
    }
    apex_ns = ask(daemon.host, daemon.port, f"{zone.name}.", "NS")
    assert {r.to_text() for r in apex_ns} == {"ns1.brand.example.", "ns2.brand.example."}
    assert ZoneTemplate.objects.filter(pk=template.pk).exists()


@pytest.fixture(scope="module")
def parent():
    """A BIND serving the parent zone (example.test) where delegations are written."""
    from tests.integration.bind import remove, start_bind

    daemon = start_bind(Path(tempfile.mkdtemp(prefix="uhp-dns-parent-")))
    yield daemon
    remove(daemon)


def _update(daemon, zone: str, *changes) -> None:
    msg = dns.update.UpdateMessage(
        zone, keyring=daemon.keyring(), keyname=daemon.key_name, keyalgorithm=dns.tsig.HMAC_SHA256
    )
    for how, *args in changes:
        getattr(msg, how)(*args)
    response = dns.query.tcp(msg, daemon.host, port=daemon.port, timeout=5)
    assert response.rcode() == 0, response


def test_ns_verification_against_parent_and_secondary(
    bind, pdns, parent, admin_user, q_sync, django_capture_on_commit_callbacks
):
    """Delegation at a real parent BIND and serials at the group's BIND (primary) and
    PowerDNS (secondary): matching, a parent delegating elsewhere, serials that differ."""
    from dns.nscheck import check_zone, mismatched_zones

    group = NameserverGroup.objects.create(name="checked")
    bind_nameserver(bind, group)
    secondary = pdns_nameserver(pdns, group)
    Nameserver.objects.filter(pk=secondary.pk).update(primary=False)
    name = f"c{next(_count)}.example.test"
    zone, ops = run(
        django_capture_on_commit_callbacks,
        services.do_create_zone,
        actor=admin_user,
        data={"name": name, "group": group},
    )
    assert len(ops) == 2 and all(op.state == "succeeded" for op in ops), [o.error for o in ops]
    zone.refresh_from_db()
    here = [(parent.host, parent.port)]
    label = name.split(".")[0]
    _update(parent, "example.test.", ("add", label, 300, "NS", "ns1.example.net."))
    _update(parent, "example.test.", ("add", label, 300, "NS", "ns2.example.net."))

    result = check_zone(zone, parent=here)
    assert result.status == Zone.NsStatus.OK, result.problems
    assert result.parent_ns == {"ns1.example.net.", "ns2.example.net."}
    assert len(set(result.serials.values())) == 1
    zone.refresh_from_db()
    assert zone.ns_status == "ok" and zone.ns_checked_at and not mismatched_zones().exists()

    _update(parent, "example.test.", ("delete", label, "NS"))
    _update(parent, "example.test.", ("add", label, 300, "NS", "ns9.elsewhere.example."))
    result = check_zone(zone, parent=here)
    assert result.status == Zone.NsStatus.MISMATCH
    assert "delegates to ns9.elsewhere.example." in result.message
    assert list(mismatched_zones()) == [zone]

    _update(parent, "example.test.", ("delete", label, "NS"))
    _update(parent, "example.test.", ("add", label, 300, "NS", "ns1.example.net."))
    _update(parent, "example.test.", ("add", label, 300, "NS", "ns2.example.net."))
    assert check_zone(zone, parent=here).status == Zone.NsStatus.OK
    # A change made on the primary alone: the secondary's serial no longer matches.
    _update(bind, f"{name}.", ("add", "stray", 300, "A", "10.0.0.9"))
    result = check_zone(zone, parent=here)
    assert result.status == Zone.NsStatus.MISMATCH
    assert "different serials" in result.message, result.message


def test_moving_a_zone_to_other_nameservers(
    bind, pdns, admin_user, q_sync, django_capture_on_commit_callbacks
):
    """From a BIND group to a PowerDNS group: PowerDNS serves every record, with its own
    group's NS, and BIND no longer serves the zone."""
    capture = django_capture_on_commit_callbacks
    old = NameserverGroup.objects.create(name="old", is_default=True)
    new = NameserverGroup.objects.create(name="new")
    bind_nameserver(bind, old)
    pdns_nameserver(pdns, new)
    name = new_zone_name("move")
    zone, ops = run(capture, services.do_create_zone, actor=admin_user, data={"name": name})
    assert [op.state for op in ops] == ["succeeded"], [op.error for op in ops]
    for rname, content in (("www", "10.0.0.1"), ("mail", "10.0.0.2")):
        run(
            capture,
            services.do_create_record,
            zone,
            actor=admin_user,
            data={"name": rname, "type": "A", "content": content},
        )
    assert ask(bind.host, bind.port, f"www.{name}.", "A")[0].address == "10.0.0.1"

    zone, ops = run(capture, services.do_update_zone, zone, actor=admin_user, data={"group": new})
    assert sorted(op.state for op in ops) == ["succeeded", "succeeded"], [op.error for op in ops]
    zone.refresh_from_db()
    assert zone.status == Zone.Status.PUBLISHED, zone.status_message
    assert served(pdns.host, pdns.port, name, {}) == panel_view(zone)
    assert ask(pdns.host, pdns.port, f"mail.{name}.", "A")[0].address == "10.0.0.2"
    assert {r.target.to_text() for r in ask(pdns.host, pdns.port, f"{name}.", "NS")} == {
        "ns2.example.net."
    }
    assert ask(bind.host, bind.port, f"{name}.", "SOA") is None
    assert not PublishedRRSet.objects.filter(zone_name=name, nameserver__group=old).exists()


def test_axfr_with_tsig(parent, admin_user, customer, q_sync, django_capture_on_commit_callbacks):
    """A server that transfers only to a TSIG key: refused without it (the Operation says the
    server's words), imported with it through the import page; the secret is never stored
    in clear."""
    from core.models import Operation
    from tests.conftest import login

    _update(parent, "example.test.", ("replace", "tsig-www.example.test.", 300, "A", "10.7.7.7"))
    zone = services.do_create_zone(actor=admin_user, data={"name": "example.test"})
    client = login(admin_user)
    page = f"/dns/{zone.uuid}/import/"
    assert 'data-testid="axfr-form"' in client.get(page).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            page, {"source": "axfr", "host": parent.host, "port": parent.port, "replace": "on"}
        )
    unsigned = Operation.objects.filter(kind="dns.import").latest("id")
    assert unsigned.state == "failed" and "example.test" in unsigned.error, unsigned.error
    assert not Record.objects.filter(zone=zone).exists()

    form = {
        "source": "axfr",
        "host": parent.host,
        "port": parent.port,
        "tsig_name": parent.key_name,
        "tsig_secret": parent.secret,
        "tsig_algorithm": "hmac-sha256",
        "replace": "on",
    }
    assert client.post(page, {**form, "tsig_secret": "not base64!"}).status_code == 400
    with django_capture_on_commit_callbacks(execute=True):
        resp = client.post(page, form)
    signed = Operation.objects.filter(kind="dns.import").latest("id")
    assert resp.status_code == 302 and resp["Location"] == signed.get_absolute_url()
    assert signed.state == "succeeded", signed.error
    assert Record.objects.get(zone=zone, name="tsig-www").content == "10.7.7.7"
    assert parent.secret not in repr(signed.args)  # only encrypted in the Operation
    # The API does the same; a customer may not point the panel at its own network.
    customer_zone = services.do_create_zone(actor=customer, data={"name": "cust-axfr.test"})
    resp = login(customer).post(
        f"/api/v1/zones/{customer_zone.uuid}/import-axfr/",
        {"host": "127.0.0.1", "port": 53},
        "application/json",
    )
    assert resp.status_code == 400 and "host" in resp.json()


def test_dnssec_chain_at_the_parent(
    bind, parent, admin_user, q_sync, django_capture_on_commit_callbacks
):
    """The NS check asks the real parent for the zone's DS: none yet (waiting), one matching
    the zone's key (chain complete), one matching nothing, or a DS left for an unsigned zone
    (both reported, the zone a mismatch so its alert fires)."""
    import dns.dnssec
    import dns.rdata
    import dns.rdataclass
    from cryptography.hazmat.primitives.asymmetric import ec

    from dns.nscheck import check_zone

    group = NameserverGroup.objects.create(name="chain")
    bind_nameserver(bind, group)
    name = f"s{next(_count)}.example.test"
    zone, _ops = run(
        django_capture_on_commit_callbacks,
        services.do_create_zone,
        actor=admin_user,
        data={"name": name, "group": group},
    )
    label = name.split(".")[0]
    _update(parent, "example.test.", ("add", label, 300, "NS", "ns1.example.net."))

    def ds_for() -> str:
        private = ec.generate_private_key(ec.SECP256R1())
        dnskey = dns.dnssec.make_dnskey(
            private.public_key(), dns.dnssec.Algorithm.ECDSAP256SHA256, flags=257
        )
        return dns.dnssec.make_ds(f"{name}.", dnskey, "SHA256").to_text()

    ours, other = ds_for(), ds_for()  # two keys: the zone's, and someone else's
    Zone.objects.filter(pk=zone.pk).update(dnssec=True, ds_records=ours)
    zone.refresh_from_db()
    here = [(parent.host, parent.port)]
    result = check_zone(zone, parent=here)
    assert result.ds_status == "waiting" and result.status == Zone.NsStatus.OK, result.problems

    _update(parent, "example.test.", ("add", label, 300, "DS", ours))
    result = check_zone(zone, parent=here)
    assert result.ds_status == "ok" and result.status == Zone.NsStatus.OK, result.problems
    zone.refresh_from_db()
    assert zone.ds_status == "ok"
    page = login_page(admin_user, zone)
    assert "Chain of trust complete" in page

    _update(parent, "example.test.", ("delete", label, "DS"), ("add", label, 300, "DS", other))
    result = check_zone(zone, parent=here)
    assert result.ds_status == "mismatch" and result.status == Zone.NsStatus.MISMATCH
    assert "match none of the zone's keys" in result.message

    Zone.objects.filter(pk=zone.pk).update(dnssec=False, ds_records="")
    zone.refresh_from_db()
    result = check_zone(zone, parent=here)
    assert result.ds_status == "mismatch" and "not signed" in result.message


def login_page(user, zone) -> str:
    from tests.conftest import login

    return login(user).get(zone.get_absolute_url()).content.decode()


def test_ns_check_with_an_unreachable_parent_is_an_error_not_ok(
    bind, admin_user, q_sync, django_capture_on_commit_callbacks
):
    """A parent server that does not answer: the zone is `error` with the reason (and so
    listed for the NS alert), never `ok` on the strength of its own nameservers alone."""
    from dns.nscheck import check_zone, mismatched_zones
    from tests.integration.conftest import free_port

    group = NameserverGroup.objects.create(name="lonely")
    bind_nameserver(bind, group)
    zone, _ops = run(
        django_capture_on_commit_callbacks,
        services.do_create_zone,
        actor=admin_user,
        data={"name": f"u{next(_count)}.example.test", "group": group},
    )
    silent = free_port()  # nothing listens there
    result = check_zone(zone, parent=[("127.0.0.1", silent)])
    assert result.status == Zone.NsStatus.ERROR
    assert "Parent server 127.0.0.1 did not answer" in result.message
    zone.refresh_from_db()
    assert zone.ns_status == "error" and list(mismatched_zones()) == [zone]


def test_bind_on_a_managed_server_is_driven_through_its_transport(
    bind, ssh_server, admin_user, monkeypatch, q_sync, django_capture_on_commit_callbacks
):
    """With a server set, rndc addzone/delzone run on that server over SSH (the key on
    rndc's stdin) and the first zone file is written there; nothing runs on the panel."""
    import subprocess as real_subprocess

    def no_local(argv, *args, **kwargs):
        raise AssertionError(f"ran on the panel's host: {argv}")

    monkeypatch.setattr(
        "dns.providers.subprocess",
        type(
            "S",
            (),
            {"run": staticmethod(no_local), "TimeoutExpired": real_subprocess.TimeoutExpired},
        ),
    )
    group = NameserverGroup.objects.create(name="managed", is_default=True)
    ns = bind_nameserver(bind, group)
    services.do_save_nameserver(actor=admin_user, data={"server": ssh_server}, nameserver=ns)
    capture = django_capture_on_commit_callbacks
    name = new_zone_name("remote")
    zone, ops = run(capture, services.do_create_zone, actor=admin_user, data={"name": name})
    assert [op.state for op in ops] == ["succeeded"], [op.error for op in ops]
    run(
        capture,
        services.do_create_record,
        zone,
        actor=admin_user,
        data={"name": "www", "type": "A", "content": "10.0.0.3"},
    )
    assert ask(bind.host, bind.port, f"www.{name}.", "A")[0].address == "10.0.0.3"
    assert (bind.zone_dir / f"{name}.db").exists()
    _r, ops = run(capture, services.do_delete_zone, zone, actor=admin_user)
    assert ops[0].state == "succeeded", ops[0].error
    assert ask(bind.host, bind.port, f"{name}.", "SOA") is None

    # A wrong control key: BIND's own words come back through the transport.
    Nameserver.objects.filter(pk=ns.pk).update(
        rndc_secret="d3Jvbmcgd3Jvbmcgd3Jvbmcgd3Jvbmcgd3Jvbmc="
    )
    other = new_zone_name("remote")
    zone, ops = run(capture, services.do_create_zone, actor=admin_user, data={"name": other})
    assert ops[0].state == "failed" and "rndc addzone" in ops[0].error, ops[0].error


def _pdns_zone(pdns: PowerDns, name: str) -> dict:
    import json
    import urllib.request

    req = urllib.request.Request(
        f"{pdns.api_url}/api/v1/servers/localhost/zones/{name}.?rrsets=false"
    )
    req.add_header("X-API-Key", pdns.api_key)
    with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - loopback http
        return json.loads(resp.read())


def test_powerdns_unsigned_zone_is_not_rectified_per_change(
    pdns, customer, q_sync, django_capture_on_commit_callbacks
):
    """One change in a big unsigned zone must not make PowerDNS rectify the whole zone
    (api_rectify off), and names at and below a delegation still answer as referrals."""
    capture = django_capture_on_commit_callbacks
    pdns_nameserver(pdns, NameserverGroup.objects.create(name="ns", is_default=True))
    name = new_zone_name("rectify")
    zone, _ops = run(capture, services.do_create_zone, actor=customer, data={"name": name})
    assert _pdns_zone(pdns, name)["api_rectify"] is False
    for rname, rdtype, content in [
        ("www", "A", "10.0.0.1"),
        ("sub", "NS", "ns.sub"),
        ("ns.sub", "A", "10.0.0.53"),
    ]:
        _r, ops = run(
            capture,
            services.do_create_record,
            zone,
            actor=customer,
            data={"name": rname, "type": rdtype, "content": content},
        )
        assert [op.state for op in ops] == ["succeeded"], [op.error for op in ops]

    q = dns.message.make_query(f"www.sub.{name}.", "A")
    answer = dns.query.tcp(q, pdns.host, port=pdns.port, timeout=3)
    assert not answer.answer and not answer.flags & dns.flags.AA  # a referral
    assert [rr.to_text() for rrs in answer.authority for rr in rrs] == [f"ns.sub.{name}."]
    glue = dns.query.tcp(dns.message.make_query(f"ns.sub.{name}.", "A"), pdns.host, port=pdns.port)
    assert not glue.answer and not glue.flags & dns.flags.AA  # glue is not zone data
    assert ask(pdns.host, pdns.port, f"www.{name}.", "A")[0].address == "10.0.0.1"


@pytest.mark.parametrize("ran", [True, False], ids=["dropped-after-addzone", "dropped-before"])
def test_bind_over_ssh_dropped_during_addzone_fails_then_the_next_publish_serves_it(
    bind, ssh_server, admin_user, monkeypatch, ran, q_sync, django_capture_on_commit_callbacks
):
    """The SSH connection to the nameserver's server breaks while `rndc addzone` runs (its
    answer lost, whether or not it ran): the operation fails saying so, nothing of the zone
    is left on BIND (an added zone is removed again), the zone is not called published, and
    the next change publishes the whole zone."""
    from tests.integration.faults import drop_after

    group = NameserverGroup.objects.create(name="managed", is_default=True)
    ns = bind_nameserver(bind, group)
    services.do_save_nameserver(actor=admin_user, data={"server": ssh_server}, nameserver=ns)
    dropped = drop_after(monkeypatch, lambda argv: "addzone" in argv, run_it=ran)
    capture = django_capture_on_commit_callbacks
    name = new_zone_name("dropped")
    zone, ops = run(capture, services.do_create_zone, actor=admin_user, data={"name": name})
    assert dropped and [op.state for op in ops] == ["failed"], [op.error for op in ops]
    assert "connection" in ops[0].error.lower(), ops[0].error
    zone.refresh_from_db()
    assert zone.status != Zone.Status.PUBLISHED
    assert ask(bind.host, bind.port, f"{name}.", "SOA") is None

    _r, ops = run(
        capture,
        services.do_create_record,
        zone,
        actor=admin_user,
        data={"name": "www", "type": "A", "content": "10.0.0.4"},
    )
    assert [op.state for op in ops] == ["succeeded"], [op.error for op in ops]
    zone.refresh_from_db()
    assert zone.status == Zone.Status.PUBLISHED, zone.status_message
    assert ask(bind.host, bind.port, f"www.{name}.", "A")[0].address == "10.0.0.4"
    assert ask(bind.host, bind.port, f"{name}.", "SOA")[0].serial == zone.serial


def test_a_new_zone_bind_refuses_whole_is_created_bare_and_its_records_sent_apart(
    bind, customer, q_sync, django_capture_on_commit_callbacks
):
    """A new zone goes to BIND as one zone file with its records (the serial served is the
    zone's). A name with a CNAME and other data makes BIND refuse to load that file: the
    zone is then created bare and its record sets sent as updates, so the
    refused record set fails alone and the rest is served."""
    from dns.models import PublishedRRSet

    capture = django_capture_on_commit_callbacks
    ns = bind_nameserver(bind, NameserverGroup.objects.create(name="ns", is_default=True))
    name = new_zone_name("whole")
    zone = Zone.objects.create(name=name, owner=customer, group=ns.group)
    Record.objects.create(zone=zone, name="www", type="A", content="10.0.0.7")
    # The panel's validation refuses this pair; planted here to make BIND refuse the file.
    Record.objects.create(zone=zone, name="alias", type="CNAME", content=f"www.{name}.")
    Record.objects.create(zone=zone, name="alias", type="TXT", content='"x"')
    _r, ops = run(capture, services.publish_zone, zone, actor=customer)
    assert ops[0].message.endswith(f"1 failed: rrset:{name}:alias/TXT"), ops[0].message
    zone.refresh_from_db()
    assert zone.status == Zone.Status.ERROR and "alias TXT" in zone.status_message
    assert ask(bind.host, bind.port, f"www.{name}.", "A")[0].address == "10.0.0.7"
    assert ask(bind.host, bind.port, f"alias.{name}.", "CNAME") is not None
    published = PublishedRRSet.objects.filter(zone_name=name, nameserver=ns)
    assert {(p.name, p.type) for p in published} == {("@", "SOA"), ("www", "A"), ("alias", "CNAME")}


def _cutting_proxy(target_host: str, target_port: int, cut_after: int) -> tuple[int, list[int]]:
    """A TCP relay to a real server that passes the server's first ``cut_after`` bytes of
    its answer and then drops both connections: a transfer broken mid-way, for real."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    sent = [0]

    def relay() -> None:
        client, _ = listener.accept()
        upstream = socket.create_connection((target_host, target_port), timeout=5)

        def upward() -> None:
            try:
                while data := client.recv(65536):
                    upstream.sendall(data)
            except OSError:
                pass

        threading.Thread(target=upward, daemon=True).start()
        try:
            while sent[0] < cut_after and (data := upstream.recv(4096)):
                part = data[: cut_after - sent[0]]
                client.sendall(part)
                sent[0] += len(part)
        finally:
            for sock in (client, upstream, listener):
                sock.close()

    threading.Thread(target=relay, daemon=True).start()
    return listener.getsockname()[1], sent


def test_axfr_dropped_mid_transfer_imports_nothing(
    parent, admin_user, q_sync, django_capture_on_commit_callbacks
):
    """The connection to the server breaks after part of a 1,500-record transfer: the
    operation fails saying so and the zone's records are exactly what they were."""
    names = [f"bulk{i}.example.test." for i in range(1500)]
    for start in range(0, len(names), 500):
        _update(
            parent,
            "example.test.",
            *[
                ("replace", n, 300, "A", f"10.8.{i // 256}.{i % 256}")
                for i, n in enumerate(names[start : start + 500], start)
            ],
        )
    zone = services.do_create_zone(actor=admin_user, data={"name": "example.test"})
    Record.objects.create(zone=zone, name="keep", type="A", content="10.1.1.1")
    before = set(Record.objects.filter(zone=zone).values_list("name", "type", "content"))
    port, sent = _cutting_proxy(parent.host, parent.port, cut_after=20_000)
    tsig = {"name": parent.key_name, "secret": parent.secret, "algorithm": "hmac-sha256"}
    with django_capture_on_commit_callbacks(execute=True):
        op = do_import_axfr(zone, "127.0.0.1", port, actor=admin_user, replace=True, tsig=tsig)
    op.refresh_from_db()
    assert sent[0] == 20_000  # part of the transfer came through before the drop
    assert op.state == "failed" and "transferring example.test" in op.error, op.error
    assert set(Record.objects.filter(zone=zone).values_list("name", "type", "content")) == before
