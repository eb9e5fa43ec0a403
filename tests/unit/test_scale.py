"""Pages stay flat as tables grow: keyset pages, capped admin counts, the daily rollup."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from core import rollups
from core.models import AuditEntry, Operation, OperationDay
from core.operations import execute_operation, start_operation
from core.pagination import CappedPaginator, decode_cursor, keyset_page, ordering_of
from tests.conftest import login

pytestmark = pytest.mark.django_db


def ops(owner, n, **fields):
    fields = {"kind": "test.run", "task": "tests.support.steps", "owner": owner, **fields}
    now = timezone.now()
    return Operation.objects.bulk_create(Operation(created_at=now, **fields) for _ in range(n))


class TestKeyset:
    def test_pages_walk_forward_and_back_through_equal_timestamps(self, customer):
        ops(customer, 7)  # one timestamp for all: the id decides
        qs = Operation.objects.all()
        seen, cursor, pages = [], None, []
        while True:
            page = keyset_page(qs, cursor, 3)
            pages.append(page)
            seen += [op.pk for op in page.object_list]
            if not page.has_next:
                break
            cursor = page.next_cursor
        assert seen == sorted(seen, reverse=True) and len(set(seen)) == 7
        back = keyset_page(qs, pages[-1].previous_cursor, 3)
        assert back.object_list == pages[-2].object_list and back.has_previous

    def test_a_foreign_or_broken_cursor_means_the_first_page(self, customer):
        ops(customer, 3)
        qs = Operation.objects.all()
        page = keyset_page(qs, "not-a-cursor", 2)
        assert page.object_list == list(qs[:2]) and not page.has_previous
        audit_cursor = keyset_page(AuditEntry.objects.all(), None, 1).next_cursor
        assert decode_cursor(audit_cursor or "x", ordering_of(qs)) is None

    def test_the_deepest_page_costs_one_query(self, customer):
        made = ops(customer, 30)
        middle = Operation.objects.get(pk=made[14].pk)
        from core.pagination import cursor_for

        cursor = cursor_for(middle, ordering_of(Operation.objects.all()))
        with CaptureQueriesContext(connection) as queries:
            page = keyset_page(Operation.objects.all(), cursor, 5)
        assert len(queries) == 1 and "OFFSET" not in queries[0]["sql"].upper()
        assert "COUNT(" not in queries[0]["sql"].upper()
        assert page.object_list[0].pk < middle.pk

    def test_portal_list_pages_by_cursor(self, customer):
        ops(customer, 30)
        client = login(customer)
        first = client.get("/operations/")
        page = first.context["page_obj"]
        assert page.has_next and len(page.object_list) == 25
        second = client.get(f"/operations/?cursor={page.next_cursor}")
        rest = second.context["page_obj"].object_list
        assert len(rest) == 5 and rest[0].pk < page.object_list[-1].pk
        assert b'rel="prev"' in second.content and b"Newer" in second.content

    def test_activity_pages_by_cursor(self, admin_user):
        from core import audit

        for i in range(60):
            audit.record("test.thing", admin_user, actor=admin_user, changes={"i": [None, i]})
        client = login(admin_user)
        page = client.get("/account/activity/").context["page_obj"]
        assert page.is_keyset and page.has_next and len(page.object_list) == 50


class TestAdmin:
    @pytest.mark.parametrize("url", ["/admin/core/operation/", "/admin/core/auditentry/"])
    def test_big_changelists_never_read_the_whole_table(self, admin_user, customer, url):
        ops(customer, 5, state="failed")
        client = login(admin_user)
        client.get(url)  # warm the cached filter values
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url)
        assert response.status_code == 200
        sql = [q["sql"].upper() for q in queries]
        assert not [s for s in sql if "DISTINCT" in s], "a date hierarchy or a values filter"
        counts = [s for s in sql if "COUNT(" in s]
        assert counts and all("LIMIT" in s for s in counts), counts

    def test_capped_count(self, customer):
        ops(customer, 12)
        CappedPaginator.CAP, cap = 10, CappedPaginator.CAP
        try:
            assert CappedPaginator(Operation.objects.all(), 5).count == 11
        finally:
            CappedPaginator.CAP = cap


class TestRollup:
    def test_finishing_counts_once_per_day_owner_and_state(self, customer, mallory):
        for owner, task in [(customer, "steps"), (customer, "steps"), (mallory, "boom")]:
            op = start_operation(kind="test.run", task=f"tests.support.{task}", owner=owner)
            execute_operation(op.pk)
        today = timezone.localdate()
        got = set(OperationDay.objects.values_list("day", "owner_id", "state", "count"))
        assert got == {(today, customer.pk, "succeeded", 2), (today, mallory.pk, "failed", 1)}
        assert rollups.rebuild() == 2
        again = set(OperationDay.objects.values_list("day", "owner_id", "state", "count"))
        assert again == got

    def test_chart_sees_only_what_the_user_may(self, customer, reseller, mallory, admin_user):
        today = timezone.localdate()
        OperationDay.objects.create(day=today, owner_id=customer.pk, state="succeeded", count=3)
        OperationDay.objects.create(day=today, owner_id=mallory.pk, state="failed", count=4)
        assert rollups.daily(reseller) == [(today, "succeeded", 3)]
        assert rollups.daily(mallory) == [(today, "failed", 4)]
        assert sorted(rollups.daily(admin_user)) == [(today, "failed", 4), (today, "succeeded", 3)]

    def test_dashboard_queries_do_not_grow_with_operations(self, reseller, customer):
        client = login(reseller)
        counts = []
        for n in (2, 40):
            ops(customer, n, state="succeeded", finished_at=timezone.now())
            rollups.rebuild()
            client.get("/")
            with CaptureQueriesContext(connection) as queries:
                client.get("/")
            counts.append(len(queries))
            assert not [q for q in queries if "TRUNC" in q["sql"].upper()]
        assert counts[0] == counts[1]


def test_admin_search_reads_only_the_newest_rows_unless_given_an_id(admin_user, customer):
    from core.admin_base import BigTable

    made = ops(customer, 6, target_label="needle")
    client = login(admin_user)
    window, BigTable.search_window = BigTable.search_window, 3
    try:
        found = client.get("/admin/core/operation/?q=needle").context["cl"].result_list
        assert {op.pk for op in found} == {op.pk for op in made[-3:]}
        oldest = made[0]
        by_uuid = client.get(f"/admin/core/operation/?q={oldest.uuid}").context["cl"]
        assert [op.pk for op in by_uuid.result_list] == [oldest.pk]
        by_id = client.get(f"/admin/core/operation/?q={oldest.pk}").context["cl"]
        assert [op.pk for op in by_id.result_list] == [oldest.pk]
    finally:
        BigTable.search_window = window


def test_api_cursor_pages_follow_the_requested_ordering(customer):
    for kind in ["b.x", "a.x", "c.x", "a.x"]:
        Operation.objects.create(kind=kind, task="tests.support.steps", owner=customer)
    client = login(customer)
    page = client.get("/api/v1/operations/?ordering=kind&limit=3").json()
    kinds = [r["kind"] for r in page["results"]]
    rest = client.get(page["next"]).json()["results"]
    assert kinds + [r["kind"] for r in rest] == ["a.x", "a.x", "b.x", "c.x"]
