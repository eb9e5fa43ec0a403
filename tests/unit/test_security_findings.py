"""One test class per finding of the outside security review (issue 8), each failing before
its fix. Classes of findings (500s, NUL, validators, audit gaps, outsiders) are swept in
test_outsider_sweep.py, test_validators.py and test_api_schema.py."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from accounts import services as account_services
from accounts.devices import AuthenticatorDevice, BackupCode
from accounts.models import ApiToken, LoginAttempt, User
from core import audit
from core.models import AuditEntry, AuditHead, Operation
from core.operations import execute_operation, start_operation
from servers import services
from servers.models import FirewallRule, Server
from tests.conftest import PASSWORD, login

pytestmark = pytest.mark.django_db
PUBLIC_IP = "93.184.216.34"


def api(client, method, url, data=None, **extra):
    return getattr(client, method)(url, data or {}, content_type="application/json", **extra)


def server_of(owner, name="s1", **kw):
    kw.setdefault("address", PUBLIC_IP)
    return Server.objects.create(name=name, owner=owner, **kw)


def actions_since(mark: int) -> list[str]:
    return list(
        AuditEntry.objects.filter(pk__gt=mark).order_by("id").values_list("action", flat=True)
    )


def last_audit_id() -> int:
    return AuditEntry.objects.order_by("-id").values_list("id", flat=True).first() or 0


class TestF01SecondFactorSecrets:
    def test_support_cannot_reach_device_admin_pages(self, support, admin_user):
        client = login(support)
        for url in (
            "/admin/otp_totp/totpdevice/",
            "/admin/otp_static/staticdevice/",
            "/admin/accounts/authenticatordevice/",
            "/admin/accounts/backupcode/",
        ):
            assert client.get(url).status_code == 404, url

    def test_totp_key_encrypted_and_backup_codes_hashed_at_rest(self, customer):
        device = AuthenticatorDevice.objects.create(user=customer, name="phone", confirmed=True)
        codes = account_services.do_generate_backup_codes(customer, actor=customer)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT key FROM accounts_authenticatordevice WHERE id = %s", [device.pk]
            )
            assert device.key not in cursor.fetchone()[0]
            cursor.execute("SELECT digest FROM accounts_backupcode")
            stored = {row[0] for row in cursor.fetchall()}
        assert not stored & set(codes) and len(stored) == 10
        assert BackupCode.objects.count() == 10

    def test_admin_resets_but_never_reads(self, admin_user, customer):
        device = AuthenticatorDevice.objects.create(user=customer, name="phone", confirmed=True)
        client = login(admin_user)
        page = client.get(f"/admin/accounts/user/{customer.pk}/change/").content.decode()
        assert device.key not in page
        resp = client.post(
            "/admin/accounts/user/", {"action": "reset_2fa", "_selected_action": [customer.pk]}
        )
        assert resp.status_code == 302
        assert not AuthenticatorDevice.objects.filter(user=customer).exists()
        assert AuditEntry.objects.filter(action="2fa.reset", actor_id=admin_user.pk).exists()


class TestF03RetryRechecksTarget:
    def _failed_apply(self, server, actor):
        op = services.start_apply(server, actor=actor)
        Operation.objects.filter(pk=op.pk).update(state="failed")
        return op

    def test_moved_server_cannot_be_retried_by_its_old_owner(self, admin_user, reseller):
        other = User.objects.create_user("r2@example.com", PASSWORD, role="reseller")
        server = server_of(reseller)
        op = self._failed_apply(server, reseller)
        services.do_update_server(server, actor=admin_user, data={"owner": other})
        before = Operation.objects.count()
        resp = api(login(reseller), "post", f"/api/v1/operations/{op.uuid}/retry/")
        assert resp.status_code == 400 and Operation.objects.count() == before
        resp = login(reseller).post(f"/operations/{op.uuid}/retry/")
        assert Operation.objects.count() == before
        new = api(login(admin_user), "post", f"/api/v1/operations/{op.uuid}/retry/")
        assert new.status_code == 201
        assert Operation.objects.get(uuid=new.json()["uuid"]).owner == other

    def test_support_cannot_rerun_an_apply(self, support, reseller):
        op = self._failed_apply(server_of(reseller), reseller)
        before = Operation.objects.count()
        assert (
            api(login(support), "post", f"/api/v1/operations/{op.uuid}/retry/").status_code == 404
        )
        assert login(support).post(f"/operations/{op.uuid}/retry/").status_code == 404
        assert Operation.objects.count() == before
        # Support may still cancel.
        running = services.start_apply(op.target(), actor=reseller)
        resp = api(login(support), "post", f"/api/v1/operations/{running.uuid}/cancel/")
        assert resp.status_code == 200


class TestF04SecretsNeverRendered:
    def test_edit_form_does_not_show_the_private_key(self, admin_user):
        server = server_of(admin_user, private_key="-----BEGIN KEY-----secret-material")
        page = login(admin_user).get(f"/servers/{server.uuid}/edit/").content.decode()
        assert "secret-material" not in page
        admin_page = login(admin_user).get(f"/admin/servers/server/{server.pk}/change/")
        assert "secret-material" not in admin_page.content.decode()


class TestF05KeyedAuditChain:
    @pytest.fixture
    def chain(self, admin_user, customer):
        for i in range(4):
            account_services.do_update_profile(customer, actor=admin_user, data={"name": f"n{i}"})
        return list(AuditEntry.objects.order_by("id"))

    def test_recomputing_plain_hashes_does_not_verify(self, chain):
        import hashlib
        import json

        # An attacker without the key rewrites an entry and re-chains everything after it
        # the way the old, unkeyed chain was computed.
        prev = audit.GENESIS
        for entry in AuditEntry.objects.order_by("id"):
            entry.object_label = "forged" if entry.pk == chain[1].pk else entry.object_label
            entry.prev_hash = prev
            payload = {"id": entry.pk, "label": entry.object_label, "prev": prev}
            entry.hash = hashlib.sha256(json.dumps(payload).encode()).hexdigest()
            AuditEntry.objects.filter(pk=entry.pk).update(
                object_label=entry.object_label, prev_hash=prev, hash=entry.hash
            )
            prev = entry.hash
        AuditHead.objects.filter(pk=1).update(last_hash=prev)
        _, problem = audit.verify_chain()
        assert problem is not None and problem.entry_id == chain[0].pk

    def test_cut_tail_with_moved_head_is_caught_by_the_witness(self, chain, settings, tmp_path):
        settings.AUDIT_WITNESS_FILE = str(tmp_path / "witness.log")
        audit.write_witness()
        keep = chain[-3]
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM core_auditentry WHERE id > %s", [keep.pk])
        AuditHead.objects.filter(pk=1).update(last_id=keep.pk, last_hash=keep.hash)
        assert audit.verify_chain()[1] is None  # without the witness the cut is invisible
        _, problem = audit.verify_chain(witness=audit.read_witness())
        assert problem is not None and "removed from the end" in problem.message
        with pytest.raises(Exception, match="removed from the end"):
            call_command("verify_audit", witness=settings.AUDIT_WITNESS_FILE)

    def test_a_rotated_key_still_verifies_and_an_unknown_one_does_not(self, chain, settings):
        settings.AUDIT_KEYS = ["new-key-0123456789", *settings.AUDIT_KEYS]
        audit.record("test.after_rotation")
        assert audit.verify_chain()[1] is None
        settings.AUDIT_KEYS = ["new-key-0123456789"]
        _, problem = audit.verify_chain()
        assert problem is not None and "not in PANEL_AUDIT_KEYS" in problem.message

    def test_the_witness_is_scheduled(self):
        from django_q.models import Schedule

        assert Schedule.objects.filter(func="core.tasks.witness_audit_head").exists()


class TestF06EveryEntryPointAudited:
    def test_allauth_password_change(self, customer):
        client = login(customer)
        mark = last_audit_id()
        resp = client.post(
            "/accounts/password/change/",
            {"oldpassword": PASSWORD, "password1": "n3w-Passw0rd-x", "password2": "n3w-Passw0rd-x"},
        )
        assert resp.status_code == 302
        assert "user.password_change" in actions_since(mark)

    def test_password_reset(self, customer):
        import re

        mark = last_audit_id()
        Client().post("/accounts/password/reset/", {"email": customer.email})
        url = re.search(
            r"http://testserver(/accounts/password/reset/key/\S+)", mail.outbox[-1].body
        )
        client = Client()
        form_url = client.get(url.group(1)).url
        resp = client.post(form_url, {"password1": "n3w-Passw0rd-x", "password2": "n3w-Passw0rd-x"})
        assert resp.status_code == 302
        assert "user.password_reset" in actions_since(mark)

    def test_email_add_is_audited_and_verified_before_use(self, customer):
        client = login(customer)
        mark = last_audit_id()
        client.post("/accounts/email/", {"action_add": "", "email": "new@example.com"})
        customer.refresh_from_db()
        assert customer.email == "customer@example.com"  # not until verified
        assert "user.email_add" in actions_since(mark)

    def test_admin_password_form(self, admin_user, customer):
        mark = last_audit_id()
        resp = login(admin_user).post(
            f"/admin/accounts/user/{customer.pk}/password/",
            {"password1": "n3w-Passw0rd-x", "password2": "n3w-Passw0rd-x"},
        )
        assert resp.status_code == 302
        assert "user.password_set" in actions_since(mark)
        customer.refresh_from_db()
        assert customer.check_password("n3w-Passw0rd-x")

    def test_support_lifting_a_lockout(self, support, customer):
        for _ in range(5):
            LoginAttempt.objects.create(email=customer.email, ip="10.0.0.1", reason="bad")
        mark = last_audit_id()
        ids = list(LoginAttempt.objects.values_list("pk", flat=True))
        resp = login(support).post(
            "/admin/accounts/loginattempt/", {"action": "lift_lockout", "_selected_action": ids}
        )
        assert resp.status_code == 302
        assert "login.lift_lockout" in actions_since(mark)
        assert LoginAttempt.objects.count() == 5  # kept on record
        from accounts.throttle import locked_until

        assert locked_until(customer.email, "10.0.0.1") is None

    def test_firewall_inline_is_read_only_and_rule_admin_uses_the_service(self, admin_user):
        server = server_of(admin_user, panel_address="10.0.0.1", panel_ssh_port=22)
        client = login(admin_user)
        rule = {
            "server": server.pk,
            "position": 10,
            "action": "allow",
            "protocol": "tcp",
            "port": 80,
            "source": "",
            "comment": "",
        }
        mark = last_audit_id()
        resp = client.post("/admin/servers/firewallrule/add/", rule, follow=True)
        assert "cut the panel" in resp.content.decode()  # the lock-out guard applies here too
        assert actions_since(mark) == [] and not FirewallRule.objects.exists()
        resp = client.post("/admin/servers/firewallrule/add/", {**rule, "port": 22})
        assert resp.status_code == 302, resp.content
        assert actions_since(mark) == ["firewall.create", "operation.start"]
        page = client.get(f"/admin/servers/server/{server.pk}/change/").content.decode()
        assert (
            "firewall_rules-TOTAL_FORMS" not in page or 'name="firewall_rules-0-port"' not in page
        )

    def test_changepassword_command(self, customer, monkeypatch):
        monkeypatch.setattr("getpass.getpass", lambda prompt="": "n3w-Passw0rd-x")
        mark = last_audit_id()
        call_command("changepassword", customer.email)
        assert "user.password_set" in actions_since(mark)


class TestF07EmailAndTokens:
    def test_api_cannot_change_email(self, customer):
        resp = api(
            login(customer), "patch", f"/api/v1/users/{customer.uuid}/", {"email": "x@evil.test"}
        )
        assert resp.status_code == 200
        customer.refresh_from_db()
        assert customer.email == "customer@example.com"

    def test_token_cannot_mint_longer_lived_or_wider_token(self, customer):
        soon = timezone.now() + timedelta(hours=1)
        _, raw = account_services.do_create_token(
            customer, actor=customer, data={"name": "t", "scope": "write", "expires_at": soon}
        )
        client = Client()
        auth = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
        resp = api(client, "post", "/api/v1/tokens/", {"name": "forever", "scope": "write"}, **auth)
        assert resp.status_code == 400 and "expires_at" in resp.json()
        later = (soon + timedelta(days=1)).isoformat()
        resp = api(client, "post", "/api/v1/tokens/", {"name": "l", "expires_at": later}, **auth)
        assert resp.status_code == 400
        ok = (soon - timedelta(minutes=5)).isoformat()
        resp = api(client, "post", "/api/v1/tokens/", {"name": "ok", "expires_at": ok}, **auth)
        assert resp.status_code == 201
        assert ApiToken.objects.count() == 2


class TestF08NoServerErrors:
    def test_missing_role_and_scope_get_defaults(self, admin_user, customer):
        resp = api(login(admin_user), "post", "/api/v1/users/", {"email": "x@y.example"})
        assert resp.status_code == 201 and resp.json()["role"] == "customer"
        resp = api(login(customer), "post", "/api/v1/tokens/", {"name": "n"})
        assert resp.status_code == 201 and resp.json()["scope"] == "read"

    @pytest.mark.parametrize(
        "query",
        [
            "limit=99999999999999999999",
            "limit=100000",
            "limit=-1",
            "offset=-5",
            "offset=99999999999999999999",
            "limit=%C2%B2",
        ],
    )
    def test_bad_paging_is_400(self, customer, query):
        resp = login(customer).get(f"/api/v1/operations/?{query}")
        assert resp.status_code == 400, resp.content

    @pytest.mark.parametrize("after", ["²", "1" * 5000, "-1", "x"])
    def test_bad_log_cursor_is_400(self, customer, after):
        op = start_operation(kind="k", task="tests.support.steps", owner=customer)
        resp = login(customer).get(f"/api/v1/operations/{op.uuid}/log/", {"after": after})
        assert resp.status_code == 400


class TestF09BadServerInput:
    def test_invalid_private_key_is_a_field_error_on_update(self, admin_user):
        server = server_of(admin_user)
        resp = api(
            login(admin_user), "patch", f"/api/v1/servers/{server.uuid}/", {"private_key": "junk"}
        )
        assert resp.status_code == 400 and "private_key" in resp.json()

    @pytest.mark.parametrize(
        "payload",
        [
            {"profile": {"nginx_reload": ["nginx\u0000", "-s", "reload"]}},
            {"name": "a\u0000b"},
            {"notes": "x\u0000"},
        ],
    )
    def test_nul_is_refused(self, admin_user, payload):
        server = server_of(admin_user)
        resp = api(login(admin_user), "patch", f"/api/v1/servers/{server.uuid}/", payload)
        assert resp.status_code == 400

    def test_nul_in_forms_and_queries(self, admin_user):
        client = login(admin_user)
        assert client.get("/servers/?q=a%00b").status_code == 400
        resp = client.post("/account/", {"name": "a\x00", "company": "", "timezone": "UTC"})
        assert resp.status_code == 400


class TestF10ServerAddresses:
    @pytest.mark.parametrize(
        "address",
        ["127.0.0.1", "::1", "169.254.169.254", "0.0.0.0", "10.1.2.3", "localhost", "127.1"],
    )
    def test_reseller_cannot_point_the_panel_inwards(self, reseller, address):
        resp = api(login(reseller), "post", "/api/v1/servers/", {"name": "x", "address": address})
        assert resp.status_code == 400 and "address" in resp.json()
        assert not Server.objects.exists()

    def test_nor_move_a_server_there(self, reseller):
        server = server_of(reseller)
        resp = api(
            login(reseller), "patch", f"/api/v1/servers/{server.uuid}/", {"address": "127.0.0.1"}
        )
        assert resp.status_code == 400

    def test_private_networks_can_be_allowed(self, reseller, settings):
        settings.PANEL_SERVER_NETWORKS = ["10.20.0.0/16"]
        resp = api(
            login(reseller), "post", "/api/v1/servers/", {"name": "x", "address": "10.20.1.1"}
        )
        assert resp.status_code == 201

    def test_admin_may_use_any_address(self, admin_user):
        resp = api(
            login(admin_user), "post", "/api/v1/servers/", {"name": "x", "address": "127.0.0.1"}
        )
        assert resp.status_code == 201

    def test_connection_errors_are_summarised_for_non_staff(self, reseller, admin_user):
        server = server_of(reseller, ssh_port=6379)
        op = start_operation(
            kind="server.test_connection",
            task="tests.support.refused",
            owner=reseller,
            target=server,
        )
        execute_operation(op.pk)
        op.refresh_from_db()
        assert "6379" not in op.error and "Connection refused" not in op.error
        assert "Connection refused" in op.error_detail
        mine = api(login(reseller), "get", f"/api/v1/operations/{op.uuid}/").json()
        assert "Connection refused" not in str(mine)
        theirs = api(login(admin_user), "get", f"/api/v1/operations/{op.uuid}/").json()
        assert "Connection refused" in theirs["error_detail"]
        page = login(reseller).get(f"/operations/{op.uuid}/").content.decode()
        assert "Connection refused" not in page


class TestF11LocalTransportOnEveryAction:
    def test_reseller_cannot_act_on_an_admin_made_local_server(self, reseller):
        server = server_of(reseller, transport="local", address="127.0.0.1")
        client = login(reseller)
        assert client.get(f"/servers/{server.uuid}/").status_code == 200  # may still look
        for url in ("apply", "test", "facts", "drift", "firewall"):
            assert client.post(f"/servers/{server.uuid}/{url}/").status_code == 404, url
        for action in ("apply", "test-connection", "gather-facts", "check-drift"):
            assert (
                api(client, "post", f"/api/v1/servers/{server.uuid}/{action}/").status_code == 404
            )
        resp = api(
            client, "post", "/api/v1/firewall-rules/", {"server": str(server.uuid), "port": 22}
        )
        assert resp.status_code == 400
        with pytest.raises(Exception, match="local transport"):
            services.start_apply(server, actor=reseller)
        assert not Operation.objects.exists() and not FirewallRule.objects.exists()


class TestF13ClientAddress:
    def test_garbage_forwarded_for_is_ignored(self, customer, settings):
        settings.TRUSTED_PROXIES = ["127.0.0.0/8"]
        resp = Client().post(
            "/accounts/login/",
            {"login": customer.email, "password": "wrong"},
            REMOTE_ADDR="127.0.0.1",
            HTTP_X_FORWARDED_FOR="garbage, \u00b2",
        )
        assert resp.status_code == 200
        assert LoginAttempt.objects.get().ip == "127.0.0.1"

    def test_only_trusted_proxies_may_name_the_client(self, settings):
        from core.clientip import client_ip

        settings.TRUSTED_PROXIES = ["127.0.0.0/8"]
        assert client_ip("127.0.0.1", "203.0.113.5") == "203.0.113.5"
        assert client_ip("127.0.0.1", "198.51.100.1, 203.0.113.5, 127.0.0.2") == "203.0.113.5"
        assert client_ip("198.51.100.9", "203.0.113.5") == "198.51.100.9"  # not a proxy
        assert client_ip("127.0.0.1", "fe80::1%eth0") == "127.0.0.1"


class TestF14SecondaryEmail:
    def test_someone_elses_address_is_refused_without_mail(self, customer, mallory):
        mail.outbox.clear()
        resp = login(customer).post("/accounts/email/", {"action_add": "", "email": mallory.email})
        assert "belongs to another account" in resp.content.decode()
        assert mail.outbox == []


class TestF15ControlCharactersInNames:
    @pytest.mark.parametrize("name", ["evil\u202etxt.exe", "a\u200bb", "line\nbreak", "\x07"])
    def test_names_refuse_them(self, customer, admin_user, name):
        resp = login(customer).post("/account/", {"name": name, "company": "", "timezone": "UTC"})
        assert resp.status_code == 400
        resp = api(login(customer), "post", "/api/v1/tokens/", {"name": name})
        assert resp.status_code == 400
        server = server_of(admin_user)
        resp = api(
            login(admin_user), "patch", f"/api/v1/servers/{server.uuid}/", {"location": name}
        )
        assert resp.status_code == 400


@pytest.mark.django_db(transaction=True)
class TestF17SqliteConcurrency:
    def test_read_then_write_transactions_do_not_lock(self, customer):
        # The embedded default (SQLite) is what failed; PostgreSQL must of course pass too.
        import threading

        from django.db import connections, transaction

        errors: list[Exception] = []
        start = threading.Barrier(4)

        def worker(n):
            try:
                start.wait()
                for i in range(5):
                    with transaction.atomic():
                        User.objects.filter(pk=customer.pk).exists()  # read first ...
                        LoginAttempt.objects.create(
                            email=f"{n}-{i}@x", ip="10.0.0.1"
                        )  # ... then write
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == [] and LoginAttempt.objects.count() == 20


class TestF12TerminalSessionWatchdog:
    """The terminal's watchdog ends it with the browser session (the sign-out path is an
    integration test: tests/integration/test_terminal.py)."""

    def test_session_alive_only_while_signed_in_and_allowed(self, admin_user):
        from servers.consumers import _session_alive, parse_frame

        client = login(admin_user)
        key = client.session.session_key
        assert _session_alive(admin_user, key, "127.0.0.1")
        User.objects.filter(pk=admin_user.pk).update(ip_allowlist="10.0.0.0/8")
        assert not _session_alive(admin_user, key, "127.0.0.1")
        User.objects.filter(pk=admin_user.pk).update(ip_allowlist="")
        client.logout()
        assert not _session_alive(admin_user, key, "127.0.0.1")
        assert parse_frame("[1,2]") is None and parse_frame('{"t":"r","c":true,"r":5}') is None
        assert parse_frame('{"t":"r","c":80,"r":24}') == ("r", 80, 24)
