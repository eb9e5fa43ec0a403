"""VPS hours billed at each plan the VPS had in the period: the plan history
(``VpsPlanSpan``) written with every plan change (creation, resize, a failed resize put
back), usage split per (VPS, plan), each rated at its plan's price and shown as its own
invoice line; the migration that seeds one span per existing VPS."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing import services
from billing.models import BillingSettings, Invoice, UsageKind, UsageRecord
from billing.rating import rate_usage
from billing.usage import BillingPeriod, collect_usage
from core import audit
from core.models import AuditEntry, Operation
from servers.models import Server
from vps import libvirt_adapter as lv
from vps import services as vps_services
from vps.models import Hypervisor, Vps, VpsPlan, VpsPlanSpan

SEPTEMBER = BillingPeriod.parse("2026-09")  # 30 days: 720 hours
AUGUST = BillingPeriod.parse("2026-08")  # 31 days: 744 hours, past the 730 billed at most


def sep(day: int, hour: int = 0) -> datetime:
    return datetime(2026, 9, day, hour, tzinfo=UTC)


@pytest.fixture
def hv(db, admin_user):
    server = Server.objects.create(
        name="hv", address="198.51.100.10", transport=Server.Transport.LOCAL, owner=admin_user
    )
    return Hypervisor.objects.create(
        server=server, uri="test:///default", status="online", cpus=64, memory_mib=65536,
        storage_gib=2000,
    )  # fmt: skip


@pytest.fixture
def plans(db):
    BillingSettings.objects.create(issuer=None, country="DE", legal_name="Panel GmbH")
    small = VpsPlan.objects.create(
        name="S", price=Decimal("73.00"), vcpus=1, memory_mib=1024, disk_gib=10, ipv6=False
    )  # 0.10 an hour
    medium = VpsPlan.objects.create(
        name="M", price=Decimal("146.00"), vcpus=2, memory_mib=2048, disk_gib=20, ipv6=False
    )  # 0.20 an hour
    return small, medium


def make_vps(owner, plan, hv, hostname="v1", created_at=datetime(2026, 8, 1, tzinfo=UTC)) -> Vps:
    """A VPS as do_create_vps leaves it, with its first span."""
    vps = Vps.objects.create(
        hostname=hostname, owner=owner, plan=plan, hypervisor=hv, state="running",
        vcpus=plan.vcpus, memory_mib=plan.memory_mib, disk_gib=plan.disk_gib,
        created_at=created_at,
    )  # fmt: skip
    VpsPlanSpan.objects.create(vps=vps, plan=plan, since=created_at)
    return vps


def resize_at(vps: Vps, plan: VpsPlan, when: datetime, actor) -> None:
    """do_resize_vps, then its span moved to ``when`` (the service stamps now)."""
    vps_services.do_resize_vps(vps, actor=actor, data={"plan": plan})
    span = VpsPlanSpan.objects.filter(vps=vps).latest("since", "id")
    assert span.plan == plan and timezone.now() - span.since < timedelta(minutes=1)
    VpsPlanSpan.objects.filter(pk=span.pk).update(since=when)


def vps_hours(account) -> dict[str, Decimal]:
    return {
        r.description: r.quantity
        for r in UsageRecord.objects.filter(account=account, kind=UsageKind.VPS_HOURS)
    }


def test_creation_writes_the_first_span(plans, hv, admin_user, mallory):
    from vps.models import Image, IpPool

    small, _ = plans
    IpPool.objects.create(
        name="p", hypervisor=hv, network="203.0.113.0/24", gateway="203.0.113.1",
        first="203.0.113.10", last="203.0.113.20",
    )  # fmt: skip
    image = Image.objects.create(name="img", path="/x", format="qcow2", sha256="0" * 64)
    vps = vps_services.do_create_vps(
        actor=admin_user,
        data={"hostname": "new1", "plan": small, "image": image, "owner": mallory},
    )
    assert list(vps.plan_spans.values_list("plan_id", "since")) == [(small.pk, vps.created_at)]


def test_a_resize_on_day_10_bills_each_plan_for_its_hours(plans, hv, admin_user, mallory):
    small, medium = plans
    vps = make_vps(mallory, small, hv)
    resize_at(vps, medium, sep(10), admin_user)
    op = Operation.objects.get(kind="vps.resize")
    assert op.args["previous"] == {"plan": small.pk, "vcpus": 1, "memory_mib": 1024, "disk_gib": 10}

    collect_usage(SEPTEMBER, actor=admin_user)
    # 9 days at S, 21 days at M.
    assert vps_hours(mallory) == {"VPS v1 (plan S)": 216, "VPS v1 (plan M)": 504}
    rate_usage(SEPTEMBER, actor=admin_user)
    (invoice_id,) = services.issue_period(SEPTEMBER, actor=admin_user, send=False)
    invoice = Invoice.objects.get(pk=invoice_id)
    lines = {
        (line.description, line.quantity, line.unit, line.unit_price, line.amount)
        for line in invoice.lines.all()
    }
    assert lines == {
        ("VPS v1 (plan S)", Decimal("216"), "h", Decimal("0.1"), Decimal("21.60")),
        ("VPS v1 (plan M)", Decimal("504"), "h", Decimal("0.2"), Decimal("100.80")),
    }
    assert invoice.subtotal == Decimal("122.40")
    # Collecting again keeps both billed rows and writes nothing twice.
    collect_usage(SEPTEMBER, actor=admin_user)
    records = UsageRecord.objects.filter(account=mallory, kind=UsageKind.VPS_HOURS)
    assert records.count() == 2 and all(r.line_id for r in records)


def test_a_renamed_plan_bills_at_its_price_under_its_new_name(plans, hv, admin_user, mallory):
    small, medium = plans
    vps = make_vps(mallory, small, hv)
    resize_at(vps, medium, sep(10), admin_user)
    VpsPlan.objects.filter(pk=small.pk).update(name="Small (old)")
    collect_usage(SEPTEMBER, actor=admin_user)
    rate_usage(SEPTEMBER, actor=admin_user)
    amounts = {
        r.description: r.amount
        for r in UsageRecord.objects.filter(account=mallory, kind=UsageKind.VPS_HOURS)
    }
    assert amounts == {
        "VPS v1 (plan Small (old))": Decimal("21.60"),
        "VPS v1 (plan M)": Decimal("100.80"),
    }


def test_a_resize_and_back_sums_the_hours_of_each_plan(plans, hv, admin_user, mallory):
    small, medium = plans
    vps = make_vps(mallory, small, hv)
    resize_at(vps, medium, sep(10), admin_user)
    Vps.objects.filter(pk=vps.pk).update(disk_gib=10)  # a test VPS whose disk never grew
    vps.refresh_from_db()
    resize_at(vps, small, sep(20), admin_user)
    collect_usage(SEPTEMBER, actor=admin_user)
    # S from the 1st to the 10th and from the 20th; M from the 10th to the 20th.
    assert vps_hours(mallory) == {"VPS v1 (plan S)": 9 * 24 + 11 * 24, "VPS v1 (plan M)": 240}


def test_a_deletion_after_a_resize_ends_the_last_plan(plans, hv, admin_user, mallory):
    small, medium = plans
    vps = make_vps(mallory, small, hv)
    resize_at(vps, medium, sep(10), admin_user)
    entry = audit.record("vps.delete", vps, actor=admin_user)
    AuditEntry.objects.filter(pk=entry.pk).update(created_at=sep(20, 12))
    Vps.objects.filter(pk=vps.pk).update(state=Vps.State.DELETED)
    collect_usage(SEPTEMBER, actor=admin_user)
    assert vps_hours(mallory) == {"VPS v1 (plan S)": 216, "VPS v1 (plan M)": 252}


def test_a_vps_created_after_the_resize_day_of_another_is_unaffected(
    plans, hv, admin_user, mallory
):
    """Spans belong to their VPS: a VPS created mid-month counts from its creation at its
    own plan, and one without any span (written before spans existed, or by hand) is billed
    at its plan."""
    small, medium = plans
    make_vps(mallory, small, hv, hostname="late", created_at=sep(16))
    Vps.objects.create(
        hostname="bare", owner=mallory, plan=medium, hypervisor=hv, state="running",
        created_at=sep(21),
    )  # fmt: skip
    collect_usage(SEPTEMBER, actor=admin_user)
    assert vps_hours(mallory) == {"VPS late (plan S)": 15 * 24, "VPS bare (plan M)": 10 * 24}


def test_past_730_hours_both_plans_are_scaled_alike(plans, hv, admin_user, mallory, customer):
    """A 31-day month: a VPS at one plan costs its monthly price; a resized one its plans'
    monthly prices in proportion to their hours, never more."""
    small, medium = plans
    make_vps(customer, small, hv, hostname="whole", created_at=datetime(2026, 7, 1, tzinfo=UTC))
    vps = make_vps(mallory, small, hv, created_at=datetime(2026, 7, 1, tzinfo=UTC))
    resize_at(vps, medium, datetime(2026, 8, 10, tzinfo=UTC), admin_user)
    collect_usage(AUGUST, actor=admin_user)
    rate_usage(AUGUST, actor=admin_user)
    amounts = {
        (r.account_id, r.description): (r.quantity, r.amount)
        for r in UsageRecord.objects.filter(kind=UsageKind.VPS_HOURS)
    }
    assert amounts == {
        (customer.pk, "VPS whole (plan S)"): (Decimal("744"), Decimal("73.00")),
        # 73 * 216 / 744 and 146 * 528 / 744
        (mallory.pk, "VPS v1 (plan S)"): (Decimal("216"), Decimal("21.19")),
        (mallory.pk, "VPS v1 (plan M)"): (Decimal("528"), Decimal("103.61")),
    }


def test_collection_and_rating_queries_stay_flat(plans, hv, admin_user, mallory, customer):
    small, medium = plans

    def add(n: int) -> None:
        for i in range(n):
            owner = mallory if i % 2 else customer
            vps = make_vps(owner, small, hv, hostname=f"f{Vps.objects.count()}")
            if i % 2:  # every other one resized on the 10th
                VpsPlanSpan.objects.create(vps=vps, plan=medium, since=sep(10))
                Vps.objects.filter(pk=vps.pk).update(plan=medium)

    def count() -> tuple[int, int]:
        with CaptureQueriesContext(connection) as collected:
            collect_usage(SEPTEMBER, actor=admin_user)
        with CaptureQueriesContext(connection) as rated:
            rate_usage(SEPTEMBER, actor=admin_user)
        return len(collected), len(rated)

    add(2)
    collect_usage(SEPTEMBER, actor=admin_user)  # today's samples taken: not counted below
    few = count()
    add(20)
    many = count()
    assert many == few
    assert UsageRecord.objects.filter(kind=UsageKind.VPS_HOURS).count() == 22 + 11


# -- a resize that fails ------------------------------------------------------------------


class FakeSession:
    """The libvirt session resize_vps drives, failing at the step named ``fail``."""

    def __init__(self, fail: str) -> None:
        self.fail, self.calls, self.state_now = fail, [], "running"

    def lookup(self, name):
        return object()

    def state(self, name):
        return self.state_now

    def call(self, name, action, *args):
        self.calls.append(action)
        if action == "create" and self.fail == "start":
            raise lv.HypervisorError("The domain would not start.")
        self.state_now = {"shutdown": "stopped", "destroy": "stopped", "create": "running"}.get(
            action, self.state_now
        )

    def wait_state(self, name, state, timeout):
        return self.state_now == state

    def set_resources(self, name, *, vcpus, memory_mib):
        self.calls.append(("resources", vcpus, memory_mib))
        if self.fail == "define":
            raise lv.HypervisorError("defineXML refused.")

    def grow_volume(self, name, size_gib):
        self.calls.append(("grow", size_gib))
        if self.fail == "grow":
            raise lv.HypervisorError("The storage pool is full.")
        return True


def fake_connect(monkeypatch, fail: str) -> FakeSession:
    session = FakeSession(fail)

    @contextmanager
    def connect(hypervisor):
        if fail == "connect":
            raise lv.HypervisorError("libvirt is not answering.")
        yield session

    monkeypatch.setattr(lv, "connect", connect)
    return session


def resize_and_run(vps, plan, actor, capture) -> Operation:
    with capture(execute=True):
        vps_services.do_resize_vps(vps, actor=actor, data={"plan": plan})
    return Operation.objects.get(kind="vps.resize")


@pytest.mark.parametrize("fail", ["connect", "define", "grow"])
def test_a_failed_resize_puts_the_plan_back_and_bills_the_original_plan_only(
    fail, plans, hv, admin_user, mallory, q_sync, monkeypatch, django_capture_on_commit_callbacks
):
    small, medium = plans
    now = timezone.now()
    vps = make_vps(mallory, small, hv, created_at=now - timedelta(hours=5))
    session = fake_connect(monkeypatch, fail)
    op = resize_and_run(vps, medium, admin_user, django_capture_on_commit_callbacks)
    assert op.state == Operation.State.FAILED
    vps.refresh_from_db()
    assert (vps.plan, vps.vcpus, vps.memory_mib, vps.disk_gib) == (small, 1, 1024, 10)
    assert "stays on the plan S" in vps.state_message
    assert list(vps.plan_spans.values_list("plan_id", flat=True)) == [small.pk]
    entry = AuditEntry.objects.get(action="vps.resize_revert")
    assert entry.changes["plan"] == ["M", "S"] and entry.object_id == str(vps.uuid)
    if fail == "grow":  # the definition was changed: it is put back, and the VPS started
        assert session.calls[-3:] == [("grow", 20), ("resources", 1, 1024), "create"]
    if fail == "define":
        assert session.calls[-1] == "create"

    period = BillingPeriod.month_of(timezone.localdate())
    collect_usage(period, actor=admin_user)
    records = UsageRecord.objects.filter(account=mallory, kind=UsageKind.VPS_HOURS)
    assert [(r.plan_id, r.description) for r in records] == [(small.pk, "VPS v1 (plan S)")]
    begin = max(vps.created_at, period.bounds()[0])
    expected = Decimal((timezone.now() - begin).total_seconds()) / 3600
    assert abs(records[0].quantity - expected) < Decimal("0.01")


def test_a_resize_failing_after_the_disk_grew_keeps_the_new_plan(
    plans, hv, admin_user, mallory, q_sync, monkeypatch, django_capture_on_commit_callbacks
):
    """A disk never shrinks: once grown, the VPS has the new plan whatever failed after."""
    small, medium = plans
    vps = make_vps(mallory, small, hv, created_at=timezone.now() - timedelta(hours=5))
    fake_connect(monkeypatch, "start")
    op = resize_and_run(vps, medium, admin_user, django_capture_on_commit_callbacks)
    assert op.state == Operation.State.FAILED
    vps.refresh_from_db()
    assert vps.plan == medium and vps.disk_gib == 20
    assert "would not start" in vps.state_message and "stays on" not in vps.state_message
    assert list(vps.plan_spans.values_list("plan_id", flat=True)) == [small.pk, medium.pk]
    assert not AuditEntry.objects.filter(action="vps.resize_revert").exists()


def test_a_plan_with_history_is_not_deleted(plans, hv, admin_user, mallory):
    small, medium = plans
    vps = make_vps(mallory, small, hv)
    resize_at(vps, medium, sep(10), admin_user)
    with pytest.raises(ValidationError, match="billing keeps it"):
        vps_services.do_delete_plan(small, actor=admin_user)
    assert VpsPlan.objects.filter(pk=small.pk).exists()


# -- the migration ------------------------------------------------------------------------

BEFORE = [("vps", "0006_image_copy")]
AFTER = [("vps", "0007_plan_spans")]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_the_migration_seeds_one_span_per_vps_from_its_creation(admin_user, mallory):
    leaves = MigrationExecutor(connection).loader.graph.leaf_nodes()
    try:
        old = _migrate(BEFORE)
        Plan = old.get_model("vps", "VpsPlan")  # noqa: N806
        OldVps = old.get_model("vps", "Vps")  # noqa: N806
        small = Plan.objects.create(name="S", price=Decimal("73.00"))
        medium = Plan.objects.create(name="M", price=Decimal("146.00"))
        made = {
            OldVps.objects.create(
                hostname=name, owner_id=mallory.pk, plan_id=plan.pk, state=state, created_at=when
            ).pk: (plan.pk, when)
            for name, plan, state, when in [
                ("a", small, "running", sep(3)),
                ("b", medium, "deleted", sep(5, 12)),
                ("c", medium, "pending", sep(7)),
            ]
        }
        new = _migrate(AFTER)
        Span = new.get_model("vps", "VpsPlanSpan")  # noqa: N806
        got = {vps_id: (plan_id, since) for vps_id, plan_id, since in
               Span.objects.values_list("vps_id", "plan_id", "since")}  # fmt: skip
        assert got == made
    finally:
        _migrate(leaves)
