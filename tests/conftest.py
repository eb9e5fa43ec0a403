"""Personas and helpers shared by every test.

admin, support, reseller (with its customer ``customer``) and an unrelated customer ``mallory``
as in DESIGN.md. Clients are logged in with the second factor already passed unless asked.
"""

from __future__ import annotations

import os
import threading
import time

import pytest
from django.db import connections
from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY

from accounts.devices import AuthenticatorDevice
from accounts.middleware import session_timeout
from accounts.models import Role, User

PASSWORD = "correct horse battery staple"

# The longest files, longest first (CI's durations, PostgreSQL half). Under `--dist loadfile`
# a worker takes a whole file; these start first so that none of them starts last and holds
# the run up while the other workers idle (the Makefile turns off xdist's own reordering by
# test count, which put these few-test files last). Measured again when a file grows.
SCHEDULE_FIRST = (
    "tests/unit/test_api_fuzz_updates.py",
    "tests/unit/test_outsider_sweep.py",
    "tests/integration/test_panel_backup.py",
    "tests/unit/test_api_fuzz.py",
    "tests/unit/test_outsider_sweep_reseller.py",
    "tests/unit/test_outsider_sweep_support_a.py",
    "tests/unit/test_outsider_sweep_support_b.py",
    "tests/unit/test_outsider_sweep_support_c.py",
    "tests/unit/test_outsider_sweep_staff.py",
    "tests/integration/test_first_run.py",
    "tests/integration/test_backups.py",
    "tests/integration/test_website_apps.py",
    "tests/unit/test_upgrade.py",
    "tests/e2e/test_accessibility.py",
    "tests/integration/test_scale_out.py",
)


@pytest.hookimpl(trylast=True)  # after pytest-django's ordering, which this keeps per file
def pytest_collection_modifyitems(config, items):
    root = config.rootpath
    missing = [path for path in SCHEDULE_FIRST if not (root / path).is_file()]
    if missing:
        raise pytest.UsageError(f"tests/conftest.py SCHEDULE_FIRST names no file: {missing}")
    rank = {path: i for i, path in enumerate(SCHEDULE_FIRST)}
    # Then the tests of real programs and browsers, then the unit tests: files that are
    # long one by one before the many short ones, which fill the end of the run evenly.

    def order(item):
        path = item.nodeid.split("::")[0]
        return rank.get(path, len(rank)), path.startswith("tests/unit/")

    items.sort(key=order)


def require_real(reason: str):
    """Skip, or under PANEL_REQUIRE_REAL=1 (CI) fail, when a real component is missing."""
    if os.environ.get("PANEL_REQUIRE_REAL") == "1":
        pytest.fail(f"PANEL_REQUIRE_REAL=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _fast_hasher(request, settings):
    if request.node.get_closest_marker("e2e"):
        return  # the browser logs in through a separate server process with real settings
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _no_automatic_certificates(settings):
    """A site's apply orders a certificate by itself (PANEL_ACME_AUTO), which first asks DNS
    where its names point: tests turn it on where a DNS stand-in and Pebble answer."""
    settings.PANEL_ACME_AUTO = False


@pytest.fixture(autouse=True)
def _empty_cache():
    """Rate-limit counters (allauth, DRF) live in the cache: no test inherits another's.
    Redis: only this worker's keys (clear() would flush the database other workers'
    channel layers use)."""
    from django.core.cache import cache

    if hasattr(cache, "_cache") and hasattr(cache._cache, "get_client"):
        client = cache._cache.get_client(None, write=True)
        keys = list(client.scan_iter(f"{cache.key_prefix}:*"))
        if keys:
            client.delete(*keys)
    else:
        cache.clear()


@pytest.fixture(autouse=True)
def _fresh_channel_layer():
    """The Redis layer binds its receiving side to the first event loop that uses it; every
    async test has its own loop, so each test gets its own layer object."""
    from channels.layers import channel_layers

    channel_layers.backends.clear()


def make_user(email: str, role: str, **extra) -> User:
    user = User.objects.create_user(email, PASSWORD, role=role, **extra)
    from allauth.account.models import EmailAddress

    EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
    return user


def add_totp(user: User) -> AuthenticatorDevice:
    return AuthenticatorDevice.objects.create(user=user, name="phone", confirmed=True)


def login(user: User, *, verified: bool = True, client: Client | None = None) -> Client:
    """A client logged in as ``user``; staff get a TOTP device, ``verified`` passes it."""
    client = client or Client()
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    device = AuthenticatorDevice.objects.filter(user=user, confirmed=True).first()
    if device is None and user.requires_second_factor:
        device = add_totp(user)
    session = client.session
    # As after a real sign-in's first page: activity on record, so that the first request
    # of a test writes no session row (query counts compare requests one to one).
    session["last_seen"] = int(time.time())
    session.set_expiry(session_timeout(user))
    if device is not None and verified:
        session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


def queries_for(client: Client, url: str) -> int:
    """Queries one GET of ``url`` makes, after a first GET has filled the process's caches
    (content types, for one): what a flat-count test compares should not depend on which
    tests ran before it in the same process."""
    from django.test.utils import CaptureQueriesContext

    assert client.get(url).status_code == 200
    with CaptureQueriesContext(connections["default"]) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx)


@pytest.fixture
def admin_user(db):
    return make_user("admin@example.com", Role.ADMIN)


@pytest.fixture
def support(db):
    return make_user("support@example.com", Role.SUPPORT)


@pytest.fixture
def billing_user(db):
    return make_user("billing@example.com", Role.BILLING)


@pytest.fixture
def reseller(db):
    return make_user("reseller@example.com", Role.RESELLER, company="Resell Ltd")


@pytest.fixture
def customer(db, reseller):
    return make_user("customer@example.com", Role.CUSTOMER, reseller=reseller)


@pytest.fixture
def mallory(db):
    return make_user("mallory@example.com", Role.CUSTOMER)


@pytest.fixture
def personas(admin_user, support, reseller, customer, mallory):
    return {
        "admin": admin_user,
        "support": support,
        "reseller": reseller,
        "customer": customer,
        "mallory": mallory,
    }


@pytest.fixture
def q_sync(monkeypatch):
    """django-q2 runs tasks inline (its own sync mode), through the real worker code path."""
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)


def in_thread(func, *args) -> threading.Thread:
    """Start ``func`` in a thread that closes its own database connections when done."""

    def target():
        try:
            func(*args)
        finally:
            connections.close_all()

    thread = threading.Thread(target=target)
    thread.start()
    return thread


@pytest.fixture(scope="session")
def _test_database_template(request, tmp_path_factory):
    """Parallel workers copy one migrated test database (tests/testdb.py); not with
    --reuse-db, which keeps each worker's own."""
    from tests.testdb import Template

    shared = os.environ.get("PYTEST_XDIST_WORKER") and not request.config.getvalue("reuse_db")
    return Template(tmp_path_factory.getbasetemp().parent if shared else None)


@pytest.fixture(scope="session")
def django_db_modify_db_settings(
    django_db_modify_db_settings_parallel_suffix, _test_database_template
):
    """Test databases need no durability: PostgreSQL does not wait for the disk at each
    commit (every migration of the test database's creation, every transactional test's
    flush), SQLite does not sync its file; PostgreSQL flushes with DELETE, not TRUNCATE.
    What the tests read is the same. Then the worker's database is copied from the run's
    template where there is one."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    options = db.setdefault("OPTIONS", {})
    if db["ENGINE"] == "django.db.backends.postgresql":
        options["options"] = f"{options.get('options', '')} -c synchronous_commit=off".strip()
        from tests.testdb import flush_by_delete

        flush_by_delete()
    elif "init_command" in options:
        options["init_command"] = options["init_command"].replace(
            "synchronous=NORMAL", "synchronous=OFF"
        )
    _test_database_template.prepare(db)


@pytest.fixture(scope="session")
def django_db_keepdb(request, django_db_modify_db_settings, _test_database_template):
    """A database copied from the run's template is kept as it is: not created again."""
    return bool(request.config.getvalue("reuse_db") or _test_database_template.copied)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker, _test_database_template):
    """Let teardown drop the PostgreSQL test database even if an executor thread (asgiref's,
    used by websocket tests) still holds a connection to it."""
    _test_database_template.publish(connections["default"].settings_dict)
    yield
    from django.db import connection

    if connection.vendor == "postgresql":
        with django_db_blocker.unblock(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
    _test_database_template.drop_copy(connection.settings_dict)


def wait_until(cond, timeout: float = 10.0) -> None:
    """Wait for a condition another thread or process brings about (no fixed sleeps)."""
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def call_in_thread(func, *args, **kwargs):
    """Run ``func`` in another thread and return its result (for code that publishes events
    with async_to_sync while this thread runs an event loop, e.g. Playwright's)."""
    result: dict = {}

    def target():
        result["value"] = func(*args, **kwargs)

    in_thread(target).join(30)
    return result["value"]
