"""Websites: typed options, raw directives for administrators only, through the service, the
API and the admin; the upgrade of the old free-text directives (issue 8, finding 2)."""

from __future__ import annotations

import pytest
from django.apps import apps as django_apps
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core.models import AuditEntry, Operation
from servers.models import DirtyUnit, Server
from tests.conftest import login
from websites import services
from websites.directives import SiteContext
from websites.models import Website
from websites.options import parse_options, www_pairs
from websites.upgrade import convert

pytestmark = pytest.mark.django_db
SERVER_IP = "93.184.216.34"
PROXY = {"path": "/api/", "upstream": "http://8.8.8.8:8080/v1/"}
ESCAPE = 'return 200 "a";\n}\nserver { listen 80; server_name other-customer.example; }'


def api(client, method, url, data=None):
    return getattr(client, method)(url, data or {}, content_type="application/json")


def actions() -> list[str]:
    entries = AuditEntry.objects.exclude(action="user.login").order_by("id")
    return list(entries.values_list("action", flat=True))


@pytest.fixture
def server(reseller):
    return Server.objects.create(name="web", address=SERVER_IP, owner=reseller)


@pytest.fixture
def site(server, customer):
    return Website.objects.create(
        domain="shop.example.com", aliases="www.shop.example.com", server=server, owner=customer
    )


class TestOptions:
    def test_defaults_are_not_stored(self):
        options = parse_options({"gzip": False, "headers": [], "max_body_mb": 0})
        assert options.to_json() == {}

    def test_a_full_set_round_trips(self):
        data = {
            "www_redirect": "to_apex",
            "headers": [{"name": "X-Frame-Options", "value": "DENY"}],
            "gzip": True,
            "static_cache_days": 30,
            "max_body_mb": 64,
            "error_pages": [{"code": 404, "path": "/404.html"}],
            "proxies": [PROXY, {"path": "/v6/", "upstream": "https://[2001:4860:4860::8888]"}],
        }
        names = ("shop.example.com", "www.shop.example.com")
        options = parse_options(data, names=names)
        assert parse_options(options.to_json(), names=names) == options
        assert options.proxies[1].upstream == "https://[2001:4860:4860::8888]"

    @pytest.mark.parametrize(
        "data, message",
        [
            ([], "Options must be an object."),
            ({"gzip": "yes"}, "gzip: must be true or false"),
            ({"max_body_mb": True}, "max_body_mb: must be a whole number"),
            ({"static_cache_days": 366}, "static_cache_days: must be a whole number from 0"),
            ({"colour": "red"}, "colour: unknown option"),
            ({"hsts_max_age": -1}, "hsts_max_age: must be a whole number"),
            ({"www_redirect": "to_www"}, "www_redirect: no name of this site"),
            ({"headers": [{"name": "X-A", "value": "a\r\nSet-Cookie: x"}]}, "headers[0].value"),
            ({"headers": [{"name": "X-A", "value": 'a" always; return 200 "'}]}, 'contain "'),
            ({"headers": [{"name": "X-A", "value": "$http_cookie"}]}, "$"),
            ({"headers": [{"name": "X A", "value": "v"}]}, "headers[0].name"),
            ({"headers": [{"name": "X-Panel-Revision", "value": "v"}]}, "set by the server"),
            ({"headers": [{"name": "X-A"}]}, "exactly: name, value"),
            ({"error_pages": [{"code": 200, "path": "/x"}]}, "error_pages[0].code"),
            ({"error_pages": [{"code": 404, "path": "/a/../b"}]}, "'..'"),
            ({"error_pages": [{"code": 404, "path": "/x;"}]}, "not a plain path"),
            ({"proxies": [{"path": "/a/", "upstream": "http://127.0.0.1:8000/"}]}, "loopback"),
            ({"proxies": [{"path": "/a/", "upstream": "http://10.0.0.1/"}]}, "private"),
            ({"proxies": [{"path": "/a/", "upstream": "http://169.254.169.254/"}]}, "link-local"),
            ({"proxies": [{"path": "/a/", "upstream": "http://[::ffff:10.0.0.1]/"}]}, "private"),
            ({"proxies": [{"path": "/a/", "upstream": "http://example.org/"}]}, "host name"),
            ({"proxies": [{"path": "/a/", "upstream": "http://2130706433/"}]}, "reads the same"),
            ({"proxies": [{"path": "/a/", "upstream": "http://8.8.8.8/?x=$host"}]}, "plain URL"),
            (
                {"proxies": [{"path": "/a/", "upstream": "unix:/run/php.sock"}]},
                "must start with http://",
            ),
            ({"proxies": [{"path": "/a/", "upstream": f"http://{SERVER_IP}/"}]}, "own server"),
            (
                {
                    "proxies": [
                        {"path": "/.well-known/hosting-panel/", "upstream": "http://8.8.8.8"}
                    ]
                },
                "belongs to the panel",
            ),
            ({"proxies": [PROXY, PROXY]}, "given twice"),
        ],
    )
    def test_refused_with_the_option_named(self, data, message):
        with pytest.raises(ValidationError) as caught:
            parse_options(data, names=("shop.example.com",), own_addresses=frozenset({SERVER_IP}))
        assert message in " ".join(caught.value.messages), caught.value.messages

    def test_www_pairs(self):
        names = ("example.com", "www.example.com", "shop.example.com")
        assert www_pairs(names, "to_apex") == [("www.example.com", "example.com")]
        assert www_pairs(names, "to_www") == [("example.com", "www.example.com")]
        assert www_pairs(names, "") == []


class TestService:
    def test_owner_sets_options_audited_and_applied(self, site, customer):
        services.do_update_website(
            site, actor=customer, data={"options": {"gzip": True, "proxies": [PROXY]}}
        )
        site.refresh_from_db()
        assert site.options == {"gzip": True, "proxies": [PROXY]}
        assert site.status == Website.Status.PENDING
        assert actions() == ["website.update", "operation.start"]
        assert Operation.objects.get().kind == "server.apply"
        dirty = set(DirtyUnit.objects.values_list("unit", flat=True))
        assert dirty == {site.unit, "nginx-default:server"}

    def test_nothing_changed_nothing_recorded(self, site, customer):
        services.do_update_website(site, actor=customer, data={"options": {"gzip": False}})
        assert actions() == [] and not Operation.objects.exists()

    @pytest.mark.parametrize("who", ["customer", "reseller"])
    @pytest.mark.parametrize(
        "data",
        [
            {"custom_directives": "location /x/ { return 204; }"},
            {"custom_directives": "client_body_temp_path /some/root/dir;"},
            {"admin_proxy": True},
        ],
    )
    def test_only_administrators_write_raw_directives(self, site, personas, who, data):
        with pytest.raises(ValidationError) as caught:
            services.do_update_website(site, actor=personas[who], data=data)
        (field,) = data
        assert "Only administrators" in caught.value.message_dict[field][0]
        site.refresh_from_db()
        assert site.custom_directives == "" and not site.admin_proxy and actions() == []

    def test_administrator_writes_checked_raw_directives(self, site, admin_user):
        text = "location /legacy/ {\r\n    proxy_pass http://8.8.8.8:8080;\r\n}\r\n"
        services.do_update_website(site, actor=admin_user, data={"custom_directives": text})
        site.refresh_from_db()
        assert site.custom_directives == text.replace("\r\n", "\n")
        assert actions() == ["website.update", "operation.start"]

    @pytest.mark.parametrize(
        "text, message",
        [
            ("client_body_temp_path /some/root/dir;", "Line 1: client_body_temp_path"),
            (ESCAPE, "Line 2: this '}' closes the site's server block"),
            ("location /x/ { proxy_pass http://127.0.0.1:8000/; }", "loopback"),
            ("location ~ \\.php$ { fastcgi_pass unix:/run/php/other.sock; }", "unix sockets"),
            ("location / { return 204; }", "already rendered"),
            # the ACME challenge location is in every server block already
            ("location /.well-known/acme-challenge/ { return 204; }", "already rendered"),
            ("location ^~ /.well-known/acme-challenge/ { return 204; }", "already rendered"),
            ("location /a/ {\n  fastcgi_param PHP_VALUE auto_prepend_file=/x;\n}", "Line 2"),
            ("location /a/ { root /srv/www/other.example.com/public; }", "is outside"),
            ("location /l/ { access_log /var/log/nginx/other.example.com.log; }", "shop.exa"),
            ("location /h/ { proxy_pass http://backend.internal/; }", "host name"),
        ],
    )
    def test_administrator_gets_line_and_reason(self, site, admin_user, text, message):
        with pytest.raises(ValidationError) as caught:
            services.do_update_website(site, actor=admin_user, data={"custom_directives": text})
        assert message in " ".join(caught.value.message_dict["custom_directives"])
        site.refresh_from_db()
        assert site.custom_directives == "" and actions() == []

    def test_host_name_upstreams_only_for_an_administrators_proxy(self, site, admin_user):
        text = "location /h/ { proxy_pass http://backend.internal:8080; }"
        services.do_update_website(
            site, actor=admin_user, data={"custom_directives": text, "admin_proxy": True}
        )
        site.refresh_from_db()
        assert site.custom_directives == text and site.admin_proxy

    def test_options_and_raw_directives_cannot_claim_one_location(self, site, admin_user):
        raw = "location /api/ { return 204; }"
        services.do_update_website(site, actor=admin_user, data={"custom_directives": raw})
        with pytest.raises(ValidationError) as caught:
            services.do_update_website(
                site, actor=site.owner, data={"options": {"proxies": [PROXY]}}
            )
        assert "already rendered" in str(caught.value.message_dict["custom_directives"])

    def test_unknown_fields_are_refused(self, site, admin_user):
        with pytest.raises(ValidationError, match="cannot be written here: domain"):
            services.do_update_website(site, actor=admin_user, data={"domain": "x.example.com"})

    def test_nul_is_a_field_error(self, site, customer):
        with pytest.raises(ValidationError) as caught:
            services.do_update_website(
                site, actor=customer, data={"options": {"headers": [{"name": "X", "value": "\0"}]}}
            )
        assert "options" in caught.value.message_dict


class TestApi:
    def url(self, site) -> str:
        return f"/api/v1/websites/{site.uuid}/"

    def test_owner_reads_and_sets_options(self, site, customer):
        client = login(customer)
        assert client.get("/api/v1/websites/").json()["count"] == 1
        resp = api(client, "patch", self.url(site), {"options": {"max_body_mb": 20}})
        assert resp.status_code == 200, resp.content
        assert resp.json()["options"] == {"max_body_mb": 20}
        assert resp.json()["status"] == "pending"

    def test_bad_options_are_field_errors(self, site, customer):
        bad = {"options": {"proxies": [{"path": "/x/", "upstream": "http://127.0.0.1:8112/"}]}}
        resp = api(login(customer), "patch", self.url(site), bad)
        assert resp.status_code == 400 and "loopback" in str(resp.json()["options"])

    @pytest.mark.parametrize("who", ["customer", "reseller"])
    def test_raw_directives_refused_not_ignored(self, site, personas, who):
        data = {"custom_directives": "location /x/ { return 204; }"}
        resp = api(login(personas[who]), "patch", self.url(site), data)
        assert resp.status_code == 400
        assert "Only administrators" in str(resp.json()["custom_directives"])
        site.refresh_from_db()
        assert site.custom_directives == ""

    def test_administrator_sets_raw_directives(self, site, admin_user):
        data = {"custom_directives": "location /x/ { return 204; }"}
        resp = api(login(admin_user), "patch", self.url(site), data)
        assert resp.status_code == 200, resp.content
        resp = api(login(admin_user), "patch", self.url(site), {"custom_directives": ESCAPE})
        assert resp.status_code == 400 and "Line 2" in str(resp.json()["custom_directives"])

    @pytest.mark.parametrize("who", ["mallory", "support"])
    def test_others_cannot_change(self, site, personas, who):
        resp = api(login(personas[who]), "patch", self.url(site), {"options": {"gzip": True}})
        assert resp.status_code == 404
        site.refresh_from_db()
        assert site.options == {}

    def test_list_query_count_is_flat(self, server, customer, admin_user):
        client = login(admin_user)
        counts = []
        for n in (2, 20):
            for i in range(n):
                Website.objects.create(
                    domain=f"s{n}-{i}.example.com", server=server, owner=customer
                )
            with CaptureQueriesContext(connection) as ctx:
                assert client.get("/api/v1/websites/").status_code == 200
            counts.append(len(ctx))
        assert counts[0] == counts[1], counts


class TestAdmin:
    def form(self, site, **changes) -> dict:
        return {"options": "{}", "custom_directives": "", **changes}

    def test_administrator_saves_through_the_service(self, site, admin_user):
        client = login(admin_user)
        url = f"/admin/websites/website/{site.pk}/change/"
        resp = client.post(url, self.form(site, custom_directives=ESCAPE), follow=True)
        assert "closes the site" in resp.content.decode()
        site.refresh_from_db()
        assert site.custom_directives == "" and actions() == []
        raw = "location /x/ { return 204; }"
        resp = client.post(url, self.form(site, options='{"gzip": true}', custom_directives=raw))
        assert resp.status_code == 302, resp.content.decode()[-3000:]
        site.refresh_from_db()
        assert site.options == {"gzip": True} and site.custom_directives == raw
        assert actions() == ["website.update", "operation.start"]

    def test_support_only_reads(self, site, support):
        client = login(support)
        url = f"/admin/websites/website/{site.pk}/change/"
        assert client.get(url).status_code == 200
        client.post(url, self.form(site, custom_directives="location /x/ { return 204; }"))
        site.refresh_from_db()
        assert site.custom_directives == "" and actions() == []


class TestUpgrade:
    BASE = SiteContext(
        domain="old.example.com",
        site_dir="/srv/www/old.example.com",
        log_dir="/var/log/nginx",
        own_addresses=frozenset({SERVER_IP}),
    )

    def convert(self, text):
        return convert(text, domain="old.example.com", names=("old.example.com",), base=self.BASE)

    def test_typed_equivalents_become_options(self):
        out = self.convert(
            'client_max_body_size 64m;\ngzip on;\nadd_header X-A "b c" always;\n'
            "error_page 404 /404.html;"
        )
        assert out.options == {
            "max_body_mb": 64,
            "gzip": True,
            "headers": [{"name": "X-A", "value": "b c"}],
            "error_pages": [{"code": 404, "path": "/404.html"}],
        }
        assert out.raw == "" and out.retired == ""

    def test_allowed_locations_stay_as_raw_directives(self):
        out = self.convert("gzip on;\nlocation /api/ { proxy_pass http://8.8.8.8:8080; }")
        assert out.options == {"gzip": True}
        assert out.raw == "location /api/ {\n    proxy_pass http://8.8.8.8:8080;\n}\n"
        assert not out.retired

    @pytest.mark.parametrize(
        "text",
        [
            "client_body_temp_path /some/root/dir;",
            ESCAPE,
            "location /x/ { proxy_pass http://127.0.0.1:8112/; }",
            "location ~ \\.php$ { fastcgi_pass unix:/run/php/other.sock; }",
            "autoindex on;",
        ],
    )
    def test_the_rest_is_retired_whole_and_kept(self, text):
        out = self.convert("gzip on;\n" + text if text != ESCAPE else text)
        assert out.retired.endswith(text) and out.raw == ""
        assert any(n.startswith("retired (not rendered): Line") for n in out.notes), out.notes

    def test_migration_step(self, site, admin_user):
        from importlib import import_module

        migration = import_module("websites.migrations.0002_typed_options")
        other = Website.objects.create(
            domain="b.example.com",
            server=site.server,
            owner=admin_user,
            custom_directives="location /ok/ { return 204; }",
        )
        Website.objects.filter(pk=site.pk).update(
            custom_directives="client_max_body_size 10m;\nclient_body_temp_path /root/x;",
            status_message="earlier",
        )
        migration.retire_free_text(django_apps, None)
        site.refresh_from_db()
        other.refresh_from_db()
        assert site.options == {"max_body_mb": 10} and site.custom_directives == ""
        assert site.retired_directives.endswith("client_body_temp_path /root/x;")
        assert site.status_message.startswith("Custom nginx directives, upgraded")
        assert site.status_message.endswith("earlier")
        assert other.custom_directives == "location /ok/ {\n    return 204;\n}\n"
        assert set(DirtyUnit.objects.values_list("unit", flat=True)) == {site.unit, other.unit}
