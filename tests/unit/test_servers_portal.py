import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core.models import AuditEntry
from servers.models import FirewallRule, Server
from servers.transport import load_private_key
from tests.conftest import login
from websites.models import Website

pytestmark = pytest.mark.django_db

PUBLIC_IP = "93.184.216.34"  # any public address: nothing connects to it in these tests
VALID = {
    "name": "edge-1",
    "address": PUBLIC_IP,
    "ssh_port": "22",
    "ssh_user": "root",
    "auth_method": "key",
    "transport": "ssh",
    "kind": "physical",
    "status": "unknown",
    "location": "",
    "notes": "",
    "profile": "",
    "private_key": "",
    "password": "",
}


def server_of(owner, name="s1", **kw):
    return Server.objects.create(name=name, address="127.0.0.9", owner=owner, **kw)


class TestForms:
    def test_reseller_adds_server_with_generated_key(self, reseller):
        resp = login(reseller).post("/servers/add/", VALID)
        assert resp.status_code == 302
        server = Server.objects.get(name="edge-1")
        assert server.owner == reseller and server.public_key.startswith("ssh-ed25519 ")
        assert load_private_key(server.private_key)  # usable, and stored encrypted:
        with connection.cursor() as c:
            c.execute("SELECT private_key FROM servers_server WHERE id = %s", [server.pk])
            assert "OPENSSH" not in c.fetchone()[0]
        assert AuditEntry.objects.filter(action="server.create").exists()

    @pytest.mark.parametrize(
        "field,value,message",
        [
            ("address", "bad host!", "neither an IP address"),
            ("ssh_user", "Root;rm", "lowercase Unix user"),
            ("ssh_port", "70000", "less than or equal to 65535"),
            ("profile", '{"nginx_test": "nginx -t"}', "list of strings"),
            ("profile", '{"nginx_test": ["nginx", "-c", "{evil}"]}', "unknown placeholder"),
            ("profile", '{"nginx_listen": 80}', "must be a string"),
            ("profile", '{"state_dir": 1}', "must be a string"),
            ("profile", '{"nginx_reload_timeout": "5"}', "whole number"),
            ("profile", '{"bogus": 1}', "Unknown profile settings"),
            ("profile", "{not json", "Not valid JSON"),
            ("profile", '{"php_pool_dir": "/etc/php/{php}/../x"}', "plain absolute path"),
            ("profile", '{"state_dir": "relative"}', "plain absolute path"),
            ("private_key", "not a key", "not an OpenSSH"),
        ],
    )
    def test_bad_input_is_a_field_error_and_saves_nothing(self, admin_user, field, value, message):
        resp = login(admin_user).post(
            "/servers/add/", {**VALID, "owner": admin_user.pk, field: value}
        )
        assert resp.status_code == 400 and message in resp.content.decode()
        assert not Server.objects.exists()

    def test_inline_validation_returns_fields_without_saving(self, admin_user):
        resp = login(admin_user).post(
            "/servers/add/",
            {**VALID, "owner": admin_user.pk, "address": "x y", "_validate": "1"},
            HTTP_HX_REQUEST="true",
        )
        body = resp.content.decode()
        assert resp.status_code == 200 and 'id="server-fields"' in body and "<html" not in body
        assert "neither an IP address" in body and not Server.objects.exists()

    def test_admin_owns_a_new_server_by_default(self, admin_user):
        form = login(admin_user).get("/servers/add/").context["form"]
        assert form["owner"].value() == admin_user.pk

    def test_customer_cannot_add(self, customer):
        assert login(customer).get("/servers/add/").status_code == 404

    def test_edit_keeps_secret_when_blank(self, admin_user):
        server = server_of(admin_user, private_key="kept")
        data = {**VALID, "name": "s1", "owner": admin_user.pk, "location": "Frankfurt"}
        assert login(admin_user).post(f"/servers/{server.uuid}/edit/", data).status_code == 302
        server.refresh_from_db()
        assert server.private_key == "kept" and server.location == "Frankfurt"


class TestDelete:
    def test_refused_while_websites_remain(self, admin_user):
        server = server_of(admin_user)
        Website.objects.create(domain="shop.example.com", server=server, owner=admin_user)
        client = login(admin_user)
        resp = client.post(f"/servers/{server.uuid}/delete/", follow=True)
        assert "still has websites: shop.example.com" in resp.content.decode()
        assert Server.objects.filter(pk=server.pk).exists()
        resp = client.delete(f"/api/v1/servers/{server.uuid}/")
        assert resp.status_code == 400 and "shop.example.com" in str(resp.json())
        Website.objects.all().delete()
        assert client.delete(f"/api/v1/servers/{server.uuid}/").status_code == 204


class TestVisibility:
    def test_out_of_reach_is_404(self, reseller, mallory, admin_user):
        server = server_of(reseller)
        rule = FirewallRule.objects.create(server=server, port=22)
        client = login(mallory)
        urls = [
            ("get", f"/servers/{server.uuid}/"),
            ("get", f"/servers/{server.uuid}/edit/"),
            ("post", f"/servers/{server.uuid}/delete/"),
            ("post", f"/servers/{server.uuid}/apply/"),
            ("post", f"/servers/{server.uuid}/test/"),
            ("post", f"/servers/{server.uuid}/firewall/"),
            ("post", f"/servers/{server.uuid}/firewall/{rule.uuid}/delete/"),
            ("post", f"/servers/{server.uuid}/accept-host-key/"),
            ("get", f"/servers/{server.uuid}/terminal/"),
            ("post", f"/servers/{server.uuid}/terminal/ticket/"),
            ("get", f"/api/v1/servers/{server.uuid}/"),
            ("patch", f"/api/v1/servers/{server.uuid}/"),
            ("delete", f"/api/v1/servers/{server.uuid}/"),
            ("post", f"/api/v1/servers/{server.uuid}/apply/"),
            ("post", f"/api/v1/servers/{server.uuid}/accept-host-key/"),
            ("get", f"/api/v1/firewall-rules/{rule.uuid}/"),
            ("delete", f"/api/v1/firewall-rules/{rule.uuid}/"),
        ]
        for method, url in urls:
            resp = getattr(client, method)(url, content_type="application/json")
            assert resp.status_code == 404, (method, url, resp.status_code)
        assert Server.objects.filter(pk=server.pk).exists() and FirewallRule.objects.exists()
        assert login(mallory).get("/api/v1/servers/").json()["count"] == 0

    def test_rule_cannot_be_created_on_foreign_server(self, reseller, mallory):
        server = server_of(reseller)
        resp = login(mallory).post(
            "/api/v1/firewall-rules/",
            {"server": str(server.uuid), "port": 22},
            content_type="application/json",
        )
        assert resp.status_code == 400 and "server" in resp.json()
        assert not FirewallRule.objects.exists()

    def test_reseller_sees_own_servers_and_customer_sees_none(self, reseller, customer, admin_user):
        server_of(reseller, "mine")
        server_of(admin_user, "theirs")
        assert [s["name"] for s in login(reseller).get("/api/v1/servers/").json()["results"]] == [
            "mine"
        ]
        assert login(customer).get("/api/v1/servers/").json()["count"] == 0
        assert login(admin_user).get("/api/v1/servers/").json()["count"] == 2

    def test_secrets_never_leave(self, admin_user):
        server = server_of(admin_user, private_key="-----SECRET-----", password="pw")
        data = login(admin_user).get(f"/api/v1/servers/{server.uuid}/").json()
        assert "private_key" not in data and "password" not in data
        page = login(admin_user).get(f"/servers/{server.uuid}/").content.decode()
        assert "SECRET" not in page


class TestApiActions:
    def test_actions_start_operations(self, admin_user):
        server = server_of(admin_user)
        client = login(admin_user)
        for action, kind in [
            ("test-connection", "server.test_connection"),
            ("gather-facts", "server.gather_facts"),
            ("apply", "server.apply"),
            ("check-drift", "server.drift_check"),
        ]:
            resp = client.post(f"/api/v1/servers/{server.uuid}/{action}/")
            assert resp.status_code == 202 and resp.json()["kind"] == kind

    def test_create_via_api_with_field_errors(self, admin_user):
        client = login(admin_user)
        resp = client.post(
            "/api/v1/servers/",
            {"name": "x", "address": "bad host"},
            content_type="application/json",
        )
        assert resp.status_code == 400 and "address" in resp.json()
        resp = client.post(
            "/api/v1/servers/",
            {"name": "api-1", "address": "10.0.0.5", "profile": {"nginx_listen": "8080"}},
            content_type="application/json",
        )
        assert resp.status_code == 201, resp.json()
        assert resp.json()["public_key"].startswith("ssh-ed25519")

    def test_customer_cannot_create(self, customer):
        resp = login(customer).post(
            "/api/v1/servers/",
            {"name": "x", "address": "10.0.0.5"},
            content_type="application/json",
        )
        assert resp.status_code == 403


class TestQueryCounts:
    @pytest.mark.parametrize("url", ["/servers/", "/api/v1/servers/", "/api/v1/firewall-rules/"])
    def test_flat(self, admin_user, reseller, url):
        client = login(admin_user)
        counts = []
        for n in (2, 20):
            for i in range(n):
                s = server_of(reseller if i % 2 else admin_user, f"s{n}-{i}")
                FirewallRule.objects.create(server=s, port=22)
            with CaptureQueriesContext(connection) as ctx:
                assert client.get(url).status_code == 200
            counts.append(len(ctx))
        assert counts[0] == counts[1], counts


def test_scheduled_drift_checks_only_applied_servers(admin_user):
    from django.utils import timezone

    from core.models import Operation
    from servers.tasks import detect_drift_everywhere

    server_of(admin_user, "fresh")
    server_of(admin_user, "applied", status="online", applied_at=timezone.now())
    server_of(admin_user, "resting", status="maintenance", applied_at=timezone.now())
    assert detect_drift_everywhere() == 1
    assert list(Operation.objects.values_list("target_label", flat=True)) == ["applied"]


def test_bad_firewall_rule_shows_errors_and_saves_nothing(admin_user):
    server = server_of(admin_user, panel_address="10.0.0.1", panel_ssh_port=22)
    client = login(admin_user)
    resp = client.post(
        f"/servers/{server.uuid}/firewall/",
        {
            "position": 10,
            "action": "allow",
            "protocol": "tcp",
            "port": 80,
            "port_end": 70,
            "source": "10.0.0.0/99",
            "comment": 'x"; drop',
        },
    )
    body = resp.content.decode()
    assert resp.status_code == 400
    assert "not an IP address or CIDR" in body and "Use letters, digits" in body
    assert not FirewallRule.objects.exists()
    resp = client.post(
        f"/servers/{server.uuid}/firewall/",
        {"position": 10, "action": "allow", "protocol": "tcp", "port": 80, "port_end": 70},
    )
    assert resp.status_code == 400 and "must end at or after" in resp.content.decode()
    resp = client.post(
        f"/servers/{server.uuid}/firewall/",
        {"position": 10, "action": "allow", "protocol": "tcp", "port": 80},
    )
    assert resp.status_code == 400 and "cut the panel" in resp.content.decode()
    resp = client.post(
        f"/servers/{server.uuid}/firewall/",
        {"position": 10, "action": "allow", "protocol": "tcp", "port": 22},
    )
    assert resp.status_code == 302 and FirewallRule.objects.count() == 1


def test_only_admins_may_use_the_local_transport(reseller, admin_user):
    form = login(reseller).get("/servers/add/").context["form"]
    assert [c[0] for c in form.fields["transport"].choices] == ["ssh"]
    resp = login(reseller).post("/servers/add/", {**VALID, "transport": "local"})
    assert resp.status_code == 400 and "not one of the available choices" in resp.content.decode()
    resp = login(reseller).post(
        "/api/v1/servers/",
        {"name": "x", "address": "10.0.0.5", "transport": "local"},
        content_type="application/json",
    )
    assert resp.status_code == 400 and "transport" in resp.json()
    mine = server_of(reseller, "mine")
    resp = login(reseller).patch(
        f"/api/v1/servers/{mine.uuid}/", {"transport": "local"}, content_type="application/json"
    )
    assert resp.status_code == 400
    mine.refresh_from_db()
    assert mine.transport == "ssh" and Server.objects.count() == 1
    resp = login(admin_user).post(
        "/api/v1/servers/",
        {"name": "self", "address": "127.0.0.1", "transport": "local"},
        content_type="application/json",
    )
    assert resp.status_code == 201


def test_operation_links_to_its_server(admin_user):
    from core.operations import start_operation

    server = server_of(admin_user)
    op = start_operation(
        kind="server.apply", task="tests.support.steps", owner=admin_user, target=server
    )
    page = login(admin_user).get(f"/operations/{op.uuid}/").content.decode()
    assert f'href="/servers/{server.uuid}/" data-testid="target-link"' in page


def test_edit_and_delete_pages_name_the_server(admin_user):
    server = server_of(admin_user)
    client = login(admin_user)
    assert "Edit s1" in client.get(f"/servers/{server.uuid}/edit/").content.decode()
    assert "Delete s1?" in client.get(f"/servers/{server.uuid}/delete/").content.decode()


class TestGuidedForm:
    def test_status_is_never_asked_nor_taken(self, reseller):
        client = login(reseller)
        assert "status" not in client.get("/servers/add/").context["form"].fields
        assert client.post("/servers/add/", {**VALID, "status": "online"}).status_code == 302
        assert Server.objects.get(name="edge-1").status == Server.Status.UNKNOWN

    def test_the_secret_asked_follows_the_sign_in_method(self, reseller):
        client = login(reseller)
        page = client.get("/servers/add/").content.decode()
        assert 'name="private_key"' in page and 'name="password"' not in page
        swapped = client.post(
            "/servers/add/",
            {**VALID, "auth_method": "password", "_validate": "1"},
            HTTP_HX_REQUEST="true",
        ).content.decode()
        assert 'name="password"' in swapped and 'name="private_key"' not in swapped
        assert 'hx-preserve="true"' in swapped

    def test_plain_settings_are_boxes_with_defaults(self, reseller):
        client = login(reseller)
        page = client.get("/servers/add/").content.decode()
        assert 'name="setting_nginx_listen"' in page and 'placeholder="80"' in page
        data = {**VALID, "setting_nginx_listen": "8080", "setting_nginx_reload_timeout": "5"}
        assert client.post("/servers/add/", data).status_code == 302
        server = Server.objects.get(name="edge-1")
        assert server.profile == {"nginx_listen": "8080", "nginx_reload_timeout": 5}
        edit = client.get(f"/servers/{server.uuid}/edit/").content.decode()
        assert 'name="setting_nginx_listen" value="8080"' in edit

    def test_a_bad_setting_is_an_error_on_its_box(self, reseller):
        resp = login(reseller).post(
            "/servers/add/", {**VALID, "setting_webroot_base": "relative/path"}
        )
        assert resp.status_code == 400
        assert resp.context["form"].errors["setting_webroot_base"]
        assert not Server.objects.exists()
