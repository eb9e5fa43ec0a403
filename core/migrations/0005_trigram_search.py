"""PostgreSQL only: trigram indexes so substring searches of big lists use an index.

Django's icontains compiles to UPPER(column) LIKE UPPER('%term%'), so the indexes are on
UPPER(column). Where the pg_trgm extension cannot be created (no privilege), the searches
still work, unindexed. SQLite (the embedded database) is left as it is.
"""

from django.db import migrations, transaction

INDEXES = [
    ("operation_label_trgm", "core_operation", "target_label"),
    ("audit_label_trgm", "core_auditentry", "object_label"),
]


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    try:
        with transaction.atomic():
            schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except Exception:  # noqa: BLE001 - no privilege: searches stay correct, just unindexed
        return
    for name, table, column in INDEXES:
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON {table} "
            f'USING gin ((UPPER("{column}"::text)) gin_trgm_ops)'
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for name, _table, _column in INDEXES:
            schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("core", "0004_list_indexes_and_daily_counts")]
    operations = [migrations.RunPython(create, drop)]
