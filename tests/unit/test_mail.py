"""Mail without the mail programs: validation of every value that reaches a map or a users
file, passwords kept only as hashes, ownership of domains, the plan's mailbox limit, the
API's visibility and the portal's flat query counts. The real Postfix/Dovecot work is in
tests/integration/test_mail.py."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from hypothesis import given
from hypothesis import strategies as st

from core.models import AuditEntry, Operation
from dns.models import Zone
from mail import dnsrecords, passwords, services
from mail.apply import render_maps, render_users
from mail.models import MAPS_UNIT, MailAlias, Mailbox, MailDomain
from mail.validators import clean_destinations, clean_local_part
from servers.models import Server
from tests.conftest import login, queries_for
from websites.models import Plan, Subscription, Website

pytestmark = pytest.mark.django_db
PASSWORD = "correct horse battery"


def subscribe(user, **limits):
    plan = Plan.objects.create(name=f"plan-{user.pk}", **limits)
    Subscription.objects.create(user=user, plan=plan)


@pytest.fixture
def server(reseller):
    return Server.objects.create(name="mx", address="192.0.2.10", owner=reseller)


@pytest.fixture
def domain(customer, server):
    subscribe(customer)
    return services.do_create_mail_domain(
        actor=customer, data={"domain": "shop.example.com", "server": server}
    )


def add_box(domain, actor, local="info", **extra):
    data = {"domain": domain, "local_part": local, "password": PASSWORD, **extra}
    return services.do_create_mailbox(actor=actor, data=data)


class TestValidation:
    @pytest.mark.parametrize(
        "bad", ["with space", '"quoted"', "new\nline", "a:b", "a,b", "", ".dot", "a..b", "x" * 65]
    )
    def test_bad_local_parts_refused(self, domain, customer, bad):
        with pytest.raises(ValidationError) as exc:
            add_box(domain, customer, bad)
        assert "local_part" in exc.value.message_dict
        assert not Mailbox.objects.exists()

    @given(st.text(max_size=70))
    def test_accepted_local_parts_are_plain(self, text):
        try:
            value = clean_local_part(text)
        except ValidationError:
            return
        assert set(value) <= set("abcdefghijklmnopqrstuvwxyz0123456789._-")

    @given(st.lists(st.text(max_size=30), max_size=4))
    def test_accepted_destinations_cannot_add_a_line_or_field(self, items):
        try:
            value = clean_destinations(items)
        except ValidationError:
            return
        for line in value.splitlines():
            assert not set(line) & set(" \t\r,:\"'\\\x00") and line.count("@") == 1

    def test_bad_destinations_refused(self, domain, customer):
        for bad in (["nobody"], ["a b@example.com"], ["x@bad_domain"], []):
            with pytest.raises(ValidationError) as exc:
                services.do_create_alias(
                    actor=customer,
                    data={"domain": domain, "local_part": "sales", "destinations": bad},
                )
            assert "destinations" in exc.value.message_dict

    def test_idn_domain_stored_in_ascii(self, customer, server):
        subscribe(customer)
        d = services.do_create_mail_domain(
            actor=customer, data={"domain": "Bücher.example", "server": server}
        )
        assert d.domain == "xn--bcher-kva.example" and d.display_name == "bücher.example"

    def test_domain_of_another_accounts_zone_refused(self, customer, mallory, server):
        subscribe(customer)
        Zone.objects.create(name="example.org", owner=mallory)
        with pytest.raises(ValidationError) as exc:
            services.do_create_mail_domain(
                actor=customer, data={"domain": "shop.example.org", "server": server}
            )
        assert "another account" in exc.value.message_dict["domain"][0]

    def test_domain_of_another_accounts_website_refused(self, customer, mallory, server):
        subscribe(customer)
        Website.objects.create(domain="their.example.net", server=server, owner=mallory)
        with pytest.raises(ValidationError):
            services.do_create_mail_domain(
                actor=customer, data={"domain": "their.example.net", "server": server}
            )

    def test_server_outside_the_customers_provider_refused(self, mallory, server):
        subscribe(mallory)
        with pytest.raises(ValidationError) as exc:
            services.do_create_mail_domain(
                actor=mallory, data={"domain": "m.example.com", "server": server}
            )
        assert "server" in exc.value.message_dict

    def test_alias_cannot_shadow_a_mailbox(self, domain, customer):
        add_box(domain, customer, "info")
        with pytest.raises(ValidationError):
            services.do_create_alias(
                actor=customer,
                data={"domain": domain, "local_part": "info", "destinations": ["a@b.example"]},
            )


class TestPasswords:
    def test_dkim_key_made_per_domain_and_kept_encrypted(self, domain):
        from django.db import connection as db

        assert domain.dkim_private_key.startswith("-----BEGIN")
        with db.cursor() as cur:
            cur.execute("SELECT dkim_private_key FROM mail_maildomain WHERE id = %s", [domain.pk])
            stored = cur.fetchone()[0]
        assert "PRIVATE KEY" not in stored and domain.dkim_private_key not in stored

    def test_only_a_sha512_crypt_hash_is_stored(self, domain, customer):
        box = add_box(domain, customer)
        assert box.password_hash.startswith("{SHA512-CRYPT}$6$")
        assert passwords.verify_password(PASSWORD, box.password_hash)
        assert not passwords.verify_password("wrong password", box.password_hash)
        stored = Mailbox.objects.filter(pk=box.pk).values_list("password_hash", flat=True)[0]
        assert PASSWORD not in stored
        assert all(PASSWORD not in str(e.changes) for e in AuditEntry.objects.all())

    def test_short_password_refused(self, domain, customer):
        with pytest.raises(ValidationError) as exc:
            services.do_create_mailbox(
                actor=customer, data={"domain": domain, "local_part": "a", "password": "short"}
            )
        assert "password" in exc.value.message_dict

    def test_password_change_audited_without_the_password(self, domain, customer):
        box = add_box(domain, customer)
        services.do_update_mailbox(box, actor=customer, data={"password": "another secret 1"})
        entry = AuditEntry.objects.filter(action="mailbox.update").get()
        assert entry.changes["password"] == ["(hidden)", "(changed)"]
        assert "another secret 1" not in str(entry.changes)


class TestPlanAndApply:
    def test_mailboxes_counted_against_the_plan(self, customer, server):
        subscribe(customer, mailboxes=1)
        d = services.do_create_mail_domain(
            actor=customer, data={"domain": "limited.example.com", "server": server}
        )
        add_box(d, customer, "one")
        with pytest.raises(ValidationError, match="allows 1 mailbox"):
            add_box(d, customer, "two")

    def test_changes_start_an_apply_of_the_domains_units(self, domain, customer):
        from servers.models import DirtyUnit

        add_box(domain, customer)
        units = set(DirtyUnit.objects.filter(server=domain.server).values_list("unit", flat=True))
        assert {domain.unit, MAPS_UNIT} <= units
        assert Operation.objects.filter(kind="server.apply").exists()

    def test_every_change_audited(self, domain, customer):
        box = add_box(domain, customer)
        alias = services.do_create_alias(
            actor=customer,
            data={"domain": domain, "local_part": "sales", "destinations": "info@shop.example.com"},
        )
        services.do_update_mailbox(box, actor=customer, data={"suspended": True})
        services.do_delete_alias(alias, actor=customer)
        actions = set(AuditEntry.objects.values_list("action", flat=True))
        assert {
            "mail_domain.create",
            "mailbox.create",
            "mailbox.update",
            "mail_alias.create",
            "mail_alias.delete",
        } <= actions


class TestRender:
    def test_maps_leave_out_suspended_rows(self, domain, customer):
        add_box(domain, customer, "info")
        off = add_box(domain, customer, "off")
        services.do_update_mailbox(off, actor=customer, data={"suspended": True})
        services.do_create_alias(
            actor=customer,
            data={"domain": domain, "local_part": "fw", "destinations": "x@elsewhere.example"},
        )
        maps = render_maps([domain], list(Mailbox.objects.all()), list(MailAlias.objects.all()))
        assert "shop.example.com OK" in maps["domains"]
        assert "info@shop.example.com shop.example.com/info/" in maps["mailboxes"]
        assert "off@" not in maps["mailboxes"]
        assert "fw@shop.example.com x@elsewhere.example" in maps["aliases"]
        users = render_users(domain, list(Mailbox.objects.order_by("local_part")), "/var/vmail")
        line = [x for x in users.splitlines() if x.startswith("off@")][0]
        assert line.endswith("nologin reason=suspended")

    def test_catch_all_catches_only_addresses_without_a_mailbox(self, domain, customer):
        add_box(domain, customer, "info")
        off = add_box(domain, customer, "off")
        services.do_update_mailbox(off, actor=customer, data={"suspended": True})
        services.do_update_mail_domain(
            domain, actor=customer, data={"catch_all": "info@shop.example.com"}
        )
        assert AuditEntry.objects.filter(action="mail_domain.update").exists()
        domain.refresh_from_db()
        maps = render_maps([domain], list(Mailbox.objects.all()), [])
        lines = maps["aliases"].splitlines()
        assert "@shop.example.com info@shop.example.com" in lines
        assert "info@shop.example.com info@shop.example.com" in lines
        # A suspended mailbox keeps its own entry: its mail is refused, not caught.
        assert "off@shop.example.com off@shop.example.com" in lines

    @pytest.mark.parametrize("bad", ["two@a.example three@b.example", "no-at", "a@b\nc", 5])
    def test_bad_catch_all_refused(self, domain, customer, bad):
        with pytest.raises(ValidationError) as exc:
            services.do_update_mail_domain(domain, actor=customer, data={"catch_all": bad})
        assert "catch_all" in exc.value.message_dict
        domain.refresh_from_db()
        assert domain.catch_all == ""

    def test_senders_map_gives_each_login_only_its_own_domains_addresses(self, domain, customer):
        add_box(domain, customer, "info")
        add_box(domain, customer, "bob")
        off = add_box(domain, customer, "off")
        services.do_update_mailbox(off, actor=customer, data={"suspended": True})
        for local, targets in (("sales", ["info@shop.example.com", "x@elsewhere.example"]),
                               ("out", ["x@elsewhere.example"])):  # fmt: skip
            data = {"domain": domain, "local_part": local, "destinations": targets}
            services.do_create_alias(actor=customer, data=data)
        services.do_update_mail_domain(
            domain, actor=customer, data={"catch_all": "info@shop.example.com"}
        )
        domain.refresh_from_db()
        boxes, aliases = list(Mailbox.objects.all()), list(MailAlias.objects.all())
        lines = render_maps([domain], boxes, aliases)["senders"].splitlines()[1:]
        assert sorted(lines) == [
            "@shop.example.com bob@shop.example.com,info@shop.example.com",
            "bob@shop.example.com bob@shop.example.com",
            "info@shop.example.com info@shop.example.com",
            "sales@shop.example.com info@shop.example.com",
        ]

    def test_a_tampered_row_is_not_rendered(self, domain, customer):
        box = add_box(domain, customer)
        Mailbox.objects.filter(pk=box.pk).update(local_part="evil\nx@y:z")
        with pytest.raises(ValueError):
            render_users(domain, list(Mailbox.objects.all()), "/var/vmail")
        maps = render_maps([domain], list(Mailbox.objects.all()), [])
        assert "evil" not in maps["mailboxes"]


def test_only_mail_servers_get_mail_files(domain, server):
    """A full apply of a server that never had mail domains writes no Postfix maps and no
    OpenDKIM tables (their reloads would fail where no mail server runs); one that had
    domains keeps its maps, emptied, when the last one goes."""
    from mail.apply import MailFiles
    from servers.engine.profile import profile_for
    from servers.models import AppliedFile

    other = Server.objects.create(name="web-only", address="127.0.0.9", owner=server.owner)
    assert list(MailFiles().files(other, profile_for(other), None)) == []
    mail_files = list(MailFiles().files(server, profile_for(server), None))
    assert {f.service for f in mail_files} >= {"postfix", "opendkim"}

    maps = [f for f in mail_files if f.unit == MAPS_UNIT]
    AppliedFile.objects.bulk_create(
        AppliedFile(
            server=server,
            path=f.path,
            sha256="0" * 64,
            mode=0o644,
            owner="root",
            group="root",
            service=f.service,
            unit=f.unit,
            shard="00",
        )  # fmt: skip
        for f in maps
    )
    MailDomain.objects.filter(pk=domain.pk).delete()
    left = list(MailFiles().files(server, profile_for(server), None))
    assert left and {f.unit for f in left} == {MAPS_UNIT}
    assert all(b"shop.example.com" not in f.content for f in left)


class TestSendLimit:
    """The sending limit protects the provider's servers: a customer may not change it."""

    def test_customer_refused_by_the_service_reseller_and_admin_allowed(
        self, domain, customer, reseller, admin_user
    ):
        box = add_box(domain, customer)
        services.do_update_mailbox(box, actor=reseller, data={"send_limit_per_hour": 50})
        box.refresh_from_db()
        assert box.send_limit_per_hour == 50
        with pytest.raises(ValidationError) as exc:
            services.do_update_mailbox(box, actor=customer, data={"send_limit_per_hour": 0})
        assert "send_limit_per_hour" in exc.value.message_dict
        box.refresh_from_db()
        assert box.send_limit_per_hour == 50
        # Unchanged (a whole form sent back) is no change: the rest is saved.
        services.do_update_mailbox(
            box, actor=customer, data={"send_limit_per_hour": 50, "quota_mb": 7}
        )
        services.do_update_mailbox(box, actor=admin_user, data={"send_limit_per_hour": 0})
        box.refresh_from_db()
        assert (box.send_limit_per_hour, box.quota_mb) == (0, 7)

    def test_customer_refused_by_the_api_and_the_form(self, domain, customer, reseller):
        box = add_box(domain, customer)
        services.do_update_mailbox(box, actor=reseller, data={"send_limit_per_hour": 50})
        c = login(customer)
        url = f"/api/v1/mailboxes/{box.uuid}/"
        r = c.patch(url, {"send_limit_per_hour": 0}, content_type="application/json")
        assert r.status_code == 400 and "send_limit_per_hour" in r.json(), r.content
        r = c.patch(url, {"quota_mb": 9}, content_type="application/json")
        assert r.status_code == 200 and r.json()["send_limit_per_hour"] == 50
        page = c.get(f"/mail/mailboxes/{box.uuid}/")
        assert page.status_code == 200
        assert page.context["form"].fields["send_limit_per_hour"].disabled
        r = c.post(
            f"/mail/mailboxes/{box.uuid}/",
            {"quota_mb": 9, "send_limit_per_hour": 0},
        )
        box.refresh_from_db()
        assert box.send_limit_per_hour == 50
        r = login(reseller).patch(url, {"send_limit_per_hour": 5}, content_type="application/json")
        assert r.status_code == 200 and r.json()["send_limit_per_hour"] == 5
        box.refresh_from_db()
        assert box.send_limit_per_hour == 5

    def test_autoreply_dates_through_the_api_and_the_form(self, domain, customer):
        box = add_box(domain, customer)
        c = login(customer)
        url = f"/api/v1/mailboxes/{box.uuid}/"
        r = c.patch(url, {"autoreply_start": "2026-12-10", "autoreply_end": "2026-12-01"},
                    content_type="application/json")  # fmt: skip
        assert r.status_code == 400 and "autoreply_end" in r.json(), r.content
        r = c.patch(url, {"autoreply_start": "2026-12-01", "autoreply_end": "2026-12-10"},
                    content_type="application/json")  # fmt: skip
        assert r.status_code == 200, r.content
        assert (r.json()["autoreply_start"], r.json()["autoreply_end"]) == (
            "2026-12-01", "2026-12-10")  # fmt: skip
        r = c.post(f"/mail/mailboxes/{box.uuid}/", {"quota_mb": 9, "autoreply_start": "",
                                                    "autoreply_end": "2026-12-24"})  # fmt: skip
        assert r.status_code in (200, 302)
        box.refresh_from_db()
        assert (box.autoreply_start, str(box.autoreply_end)) == (None, "2026-12-24")


class TestApi:
    def test_customer_creates_domain_mailbox_alias(self, customer, server):
        subscribe(customer)
        c = login(customer)
        r = c.post(
            "/api/v1/mail-domains/",
            {"domain": "api.example.com", "server": str(server.uuid)},
            content_type="application/json",
        )
        assert r.status_code == 201, r.content
        d = r.json()["uuid"]
        r = c.post(
            "/api/v1/mailboxes/",
            {"domain": d, "local_part": "boss", "password": PASSWORD, "quota_mb": 50},
            content_type="application/json",
        )
        assert r.status_code == 201, r.content
        assert "password" not in r.json() and r.json()["address"] == "boss@api.example.com"
        r = c.post(
            "/api/v1/mail-aliases/",
            {"domain": d, "local_part": "all", "destinations": ["boss@api.example.com"]},
            content_type="application/json",
        )
        assert r.status_code == 201, r.content
        assert r.json()["destinations"] == ["boss@api.example.com"]
        r = c.post(
            "/api/v1/mailboxes/",
            {"domain": d, "local_part": "a b", "password": PASSWORD},
            content_type="application/json",
        )
        assert r.status_code == 400 and "local_part" in r.content.decode()

    def test_outsider_sees_nothing(self, domain, customer, mallory):
        box = add_box(domain, customer)
        c = login(mallory)
        for url in ("/api/v1/mail-domains/", "/api/v1/mailboxes/", "/api/v1/mail-aliases/"):
            assert c.get(url).json()["count"] == 0
        assert c.get(f"/api/v1/mailboxes/{box.uuid}/").status_code == 404
        assert c.get(f"/mail/{domain.uuid}/").status_code == 404
        r = c.post(
            "/api/v1/mailboxes/",
            {"domain": str(domain.uuid), "local_part": "x", "password": PASSWORD},
            content_type="application/json",
        )
        assert r.status_code == 400 and not Mailbox.objects.filter(local_part="x").exists()

    def test_list_query_count_flat(self, customer, server):
        subscribe(customer)
        c = login(customer)

        def count(url):
            return queries_for(c, url)

        d = services.do_create_mail_domain(
            actor=customer, data={"domain": "q0.example.com", "server": server}
        )
        add_box(d, customer, "a")
        urls = ["/mail/", f"/mail/{d.uuid}/", "/api/v1/mail-domains/", "/api/v1/mailboxes/"]
        before = [count(u) for u in urls]
        for i in range(1, 6):
            more = services.do_create_mail_domain(
                actor=customer, data={"domain": f"q{i}.example.com", "server": server}
            )
            add_box(more, customer, "a")
            add_box(d, customer, f"b{i}")
            services.do_create_alias(
                actor=customer,
                data={"domain": d, "local_part": f"al{i}", "destinations": "a@q0.example.com"},
            )
        assert [count(u) for u in urls] == before


class TestPortal:
    def test_customer_adds_a_mailbox_on_the_domain_page(self, domain, customer):
        c = login(customer)
        page = c.get(f"/mail/{domain.uuid}/")
        assert page.status_code == 200 and b"New mailbox" in page.content
        r = c.post(
            f"/mail/{domain.uuid}/mailboxes/",
            {"local_part": "hello", "password": PASSWORD, "quota_mb": 10},
        )
        assert r.status_code == 302
        assert Mailbox.objects.get(local_part="hello").quota_mb == 10
        r = c.post(
            f"/mail/{domain.uuid}/mailboxes/",
            {"local_part": "bad one", "password": PASSWORD, "quota_mb": 10},
        )
        assert r.status_code == 400 and Mailbox.objects.count() == 1

    def test_nav_shows_mail(self, customer):
        assert b'href="/mail/"' in login(customer).get("/").content

    def test_create_domain_page(self, customer, server):
        subscribe(customer)
        c = login(customer)
        assert c.get("/mail/new/").status_code == 200
        r = c.post("/mail/new/", {"domain": "portal.example.com", "server": server.pk})
        assert r.status_code == 302, r.content
        assert MailDomain.objects.filter(domain="portal.example.com", owner=customer).exists()


class TestDnsRecords:
    @staticmethod
    def served_zone(name, owner):
        from dns.models import Nameserver, NameserverGroup

        group = NameserverGroup.objects.create(name=f"g-{name}")
        Nameserver.objects.create(
            group=group, hostname="ns1.example.net", host="127.0.0.1", kind="powerdns"
        )
        return Zone.objects.create(name=name, owner=owner, group=group)

    def test_records_published_in_the_owners_zone(self, customer, server, settings):
        from dns.models import Record

        settings.PANEL_PUBLIC_HOST = "Panel.Host.Example."
        subscribe(customer)
        server.profile = {"mail_hostname": "mx.provider.example"}
        server.save()
        zone = self.served_zone("example.com", customer)
        Record.objects.create(zone=zone, name="@", type="TXT", content='"google-site-x"')
        d = services.do_create_mail_domain(
            actor=customer, data={"domain": "example.com", "server": server}
        )
        got = set(Record.objects.filter(zone=zone).values_list("name", "type", "content"))
        assert ("@", "MX", "10 mx.provider.example.") in got
        assert ("@", "TXT", '"v=spf1 mx -all"') in got
        assert any(n == "_dmarc" and c.startswith('"v=DMARC1') for n, _t, c in got)
        dkim_txt = [c for n, t, c in got if n == "panel._domainkey" and t == "TXT"]
        assert dkim_txt and d.dkim_public_key in "".join(dkim_txt[0].split('" "'))
        # Mail clients find the panel's autoconfig/Autodiscover endpoints by these names.
        assert ("autoconfig", "CNAME", "panel.host.example.") in got
        assert ("autodiscover", "CNAME", "panel.host.example.") in got
        assert ("_autodiscover._tcp", "SRV", "0 0 443 panel.host.example.") in got
        rows = dnsrecords.status(d)
        assert {"autoconfig.example.com", "autodiscover.example.com"} <= {r["name"] for r in rows}
        assert all(row["in_zone"] for row in rows)

    @pytest.mark.parametrize("public", ["", "not a host", "10.0.0.1"])
    def test_no_autoconfig_names_without_a_valid_panel_host(self, server, settings, public):
        settings.PANEL_PUBLIC_HOST = public
        server.profile = {"mail_hostname": "mx.provider.example"}
        server.save()
        d = MailDomain(owner=server.owner, server=server, domain="example.com")
        types = {(r.name, r.type) for r in dnsrecords.wanted(d)}
        assert ("", "MX") in types
        assert not {n for n, _t in types} & {"autoconfig", "autodiscover", "_autodiscover._tcp"}

    def test_a_cname_is_not_added_beside_an_existing_autoconfig_name(
        self, customer, server, settings
    ):
        from dns.models import Record

        settings.PANEL_PUBLIC_HOST = "panel.host.example"
        subscribe(customer)
        server.profile = {"mail_hostname": "mx.provider.example"}
        server.save()
        zone = self.served_zone("example.com", customer)
        Record.objects.create(zone=zone, name="autoconfig", type="A", content="192.0.2.7")
        services.do_create_mail_domain(
            actor=customer, data={"domain": "example.com", "server": server}
        )
        at = set(Record.objects.filter(zone=zone, name="autoconfig").values_list("type", flat=True))
        assert at == {"A"}  # a CNAME may not sit beside other data: the page lists it instead
        assert Record.objects.filter(zone=zone, name="autodiscover", type="CNAME").exists()

    def test_an_existing_spf_is_not_overwritten_and_subdomains_get_labels(self, customer, server):
        from dns.models import Record

        subscribe(customer)
        zone = self.served_zone("example.com", customer)
        Record.objects.create(zone=zone, name="shop", type="TXT", content='"v=spf1 a -all"')
        services.do_create_mail_domain(
            actor=customer, data={"domain": "shop.example.com", "server": server}
        )
        spf = Record.objects.filter(zone=zone, name="shop", content__startswith='"v=spf1')
        assert list(spf.values_list("content", flat=True)) == ['"v=spf1 a -all"']
        assert Record.objects.filter(zone=zone, name="_dmarc.shop", type="TXT").exists()
        # no mail host name known (the server's address is an IP): no MX invented
        assert not Record.objects.filter(zone=zone, type="MX").exists()

    def test_zone_not_ours_shows_what_to_publish(self, domain, customer):
        from dns.models import Record

        page = login(customer).get(f"/mail/{domain.uuid}/")
        assert b"_dmarc.shop.example.com" in page.content
        assert b"Publish it at your DNS provider" in page.content
        assert not Record.objects.exists()


def test_catch_all_from_the_domain_page(domain, customer, mallory):
    url = f"/mail/{domain.uuid}/catch-all/"
    assert login(mallory).post(url, {"catch_all": "x@shop.example.com"}).status_code == 404
    client = login(customer)
    assert 'data-testid="catch-all-form"' in client.get(domain.get_absolute_url()).content.decode()
    client.post(url, {"catch_all": "info@shop.example.com"})
    domain.refresh_from_db()
    assert domain.catch_all == "info@shop.example.com"
    client.post(url, {"catch_all": "not an address"})
    domain.refresh_from_db()
    assert domain.catch_all == "info@shop.example.com"
    r = client.patch(
        f"/api/v1/mail-domains/{domain.uuid}/", {"catch_all": ""}, content_type="application/json"
    )
    assert r.status_code == 200 and r.json()["catch_all"] == ""


def test_each_mail_resolver_keeps_its_own_port(settings):
    from mail.dnscheck import resolver

    settings.PANEL_MAIL_RESOLVERS = ["127.0.0.1:5301", "127.0.0.2", "::1", "127.0.0.3:5302"]
    found = [(n.address, n.port) for n in resolver().nameservers]
    assert found == [("127.0.0.1", 5301), ("127.0.0.2", 53), ("::1", 53), ("127.0.0.3", 5302)]


def test_dns_check_operation_is_a_change_of_the_domain(domain, customer):
    op = services.start_dns_check(domain, actor=customer)
    assert op.target_action == "change"


@pytest.mark.parametrize("bad", ["Away\x07 now", "Back\x1b[2J soon", "zero\u200bwidth"])
def test_autoreply_body_refuses_control_characters_keeps_lines(domain, customer, bad):
    box = add_box(domain, customer)
    with pytest.raises(ValidationError) as exc:
        services.do_update_mailbox(
            box, actor=customer, data={"autoreply": True, "autoreply_body": bad}
        )
    assert "autoreply_body" in exc.value.message_dict
    services.do_update_mailbox(
        box, actor=customer, data={"autoreply": True, "autoreply_body": "Away.\r\n\tBack soon.\n"}
    )
    box.refresh_from_db()
    assert box.autoreply_body == "Away.\r\n\tBack soon.\n"


def test_local_senders_hold_each_site_user_to_its_own_sites():
    """local_login_sender_maps: root and vmail anything; a site's Linux user its sites'
    names (never the mail host name, whose root@ and vmail@ OpenDKIM trusts) and itself;
    names or domains the map could not take are left out; anyone else is absent (refused)."""
    from mail.apply import render_local_senders

    text = render_local_senders(
        "mx.example.net",
        ["root", "vmail"],
        [
            ("site1", ["shop.example.com", "WWW.shop.example.com", "mx.example.net"]),
            ("site1", ["blog.example.org"]),
            ("site2", ["other.example.com", "bad domain\n* x"]),
            ("root", ["stolen.example.com"]),
            ("Bad\nname", ["x.example.com"]),
        ],
    )
    assert text.splitlines()[1:] == [
        "root *",
        "vmail *",
        "site1 site1 site1@mx.example.net @blog.example.org @shop.example.com"
        " @www.shop.example.com",
        "site2 site2 site2@mx.example.net @other.example.com",
    ]


def test_a_site_change_on_a_mail_server_applies_the_mail_maps(server, customer):
    """The maps list the envelope senders of the server's site users: a site's changes
    re-apply them on a mail server, and only there."""
    from websites import services as site_services

    site = Website.objects.create(domain="shop.example.com", server=server, owner=customer)
    assert MAPS_UNIT not in site_services._units_of(site)
    server.components = {"mail": {"vmail_uid": 998}}
    server.save(update_fields=["components"])
    site.refresh_from_db()
    assert MAPS_UNIT in site_services._units_of(site)
