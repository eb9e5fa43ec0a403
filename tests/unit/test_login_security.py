import pytest
from django.test import Client
from django.urls import reverse
from django_otp.oath import totp

from accounts.devices import BackupCodeDevice
from accounts.models import LoginAttempt, Role
from core.models import AuditEntry
from tests.conftest import PASSWORD, add_totp, login, make_user

pytestmark = pytest.mark.django_db
LOGIN = "/accounts/login/"


def post_login(client, email, password=PASSWORD, ip="10.1.1.1"):
    return client.post(LOGIN, {"login": email, "password": password}, REMOTE_ADDR=ip)


def current_code(device) -> str:
    return f"{totp(device.bin_key, device.step, device.t0, device.digits, device.drift):06d}"


class TestSecondFactor:
    def test_staff_without_device_must_enrol_before_anything(self, admin_user):
        client = Client()
        resp = post_login(client, admin_user.email)
        assert resp.status_code == 302
        resp = client.get("/operations/")
        assert resp.status_code == 302 and resp["Location"].startswith("/2fa/setup/")
        assert client.get("/api/v1/me/").status_code == 403
        assert client.get("/admin/").status_code == 302

    def test_login_not_complete_until_code_passes(self, customer, settings):
        settings.OTP_TOTP_THROTTLE_FACTOR = 0  # the wrong code below must not delay the right one
        device = add_totp(customer)
        client = Client()
        post_login(client, customer.email)
        resp = client.get("/account/")
        assert resp.status_code == 302 and resp["Location"].startswith("/2fa/verify/")
        resp = client.post("/2fa/verify/", {"code": "000000"})
        assert resp.status_code == 200 and b"not valid" in resp.content
        assert client.get("/account/").status_code == 302
        resp = client.post("/2fa/verify/", {"code": current_code(device), "next": "/account/"})
        assert resp.status_code == 302 and resp["Location"] == "/account/"
        assert client.get("/account/").status_code == 200

    def test_unverified_session_cannot_disable_2fa_or_change_password(self, customer):
        add_totp(customer)
        client = login(customer, verified=False)
        resp = client.post("/2fa/disable/")
        assert resp.status_code == 302 and "/2fa/verify/" in resp["Location"]
        assert customer.authenticatordevice_set.filter(confirmed=True).exists()
        resp = client.get("/accounts/password/change/")
        assert resp.status_code == 302 and "/2fa/verify/" in resp["Location"]

    def test_wrong_codes_are_throttled(self, customer):
        device = add_totp(customer)
        client = login(customer, verified=False)
        client.post("/2fa/verify/", {"code": "000000"})
        resp = client.post("/2fa/verify/", {"code": current_code(device)})
        assert resp.status_code == 200  # django-otp's back-off refuses even the right code

    def test_enrolment_with_qr_then_backup_codes_work(self, support):
        client = Client()
        post_login(client, support.email)
        resp = client.get("/2fa/setup/")
        assert resp.status_code == 200 and b"<svg" in resp.content
        device = support.authenticatordevice_set.get(confirmed=False)
        resp = client.post("/2fa/setup/", {"code": current_code(device)})
        assert resp.status_code == 200
        codes = resp.context["codes"]
        assert len(codes) == 10
        assert client.get("/operations/").status_code == 200
        # A backup code gets a fresh session through, once.
        other = Client()
        post_login(other, support.email)
        assert other.post("/2fa/verify/", {"code": codes[0]}).status_code == 302
        assert other.get("/operations/").status_code == 200
        third = Client()
        post_login(third, support.email)
        assert third.post("/2fa/verify/", {"code": codes[0]}).status_code == 200
        assert AuditEntry.objects.filter(action="2fa.enrol", object_id=str(support.uuid)).exists()

    def test_staff_cannot_disable_but_customers_can(self, support, customer):
        client = login(support)
        client.post("/2fa/disable/")
        assert support.authenticatordevice_set.exists()
        add_totp(customer)
        BackupCodeDevice.objects.create(user=customer, name="Backup codes")
        client = login(customer)
        client.post("/2fa/disable/")
        assert not customer.authenticatordevice_set.exists()


class TestLockout:
    def test_five_failures_lock_the_account_even_with_right_password(self, customer, settings):
        client = Client()
        for _ in range(5):
            resp = post_login(client, customer.email, "wrong-password")
            assert resp.status_code == 200
        resp = post_login(client, customer.email, ip="10.9.9.9")
        assert resp.status_code == 200
        assert b"Too many failed sign-in attempts" in resp.content
        assert "_auth_user_id" not in client.session
        attempts = LoginAttempt.objects.filter(email=customer.email)
        assert attempts.filter(success=False, reason="bad credentials").count() == 5
        assert attempts.filter(reason="locked").count() == 1
        last = attempts.first()
        assert last.ip == "10.9.9.9" and last.user_agent is not None

    def test_failures_from_one_ip_lock_that_ip_for_other_accounts(self, customer, mallory):
        client = Client()
        for i in range(5):
            post_login(client, f"nobody{i}@example.com", "x", ip="10.7.7.7")
        resp = post_login(client, mallory.email, ip="10.7.7.7")
        assert b"Too many failed" in resp.content
        resp = post_login(Client(), mallory.email, ip="10.7.7.8")
        assert resp.status_code == 302

    def test_cooldown_ends(self, customer, settings):
        settings.LOGIN_COOLDOWN = 0
        client = Client()
        for _ in range(5):
            post_login(client, customer.email, "bad")
        assert post_login(client, customer.email).status_code == 302

    def test_success_is_recorded(self, customer):
        post_login(Client(), customer.email, ip="10.3.3.3")
        attempt = LoginAttempt.objects.get(email=customer.email)
        assert attempt.success and attempt.ip == "10.3.3.3"


class TestIpAllowList:
    def test_request_from_outside_list_is_refused_and_logged_out(self, customer):
        customer.ip_allowlist = "10.0.0.0/8\n2001:db8::/32"
        customer.save()
        client = login(customer)
        assert client.get("/account/", REMOTE_ADDR="10.2.3.4").status_code == 200
        resp = client.get("/account/", REMOTE_ADDR="172.16.0.1")
        assert resp.status_code == 403 and b"172.16.0.1" in resp.content
        assert client.get("/account/", REMOTE_ADDR="10.2.3.4").status_code == 302  # logged out

    def test_saving_a_list_that_excludes_you_is_refused(self, customer):
        client = login(customer)
        resp = client.post(
            "/account/security/",
            {"ip_allowlist": "10.0.0.0/8", "session_timeout_minutes": ""},
            REMOTE_ADDR="127.0.0.1",
        )
        assert resp.status_code == 200 and b"would lock you out" in resp.content
        customer.refresh_from_db()
        assert customer.ip_allowlist == ""

    def test_bad_cidr_is_a_field_error(self, customer):
        client = login(customer)
        resp = client.post(
            "/account/security/", {"ip_allowlist": "10.0.0.0/33", "session_timeout_minutes": "30"}
        )
        assert b"is not an IP address or CIDR" in resp.content
        customer.refresh_from_db()
        assert customer.session_timeout_minutes is None

    def test_valid_settings_saved_and_audited(self, customer):
        client = login(customer)
        resp = client.post(
            "/account/security/", {"ip_allowlist": "127.0.0.0/8", "session_timeout_minutes": "30"}
        )
        assert resp.status_code == 302
        customer.refresh_from_db()
        assert customer.session_timeout_minutes == 30
        entry = AuditEntry.objects.get(action="user.update", object_id=str(customer.uuid))
        assert entry.changes["session_timeout_minutes"] == [None, 30]


class TestSessionTimeout:
    def test_idle_session_expires(self, customer, monkeypatch):
        customer.session_timeout_minutes = 5
        customer.save()
        client = login(customer)
        assert client.get("/account/").status_code == 200
        import time as real_time

        now = real_time.time()
        monkeypatch.setattr("accounts.middleware.time.time", lambda: now + 6 * 60)
        resp = client.get("/account/")
        assert resp.status_code == 302 and resp["Location"].startswith("/accounts/login/")

    def test_activity_is_written_at_most_once_a_minute(self, customer, monkeypatch):
        """A request that changes nothing else writes no session row (a write per API call
        otherwise); a minute later the activity is recorded and the idle clock moves on."""
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        customer.session_timeout_minutes = 5
        customer.save()
        client = login(customer)
        assert client.get("/account/").status_code == 200
        import time as real_time

        now = real_time.time()

        def session_writes(at: float) -> int:
            monkeypatch.setattr("accounts.middleware.time.time", lambda: at)
            with CaptureQueriesContext(connection) as ctx:
                assert client.get("/account/").status_code == 200
            return sum("django_session" in q["sql"] and "UPDATE" in q["sql"] for q in ctx)

        assert session_writes(now + 10) == 0
        assert session_writes(now + 4 * 60) == 1
        # Idle for four minutes since the recorded activity: still inside the five.
        assert session_writes(now + 8 * 60) == 1


class TestRoles:
    def test_support_reads_admin_but_cannot_change_users(self, support, customer):
        client = login(support)
        assert client.get("/admin/accounts/user/").status_code == 200
        url = f"/admin/accounts/user/{customer.pk}/change/"
        resp = client.post(url, {"email": "x@example.com"})
        customer.refresh_from_db()
        assert customer.email == "customer@example.com"
        assert resp.status_code in (200, 403)

    def test_customer_has_no_admin(self, customer):
        resp = login(customer).get("/admin/")
        assert resp.status_code == 302 and "login" in resp["Location"]

    def test_reseller_owns_customers_only(self, reseller):
        with pytest.raises(Exception, match="Only customers"):
            make_user("r2@example.com", Role.RESELLER, reseller=reseller)

    def test_anonymous_is_sent_to_login(self, db):
        for url in ["/", "/operations/", "/account/tokens/", "/servers/"]:
            resp = Client().get(url)
            assert resp.status_code == 302 and resp["Location"].startswith(reverse("account_login"))


def test_login_page_offers_sign_up_only_when_open(db, settings):
    assert "Sign up" not in Client().get(LOGIN).content.decode()
    settings.PANEL_ALLOW_SIGNUP = True
    assert "Sign up" in Client().get(LOGIN).content.decode()


def test_bootstrap_admin_creates_once_then_resets(db):
    from io import StringIO

    from django.contrib.auth import authenticate
    from django.core.management import call_command

    out = StringIO()
    call_command("bootstrap_admin", stdout=out)
    password = out.getvalue().split("Password: ")[1].split()[0]
    assert authenticate(email="admin@example.com", password=password)
    again = StringIO()
    call_command("bootstrap_admin", stdout=again)
    assert "--reset" in again.getvalue() and "Password:" not in again.getvalue()
    reset = StringIO()
    call_command("bootstrap_admin", "--reset", stdout=reset)
    fresh = reset.getvalue().split("Password: ")[1].split()[0]
    assert fresh != password and authenticate(email="admin@example.com", password=fresh)
    assert not authenticate(email="admin@example.com", password=password)


def test_a_confirmed_device_of_any_kind_is_found_in_one_query(customer, mallory):
    """The middleware asks on every request of a user who has not passed a second factor:
    one query, whichever kind of device the user has (django-otp asked each kind in turn)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django_otp import user_has_device

    from accounts.devices import AuthenticatorDevice, has_confirmed_device

    AuthenticatorDevice.objects.create(user=mallory, name="phone", confirmed=False)
    cases = [(customer, False), (mallory, False)]
    for user, expected in cases:
        with CaptureQueriesContext(connection) as ctx:
            assert has_confirmed_device(user) is expected
        assert len(ctx) == 1
    BackupCodeDevice.objects.create(user=customer, name="Backup codes")  # the last kind asked
    AuthenticatorDevice.objects.filter(user=mallory).update(confirmed=True)
    for user in (customer, mallory):
        with CaptureQueriesContext(connection) as ctx:
            assert has_confirmed_device(user) is True
        assert len(ctx) == 1
        assert user_has_device(user, confirmed=True) is True


def test_the_api_reuses_the_middlewares_second_factor_answer(admin_user, customer):
    """A verified session's API request looks its device up once (the OTP middleware), not
    again in the API's session authentication; an unverified one is still refused."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = login(admin_user)
    client.get("/api/v1/servers/")  # the process's caches (content types)
    with CaptureQueriesContext(connection) as ctx:
        assert client.get("/api/v1/servers/").status_code == 200
    device_queries = [q for q in ctx.captured_queries if "device" in q["sql"]]
    assert len(device_queries) == 1, device_queries
    refused = login(admin_user, verified=False).get("/api/v1/servers/")
    assert refused.status_code == 403
    assert login(customer).get("/api/v1/servers/").status_code == 200  # no 2FA: passes
