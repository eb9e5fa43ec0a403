"""core.policy: who sees which rows, and in a query shape the owner index answers."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.db import connection, transaction
from guardian.shortcuts import assign_perm

from core.policy import APPLY, CHANGE, DELETE, VIEW, annotate_permissions, may, restrict
from servers.models import Server
from websites.models import Website

pytestmark = pytest.mark.django_db


@pytest.fixture
def servers(admin_user, customer, mallory):
    def server(name, owner, **extra):
        return Server.objects.create(name=name, address="93.184.216.34", owner=owner, **extra)

    return {
        "customer": server("cust", customer),
        "mallory": server("mal", mallory),
        "mallory_local": server("mal-local", mallory, transport="local"),
        "admin": server("adm", admin_user),
    }


def names(user, action=VIEW) -> set[str]:
    return set(restrict(Server, user, action).values_list("name", flat=True))


class TestVisibility:
    def test_owners_resellers_staff(
        self, servers, customer, reseller, mallory, support, admin_user
    ):
        assert names(customer) == {"cust"}
        assert names(reseller) == {"cust"}  # its customer's, not mallory's
        assert names(mallory) == {"mal", "mal-local"}
        assert names(mallory, APPLY) == {"mal"}  # the guard: never the panel's own host
        assert names(support) == names(admin_user) == {"cust", "mal", "mal-local", "adm"}
        assert names(support, CHANGE) == set()

    def test_a_grant_opens_one_object_for_one_action(self, servers, customer):
        assign_perm("servers.view_server", customer, servers["mallory"])
        assert names(customer) == {"cust", "mal"}
        assert names(customer, CHANGE) == {"cust"}
        assert not may(customer, CHANGE, servers["mallory"])
        assert names(customer, APPLY) == {"cust"}  # only view/change/delete are grantable

    def test_a_group_grant_reaches_its_members_only(self, servers, customer, mallory):
        team = Group.objects.create(name="team")
        team.user_set.add(customer)
        assign_perm("servers.delete_server", team, servers["admin"])
        assert names(customer, DELETE) == {"cust", "adm"}
        assert names(mallory, DELETE) == {"mal"}

    def test_guard_holds_against_grants(self, servers, customer):
        assign_perm("servers.change_server", customer, servers["mallory_local"])
        assert names(customer, CHANGE) == {"cust"}
        assert names(customer, VIEW) == {"cust"}

    def test_a_grant_on_another_model_opens_nothing_here(self, servers, customer, admin_user):
        site = Website.objects.create(
            domain="granted.example.test", server=servers["admin"], owner=admin_user
        )
        assign_perm("websites.view_website", customer, site)
        assert names(customer) == {"cust"}
        assert set(restrict(Website, customer)) == {site}

    def test_annotated_flags_match_the_querysets(self, servers, customer):
        assign_perm("servers.view_server", customer, servers["mallory"])
        rows = annotate_permissions(restrict(Server, customer), customer, [VIEW, CHANGE])
        flags = {s.name: (s.may_view, s.may_change) for s in rows}
        assert flags == {"cust": (True, True), "mal": (True, False)}


def _plan(qs) -> list[str]:
    sql, params = qs.query.sql_with_params()
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
            return [row[3] for row in cursor.fetchall()]
        cursor.execute(f"EXPLAIN {sql}", params)
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.parametrize("persona", ["customer", "reseller"])
@pytest.mark.parametrize("model", [Website, Server])
def test_the_list_query_is_answered_by_the_owner_index(request, model, persona):
    """A list filtered by the policy reads the owner index, never the whole table: the
    grant branch must not scan the model's table and a reseller's customers must not be an
    OR across a join."""
    user = request.getfixturevalue(persona)
    table = model._meta.db_table
    qs = restrict(model, user).order_by("-pk")[:25]
    if connection.vendor == "sqlite":
        plan = _plan(qs)
        assert [step for step in plan if "(owner_id=?)" in step and "INDEX" in step], plan
        assert not [step for step in plan if step.startswith("SCAN")], plan
    else:
        # Tiny tables make a sequential scan cheapest; forbid it to see what the shape allows.
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
            plan = _plan(qs)
        assert [step for step in plan if "Index Cond: (owner_id =" in step], plan
        assert not [step for step in plan if f"Seq Scan on {table}" in step], plan


class TestGrantsReadFirst:
    """The policy reads a user's grants first, so the usual filter is the owner condition
    alone; grants still open their objects, inline or (many) through a subquery."""

    def test_without_grants_the_filter_is_the_owner_alone(self, servers, customer):
        sql = str(restrict(Server, customer).query).lower()
        assert "guardian" not in sql and "union" not in sql, sql
        assert names(customer, DELETE) == {"cust"}

    def test_a_grant_still_opens_its_object(self, servers, customer, mallory):
        assign_perm("servers.change_server", customer, servers["admin"])
        assert names(customer, CHANGE) == {"cust", "adm"}
        assert may(customer, CHANGE, servers["admin"])
        assert not may(customer, DELETE, servers["admin"])
        assert names(mallory, CHANGE) == {"mal"}  # the grant is the customer's alone

    def test_many_grants_go_through_a_subquery(self, servers, customer, monkeypatch):
        import core.policy

        monkeypatch.setattr(core.policy, "GRANTS_INLINE", 1)
        team = Group.objects.create(name="team")
        team.user_set.add(customer)
        assign_perm("servers.view_server", customer, servers["mallory"])
        assign_perm("servers.view_server", team, servers["admin"])
        qs = restrict(Server, customer)
        assert "guardian" in str(qs.query).lower()
        assert set(qs.values_list("name", flat=True)) == {"cust", "mal", "adm"}
        rows = annotate_permissions(restrict(Server, customer), customer, [VIEW, CHANGE])
        assert {s.name: (s.may_view, s.may_change) for s in rows} == {
            "cust": (True, True),
            "mal": (True, False),
            "adm": (True, False),
        }


@pytest.mark.parametrize("persona", ["customer", "reseller"])
def test_the_vps_list_is_ordered_by_the_owner_index(request, persona):
    """The VPS list (newest first) walks the (owner, -created_at) index: no sort of every
    row of the user's, which the subquery form of grants forced."""
    from vps.models import Vps

    qs = restrict(Vps, request.getfixturevalue(persona)).order_by("-created_at", "id")[:50]
    if connection.vendor == "sqlite":
        plan = _plan(qs)
        assert [step for step in plan if "INDEX" in step and "owner_id" in step], plan
        if persona == "customer":
            assert not [step for step in plan if "TEMP B-TREE" in step], plan
    else:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
            plan = _plan(qs)
        assert [step for step in plan if "Index Cond: (owner_id =" in step], plan


def test_model_level_may_agrees_with_the_full_scope(personas, billing_user):
    """``may(user, action, Model)`` answers without building the scope's subqueries (the
    admin asks it for every model on every page): it must say what ``scope`` would."""
    from django.contrib.admin.sites import site

    from core import policy

    actions = (VIEW, CHANGE, DELETE, APPLY, policy.TERMINAL, policy.CANCEL, policy.RETRY)
    for user in [*personas.values(), billing_user]:
        for model in site._registry:  # every model the admin's menu asks about
            for action in actions:
                expected = policy.scope(model, user, action) is not False
                assert may(user, action, model) is expected, (user.role, model, action)
