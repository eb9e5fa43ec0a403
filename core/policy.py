"""The one permission policy: which rows a user may see or act on, with named actions.

Every model states its rules once, as a ``policy = Rules(...)`` class attribute (models
without one get ``DEFAULT``). Everything else asks this module:

- querysets: ``restrict(Model or queryset, user, action)`` (``Model.objects.for_user`` is
  the same call), used by portal views, API viewsets, the admin and form/serializer choices;
- one object with its permissions in one query: ``annotate_permissions(qs, user, actions)``
  puts a ``may`` dict on each row (``obj.may["change"]``);
- model-level questions ("may this user add servers?"): ``may(user, ADD, Server)``;
- websockets: ``stream_groups(user, prefix)``, ``stream_scope(user)`` (replays) and
  ``row_groups(owner, prefix)``;
- templates: ``{% may "apply" object as can_apply %}`` (core/templatetags/panel_tags.py).

An object out of reach is simply absent from the queryset, so lookups answer 404.
Roles: administrators may do everything a model allows them, support staff read (and what
``support_may`` adds), billing staff what ``billing_may`` allows (the billing models),
resellers act on their own rows and their customers' (and on the rows they issued, as
``issuer_may`` allows), customers on their own;
django-guardian grants open single objects for the standard actions.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Case, Q, Value, When

VIEW = "view"
ADD = "add"
CHANGE = "change"
DELETE = "delete"
APPLY = "apply"  # start work on the object (apply, test connection, facts, drift)
TERMINAL = "terminal"
ACCEPT_HOST_KEY = "accept_host_key"
CANCEL = "cancel"
RETRY = "retry"
LIFT_LOCKOUT = "lift_lockout"
RESET_2FA = "reset_2fa"

ADMIN, SUPPORT, RESELLER, CUSTOMER = "admin", "support", "reseller", "customer"
BILLING = "billing"  # staff who see and work invoices, payments and usage, nothing else
_GRANTABLE = (VIEW, CHANGE, DELETE)  # django-guardian's per-object permissions


@dataclass(frozen=True)
class Rules:
    """What each role may do with one model's rows.

    ``owner`` is the lookup path to the owning user ("" when the row *is* a user, None when
    rows have no owner); ``owner_is_id`` when that path holds a plain id, not a foreign key.
    ``owner_may`` applies to the owner and, when ``reseller_reaches_customers``, to the
    owner's reseller. ``billing_may``: what billing staff may do with every row (by default
    nothing beyond their own rows, as for a customer). ``guard`` narrows every non-admin
    action except viewing (e.g. servers on the panel's own host). ``admin_may`` None means
    everything.
    """

    owner: str | None = "owner"
    owner_may: frozenset[str] = frozenset({VIEW, CHANGE, DELETE})
    support_may: frozenset[str] = frozenset({VIEW})
    billing_may: frozenset[str] = frozenset()
    admin_may: frozenset[str] | None = None
    add: frozenset[str] = frozenset({ADMIN})
    guard: Q | None = None
    reseller_reaches_customers: bool = True
    owner_is_id: bool = False
    issuer: str | None = None
    issuer_may: frozenset[str] = frozenset()


DEFAULT = Rules()
_READ_BY_ADMINS = Rules(owner=None, support_may=frozenset(), admin_may=frozenset({VIEW}))
# Models of libraries, which cannot carry a ``policy`` attribute of their own.
EXTERNAL_RULES = {
    "account.emailaddress": Rules(owner="user", owner_may=frozenset(), admin_may=frozenset({VIEW})),
    "sites.site": _READ_BY_ADMINS,
    "django_q.schedule": _READ_BY_ADMINS,
    "django_q.success": _READ_BY_ADMINS,
    "django_q.failure": _READ_BY_ADMINS,
    "django_q.ormq": _READ_BY_ADMINS,
}


def rules_of(model) -> Rules:
    return getattr(model, "policy", None) or EXTERNAL_RULES.get(model._meta.label_lower, DEFAULT)


def role_of(user) -> str | None:
    if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return None
    return user.role


def is_staff(user) -> bool:
    """Staff see internals (full error texts, every tenant's rows)."""
    return role_of(user) in (ADMIN, SUPPORT)


def _owner_q(rules: Rules, user) -> Q:
    """The user's own rows (a reseller's: also its customers'), as a condition on the owner
    column alone: a reseller's customers come from a subquery on users rather than an OR
    across a join, which no index answers."""
    path = rules.owner
    reaches = user.role == RESELLER and rules.reseller_reaches_customers
    if path == "":
        return Q(pk=user.pk) | Q(reseller=user) if reaches else Q(pk=user.pk)
    if not reaches:
        return Q(**{path: user.pk if rules.owner_is_id else user})
    from django.contrib.auth import get_user_model

    users = get_user_model().objects.filter(Q(pk=user.pk) | Q(reseller=user)).values("pk")
    return Q(**{f"{path}__in": users})


def scope(model, user, action: str = VIEW, grants: dict | None = None) -> Q | bool:
    """The rows of ``model`` that ``user`` may ``action``: True (all), False (none) or a Q.
    ``grants``: the user's per-object grants on ``model`` already read (``granted``)."""
    role = role_of(user)
    if role is None:
        return False
    rules = rules_of(model)
    if role == ADMIN and (rules.admin_may is None or action in rules.admin_may):
        return True
    if role == SUPPORT and action in rules.support_may:
        return True
    if role == BILLING and action in rules.billing_may:
        return True
    own = None
    if rules.owner is not None and action in rules.owner_may:
        own = _owner_q(rules, user)
    if role == RESELLER and rules.issuer is not None and action in rules.issuer_may:
        # The issuer column directly (indexed), OR-ed with the owner condition: never a
        # join to the owner's reseller.
        issued = Q(**{rules.issuer: user.pk})
        own = issued if own is None else own | issued
    if action in _GRANTABLE and rules.owner is not None:  # unowned rows are never granted
        q = _with_grants(model, user, action, own, grants)
        if q is None:
            return False
    elif own is not None:
        q = own
    else:
        return False
    if rules.guard is not None and action != VIEW and role != ADMIN:
        q &= rules.guard
    return q


def restrict(qs_or_model, user, action: str = VIEW) -> models.QuerySet:
    qs = qs_or_model if isinstance(qs_or_model, models.QuerySet) else qs_or_model._default_manager
    qs = qs.all()
    found = scope(qs.model, user, action)
    if found is True:
        return qs
    if found is False:
        return qs.none()
    # Owner paths follow foreign keys forwards only, so no row is repeated: no distinct().
    return qs.filter(found)


def may(user, action: str, obj_or_model) -> bool:
    """May ``user`` do ``action`` to this object (or, given a model, create one / any)?"""
    if isinstance(obj_or_model, models.Model):
        precomputed = getattr(obj_or_model, "may", None)
        if isinstance(precomputed, dict) and action in precomputed:
            return precomputed[action]
        model = type(obj_or_model)
        return restrict(model, user, action).filter(pk=obj_or_model.pk).exists()
    if action == ADD:
        return role_of(user) in rules_of(obj_or_model).add
    return _reaches_some(rules_of(obj_or_model), role_of(user), action)


def _reaches_some(rules: Rules, role: str | None, action: str) -> bool:
    """Whether ``scope`` would give anything but False, without building its Q: the admin
    asks this for every model on every page (its menu), where building each model's
    owner/grant subqueries cost more than the rest of the page."""
    if role is None:
        return False
    if role == ADMIN and (rules.admin_may is None or action in rules.admin_may):
        return True
    if role == SUPPORT and action in rules.support_may:
        return True
    if role == BILLING and action in rules.billing_may:
        return True
    if role == RESELLER and rules.issuer is not None and action in rules.issuer_may:
        return True
    return rules.owner is not None and (action in rules.owner_may or action in _GRANTABLE)


def annotate_permissions(qs: models.QuerySet, user, actions) -> models.QuerySet:
    """Each row gets ``may_<action>`` booleans, computed in the same query."""
    annotations = {}
    grants = granted(user, qs.model, actions) if role_of(user) is not None else {}
    for action in actions:
        found = scope(qs.model, user, action, grants)
        if isinstance(found, bool):
            annotations[f"may_{action}"] = Value(found)
        else:
            annotations[f"may_{action}"] = Case(When(found, then=Value(True)), default=False)
    return qs.annotate(**annotations)


def collect_permissions(obj, actions) -> None:
    """Gather the ``may_<action>`` annotations of one row into ``obj.may``."""
    obj.may = {action: bool(getattr(obj, f"may_{action}", False)) for action in actions}


def stream_groups(user, prefix: str) -> list[str]:
    """Channels groups a subscriber joins to receive every row event it may see."""
    role = role_of(user)
    if role is None:
        return []
    if role in (ADMIN, SUPPORT):
        return [f"{prefix}.all"]
    groups = [f"{prefix}.owner.{user.pk}"]
    if role == RESELLER:
        groups.append(f"{prefix}.reseller.{user.pk}")
    return groups


def stream_scope(user) -> Q:
    """Events (rows with ``owner_id``/``reseller_id``) a subscriber hears about: the replay
    counterpart of ``stream_groups``. Routing only; what a page shows is ``restrict``."""
    role = role_of(user)
    if role is None:
        return Q(pk__in=[])
    if role in (ADMIN, SUPPORT):
        return Q()
    q = Q(owner_id=user.pk)
    if role == RESELLER:
        q |= Q(reseller_id=user.pk)
    return q


def row_groups(owner, prefix: str) -> list[str]:
    """Channels groups an event about a row owned by ``owner`` is sent to."""
    groups = [f"{prefix}.all", f"{prefix}.owner.{owner.pk}"]
    if getattr(owner, "reseller_id", None):
        groups.append(f"{prefix}.reseller.{owner.reseller_id}")
    return groups


# ``reseller_route``'s answer for rows that reach their owner's reseller, whoever that is when
# the event is made (the caller knows the owner, often already loaded).
OWNERS_RESELLER = "owner's reseller"


def reseller_route(obj) -> int | None | str:
    """Which reseller, besides the row's owner and staff, hears about ``obj`` (its webhook
    events, its audit entries), from the model's rules: the issuer when the rules name one
    (None when the panel issued it), nobody when the rows do not reach the owner's reseller
    (``reseller_reaches_customers=False``), else ``OWNERS_RESELLER``. So a panel invoice to a
    reseller's customer tells that reseller nothing, and one a reseller issued tells that
    reseller even after the customer has moved to another."""
    rules = rules_of(obj.__class__)  # __class__: what a lazy request.user stands for
    if rules.issuer is not None:
        return _related_id(obj, rules.issuer)
    if not rules.reseller_reaches_customers:
        return None
    return OWNERS_RESELLER


def _related_id(obj, path: str) -> int | None:
    """The key a lookup path (``invoice__issuer``) ends at, following loaded relations."""
    *through, last = path.split("__")
    for name in through:
        obj = getattr(obj, name, None)
        if obj is None:
            return None
    value = getattr(obj, f"{last}_id", None) if hasattr(obj, f"{last}_id") else getattr(obj, last)
    return getattr(value, "pk", value)


# Up to this many granted keys go into the SQL as literals; beyond, a subquery reads them.
GRANTS_INLINE = 500


def _with_grants(model, user, action: str, own: Q | None, grants: dict | None) -> Q | None:
    """``own`` widened by the user's per-object grants for ``action``; None when neither.

    The grants are read first (one small indexed query, nearly always empty) so that the
    usual filter is the owner condition alone, or ``owner = me OR pk IN (literal keys)``:
    either way the (owner, ordering) index answers the count and the ordering, which no
    subquery form (``pk IN (own UNION grants)``) let SQLite or PostgreSQL do."""
    if grants is None:
        grants = granted(user, model, (action,))
    keys = grants.get(action, ())
    if keys is _MANY:
        branches = _granted_pks(user, model, action)
        if own is not None:
            branches = [model._base_manager.filter(own).order_by().values("pk"), *branches]
        return Q(pk__in=branches[0].union(*branches[1:]) if len(branches) > 1 else branches[0])
    if keys:
        return Q(pk__in=keys) | own if own is not None else Q(pk__in=keys)
    # No grants: an empty condition rather than "nothing", so that ``may(user, action,
    # Model)`` answers the same whether or not a grant happens to exist today.
    return own if own is not None else Q(pk__in=[])


_MANY = object()  # more grants than GRANTS_INLINE: read them in a subquery


def granted(user, model, actions) -> dict[str, list]:
    """The keys of ``model`` rows django-guardian grants ``user`` (directly or through its
    groups), per grantable action among ``actions``, in one query on guardian's tables."""
    from django.contrib.contenttypes.models import ContentType
    from guardian.utils import get_group_obj_perms_model, get_user_obj_perms_model

    actions = [a for a in actions if a in _GRANTABLE]
    if not actions or not getattr(user, "pk", None):
        return {}
    by_user, by_group = get_user_obj_perms_model(model), get_group_obj_perms_model(model)
    if not (by_user.objects.is_generic() and by_group.objects.is_generic()):
        return dict.fromkeys(actions, _MANY)  # keys stored as foreign keys: subqueries
    name = model._meta.model_name
    codenames = {f"{a}_{name}": a for a in actions}
    where = {
        "content_type": ContentType.objects.get_for_model(model),
        "permission__codename__in": list(codenames),
    }
    own = by_user.objects.filter(user=user, **where)
    groups = by_group.objects.filter(
        group__in=user.groups.through.objects.filter(user=user).values("group_id"), **where
    )
    fields = ("permission__codename", "object_pk")
    rows = list(
        own.order_by()
        .values_list(*fields)
        .union(groups.order_by().values_list(*fields))[: GRANTS_INLINE + 1]
    )
    if len(rows) > GRANTS_INLINE:
        return dict.fromkeys(actions, _MANY)
    found: dict[str, list] = {a: [] for a in actions}
    pk = model._meta.pk
    for codename, object_pk in rows:
        try:
            found[codenames[codename]].append(pk.to_python(object_pk))
        except (ValidationError, ValueError, TypeError):
            continue  # a key of another shape cannot name a row of this model
    return found


def _granted_pks(user, model, action: str) -> list[models.QuerySet]:
    """Querysets of the primary keys django-guardian grants ``user`` object by object, one
    for the user's own grants and one for its groups'. They read only guardian's tables,
    through their (user or group, permission) indexes; ``object_pk`` (text) is cast to the
    model's integer key only on the rows of this one permission, which hold such keys."""
    from django.contrib.auth.models import Permission
    from django.contrib.contenttypes.models import ContentType
    from django.db.models import BigIntegerField, F, Subquery
    from django.db.models.functions import Cast
    from guardian.utils import get_group_obj_perms_model, get_user_obj_perms_model

    by_user, by_group = get_user_obj_perms_model(model), get_group_obj_perms_model(model)
    pk_field = model._meta.pk
    if isinstance(pk_field, models.IntegerField):
        granted_pk = Cast("object_pk", BigIntegerField())
    elif isinstance(pk_field, models.CharField):
        granted_pk = F("object_pk")
    else:
        granted_pk = None
    if granted_pk is None or not (by_user.objects.is_generic() and by_group.objects.is_generic()):
        # Keys guardian stores differently: its own (slower) filter, still one subquery.
        from guardian.shortcuts import get_objects_for_user

        perm = f"{model._meta.app_label}.{action}_{model._meta.model_name}"
        granted = get_objects_for_user(
            user, perm, klass=model, accept_global_perms=False, with_superuser=False
        )
        return [granted.order_by().values("pk")]
    permission = Permission.objects.filter(
        content_type=ContentType.objects.get_for_model(model),
        codename=f"{action}_{model._meta.model_name}",
    ).values("pk")[:1]
    own = by_user.objects.filter(user=user, permission=Subquery(permission))
    groups = by_group.objects.filter(
        group__in=user.groups.through.objects.filter(user=user).values("group_id"),
        permission=Subquery(permission),
    )
    return [qs.order_by().values(granted_pk=granted_pk) for qs in (own, groups)]


class PolicyQuerySet(models.QuerySet):
    """``Model.objects.for_user(user, action)``: the same as ``restrict``."""

    def for_user(self, user, action: str = VIEW):
        return restrict(self, user, action)


# The name the first apps were written against.
OwnedQuerySet = PolicyQuerySet
