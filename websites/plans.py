"""Hosting plans: what a user may have, and the checks every app runs before it creates
something that counts against a plan.

The public API other apps use:

- ``register_counter(resource, fn)``: ``fn(owners)`` gets a queryset of users and returns how
  many of ``resource`` they hold together (e.g. ``Database.objects.filter(owner__in=owners)
  .count()``). Register in ``AppConfig.ready``. Resources are the plan's limit fields:
  ``websites``, ``databases``, ``mailboxes``, ``disk_mb``, ``bandwidth_gb``.
- ``enforce_limit(owner, resource, *, actor)``: raises ``ValidationError`` ("Your plan allows 3
  websites; you have 3.") when one more would not fit. A reseller and its customers together
  count against the reseller's own plan ("Your reseller's plan (Gold) allows ...").
- ``check_allowed(owner, kind=..., php_version=..., sftp=...)``: raises ``ValidationError``
  when the plan does not allow that kind of site, PHP version or SFTP.

Users without a subscription: staff decide. An administrator (or the user's reseller)
acting for them is not limited; the user acting alone is refused ("You have no hosting
plan ..."), so a customer never gets unlimited resources by accident. Staff users
themselves are never limited.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet

from core import audit
from core.policy import ADMIN, CUSTOMER, RESELLER, SUPPORT, restrict, role_of
from core.services import accept_only, refuse_nul_in
from websites.models import Plan, Subscription

LIMITS = ("disk_mb", "bandwidth_gb", "websites", "databases", "mailboxes")
UNITS = {"disk_mb": "MB of disk", "bandwidth_gb": "GB of bandwidth a month"}
# The PHP pool's limits (websites/apply.py): a reseller's plan stays at or below its own.
PHP_LIMITS = (
    "php_max_children",
    "php_memory_limit_mb",
    "php_max_execution_time",
    "php_upload_max_mb",
)
PLAN_FIELDS = [
    "name",
    *LIMITS,
    "php_versions",
    "kinds",
    "sftp_allowed",
    "app_memory_mb",
    *PHP_LIMITS,
    "suspend_over_quota",
    "price",
]
_counters: dict[str, Callable[[QuerySet], int]] = {}


def parse_words(value: str, pattern: str, what: str) -> list[str]:
    """Space-separated words of a plan's list fields, each matching ``pattern``."""
    words = (value or "").split()
    for word in words:
        if not re.fullmatch(pattern, word):
            raise ValidationError(f"{word!r} is not a {what}.")
    return words


def register_counter(resource: str, fn: Callable[[QuerySet], int]) -> None:
    if resource not in LIMITS:
        raise ValueError(f"{resource!r} is not a plan limit ({', '.join(LIMITS)})")
    _counters[resource] = fn


def usage(owners: QuerySet, resource: str) -> int:
    fn = _counters.get(resource)
    return 0 if fn is None else int(fn(owners) or 0)


def plan_of(user) -> Plan | None:
    sub = Subscription.objects.select_related("plan").filter(user=user).first()
    return sub.plan if sub else None


def _label(resource: str, n: int | None = None) -> str:
    if resource in UNITS:
        return UNITS[resource]
    return resource[:-1] if n == 1 else resource


def _acting_for(owner, actor) -> bool:
    """Is someone above the owner deciding (an administrator or the owner's reseller)?"""
    role = role_of(actor) if actor is not None else ADMIN
    if role == ADMIN:
        return True
    return role == RESELLER and owner.reseller_id == actor.pk


def enforce_limit(owner, resource: str, *, actor, adding: int = 1) -> None:
    """Refuse (ValidationError) when ``owner`` may not have ``adding`` more of ``resource``
    (``adding=0``: refuse only when already over, for measured figures such as disk).

    Two checks: the owner's own plan, then the pool of a reseller (the reseller and all its
    customers together) against the reseller's own plan, which holds even for a customer
    without a plan of its own whom the reseller acts for, and for the reseller's own sites."""
    if resource not in LIMITS:
        raise ValueError(f"{resource!r} is not a plan limit")
    if owner.role in (ADMIN, SUPPORT):
        return
    plan = plan_of(owner)
    users = get_user_model().objects
    if plan is not None:
        _check(
            plan, users.filter(pk=owner.pk), resource, adding, "Your plan allows {}; you have {}."
        )
    elif not _acting_for(owner, actor):
        raise ValidationError(
            "You have no hosting plan, so you cannot add this yourself; ask your provider."
        )
    reseller = owner if owner.role == RESELLER else owner.reseller
    if reseller is None:
        return
    own = reseller.pk == owner.pk
    pool_plan = plan if own else plan_of(reseller)
    if pool_plan is None:
        return
    pool = users.filter(Q(pk=reseller.pk) | Q(reseller_id=reseller.pk))
    if own:
        text = "Your plan allows {} for you and your customers together; you have {} together."
    else:
        text = (
            f"Your reseller's plan ({pool_plan.name}) allows {{}} for all its customers "
            "together; they have {} together."
        )
    _check(pool_plan, pool, resource, adding, text)


def _check(plan: Plan, owners: QuerySet, resource: str, adding: int, text: str) -> None:
    limit = getattr(plan, resource)
    if limit is None:
        return
    have = usage(owners, resource)
    if have + adding > limit:
        raise ValidationError(text.format(f"{limit} {_label(resource, limit)}", have))


def usage_report(user, plan: Plan) -> list[dict]:
    """Each limit of ``plan`` with what ``user`` uses (for the portal)."""
    owners = get_user_model().objects.filter(pk=user.pk)
    rows = []
    for resource in LIMITS:
        if resource not in _counters:
            continue
        limit = getattr(plan, resource)
        used = usage(owners, resource)
        rows.append(
            {
                "name": UNITS.get(resource, resource).replace(" a month", "").capitalize(),
                "used": used,
                "limit": limit,
                "over": limit is not None and used > limit,
            }
        )
    return rows


def check_allowed(
    owner, *, kind: str | None = None, php_version: str | None = None, sftp: bool | None = None
) -> None:
    """Refuse what the owner's plan (and its reseller's) does not allow."""
    if owner.role in (ADMIN, SUPPORT):
        return
    plans = [p for p in (plan_of(owner), owner.reseller and plan_of(owner.reseller)) if p]
    for plan in plans:
        kinds = plan.kinds.split()
        if kind and kinds and kind not in kinds:
            raise ValidationError(
                {"kind": f"Your plan does not allow {kind} sites (it allows {', '.join(kinds)})."}
            )
        versions = plan.php_versions.split()
        if php_version and versions and php_version not in versions:
            raise ValidationError(
                {
                    "php_version": f"Your plan does not allow PHP {php_version} "
                    f"(it allows {', '.join(versions)})."
                }
            )
        if sftp and not plan.sftp_allowed:
            raise ValidationError("Your plan does not include SSH/SFTP access.")


def visible_plans(user) -> QuerySet:
    """Plans a user may read: those the policy gives (staff all, a reseller its own) and
    the plan the user is subscribed to."""
    mine = restrict(Plan, user).values("pk")
    if role_of(user) is None:
        return Plan.objects.none()
    return Plan.objects.filter(Q(pk__in=mine) | Q(subscriptions__user=user))


# --- services -------------------------------------------------------------------------


def check_within_parent(plan: Plan) -> None:
    """A reseller's plan stays within the reseller's own plan (when it has one)."""
    if plan.owner_id is None:
        return
    parent = plan_of(plan.owner)
    if parent is None:
        return
    errors = {}
    for name in LIMITS:
        cap, value = getattr(parent, name), getattr(plan, name)
        if cap is not None and (value is None or value > cap):
            errors[name] = f"Your own plan allows at most {cap}."
    for name in ("php_versions", "kinds"):
        cap = set(getattr(parent, name).split())
        value = set(getattr(plan, name).split())
        if cap and (not value or not value <= cap):
            errors[name] = f"Your own plan allows only: {' '.join(sorted(cap))}."
    if plan.app_memory_mb > parent.app_memory_mb:
        errors["app_memory_mb"] = f"Your own plan allows at most {parent.app_memory_mb} MB."
    for name in PHP_LIMITS:
        cap, value = getattr(parent, name), getattr(plan, name)
        if value > cap:
            errors[name] = f"Your own plan allows at most {cap}."
    if plan.sftp_allowed and not parent.sftp_allowed:
        errors["sftp_allowed"] = "Your own plan does not include SSH/SFTP."
    if errors:
        raise ValidationError(errors)


def _save_plan(plan: Plan, actor, data: dict, action: str, before: dict) -> Plan:
    refuse_nul_in(data, PLAN_FIELDS)
    for name, value in data.items():
        setattr(plan, name, value)
    plan.php_versions = " ".join(plan.php_versions.split())
    plan.kinds = " ".join(plan.kinds.split())
    plan.full_clean()
    check_within_parent(plan)
    changes = audit.diff(before, audit.snapshot(plan, PLAN_FIELDS))
    with transaction.atomic():
        plan.save()
        audit.record(action, plan, actor=actor, changes=changes)
        if plan.pk and {*PHP_LIMITS, "app_memory_mb"} & set(changes) and before:
            from websites.services import reapply_php_pools

            reapply_php_pools(plan.subscriptions.values_list("user_id", flat=True), actor=actor)
    return plan


def do_create_plan(*, actor, data: dict) -> Plan:
    """Administrators make staff plans; a reseller makes plans for its customers."""
    accept_only(data, PLAN_FIELDS)
    role = role_of(actor) if actor is not None else ADMIN
    if role not in (ADMIN, RESELLER):
        raise ValidationError("Only administrators and resellers make plans.")
    plan = Plan(owner=actor if role == RESELLER else None)
    return _save_plan(plan, actor, data, "plan.create", {})


def do_update_plan(plan: Plan, *, actor, data: dict) -> Plan:
    accept_only(data, PLAN_FIELDS)
    stored = Plan.objects.get(pk=plan.pk)
    return _save_plan(stored, actor, data, "plan.update", audit.snapshot(stored, PLAN_FIELDS))


def do_delete_plan(plan: Plan, *, actor) -> None:
    if plan.subscriptions.exists():
        raise ValidationError("Users are subscribed to this plan; move them to another first.")
    with transaction.atomic():
        audit.record("plan.delete", plan, actor=actor)
        plan.delete()


def do_subscribe(user, plan: Plan | None, *, actor) -> Subscription | None:
    """Put ``user`` on ``plan`` (None: remove the subscription). Administrators subscribe
    anyone to staff plans; a reseller its customers to its own plans; nobody themselves."""
    role = role_of(actor) if actor is not None else ADMIN
    if role == ADMIN:
        if plan is not None and plan.owner_id is not None and plan.owner_id != user.reseller_id:
            raise ValidationError({"plan": "This plan belongs to another reseller."})
    elif role == RESELLER:
        if user.reseller_id != actor.pk:
            raise ValidationError({"user": "You can only subscribe your own customers."})
        if plan is not None and plan.owner_id != actor.pk:
            raise ValidationError({"plan": "You can only use your own plans."})
    else:
        raise ValidationError("Your provider chooses your plan.")
    if plan is not None and plan.owner_id is not None and user.role != CUSTOMER:
        raise ValidationError({"plan": "A reseller's plans are for its customers."})
    current = Subscription.objects.filter(user=user).first()
    with transaction.atomic():
        if plan is None:
            if current is not None:
                audit.record("plan.unsubscribe", current, actor=actor, owner_id=user.pk)
                current.delete()
            return None
        before = {"plan": current.plan_id if current else None}
        sub = current or Subscription(user=user, plan=plan)
        limits = [*PHP_LIMITS, "app_memory_mb"]
        old_limits = [getattr(sub.plan, n) for n in limits] if current else None
        sub.plan = plan
        sub.save()
        if old_limits != [getattr(plan, n) for n in limits]:
            from websites.services import reapply_php_pools

            reapply_php_pools([user.pk], actor=actor)  # the pools take the new plan's limits
        audit.record(
            "plan.subscribe", sub, actor=actor, changes=audit.diff(before, {"plan": plan.pk})
        )
    return sub
