"""Audit entries carry the reseller they are shown to (``AuditEntry.reseller_id``, set when
recorded from the object's rules: ``core.policy.reseller_route``). Entries written before
get what the rules say now: an issued row's issuer (an invoice's, its payments'), nobody for
rows that do not reach the owner's reseller, else the owner's reseller today (what a
reseller was shown until now). The column is outside the entries' hash, so this rewrites no
part of the chain."""

from django.db import migrations, models
from django.db.models import OuterRef, Subquery

CHUNK = 500


def routes():
    """(label, issuer path or None, reaches the owner's reseller) of every model with rules,
    read from the code's models (historical models carry no ``policy``)."""
    from django.apps import apps as live

    from core.policy import rules_of

    for model in live.get_models():
        rules = rules_of(model)
        yield model._meta.label_lower, rules.issuer, rules.reseller_reaches_customers


def backfill(apps, schema_editor):
    entry_model = apps.get_model("core", "AuditEntry")
    user_model = apps.get_model("accounts", "User")
    routed = []
    for label, issuer, reaches in routes():
        if issuer is None and reaches:
            continue
        routed.append(label)
        if issuer is None:
            continue  # nobody besides the owner: the column stays empty
        try:
            model = apps.get_model(label)
        except LookupError:
            continue
        key = "uuid" if any(f.name == "uuid" for f in model._meta.fields) else "pk"
        by_issuer: dict[int, list[str]] = {}
        rows = model._default_manager.filter(**{f"{issuer}__isnull": False}).values_list(
            key, issuer
        )
        for object_key, issuer_id in rows.iterator():
            by_issuer.setdefault(issuer_id, []).append(str(object_key))
        for issuer_id, keys in by_issuer.items():
            for start in range(0, len(keys), CHUNK):
                entry_model.objects.filter(
                    object_type=label, object_id__in=keys[start : start + CHUNK]
                ).update(reseller_id=issuer_id)
    owners_reseller = user_model.objects.filter(pk=OuterRef("owner_id")).values("reseller_id")
    entry_model.objects.filter(owner_id__isnull=False).exclude(object_type__in=routed).update(
        reseller_id=Subquery(owners_reseller[:1])
    )


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0006_worker_claims"),
        ("accounts", "0004_billing_role"),
        ("billing", "0006_usage_per_plan"),
    ]

    operations = [
        migrations.AddField(
            model_name="auditentry",
            name="reseller_id",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AddIndex(
            model_name="auditentry",
            index=models.Index(fields=["reseller_id", "id"], name="audit_reseller_id"),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
