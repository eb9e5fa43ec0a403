"""A server's round state as one ``json`` value (``state``) instead of two ``jsonb`` columns
rewritten every round. Additive: the old columns stay as they are (the fields are only
renamed in Django's state, ``db_column`` keeps the columns) and are copied into ``state``,
so the code before this keeps working while the migration runs and until it is replaced.
On PostgreSQL the table also gets free space in each page, so the row rewritten every
round stays in its page (a HOT update: no index entry written)."""

from django.db import migrations, models

import monitoring.fields


def copy_state(apps, schema_editor):
    ServerMonitor = apps.get_model("monitoring", "ServerMonitor")
    rows = []
    for monitor in ServerMonitor.objects.filter(state__isnull=True).iterator(1000):
        monitor.state = {"counters": monitor.old_counters, "latest": monitor.old_latest}
        rows.append(monitor)
        if len(rows) == 1000:
            ServerMonitor.objects.bulk_update(rows, ["state"])
            rows = []
    ServerMonitor.objects.bulk_update(rows, ["state"])


def fillfactor(apps, schema_editor, value="50"):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE monitoring_servermonitor SET (fillfactor = {value})")


def fillfactor_back(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE monitoring_servermonitor RESET (fillfactor)")


class Migration(migrations.Migration):
    dependencies = [("monitoring", "0004_sample_rollup_one_server_index")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RenameField("servermonitor", "counters", "old_counters"),
                migrations.RenameField("servermonitor", "latest", "old_latest"),
                migrations.AlterField(
                    "servermonitor",
                    "old_counters",
                    models.JSONField(blank=True, db_column="counters", default=dict),
                ),
                migrations.AlterField(
                    "servermonitor",
                    "old_latest",
                    models.JSONField(blank=True, db_column="latest", default=dict),
                ),
            ],
            database_operations=[],
        ),
        migrations.AddField(
            model_name="servermonitor",
            name="state",
            field=monitoring.fields.JSONTextField(blank=True, editable=False, null=True),
        ),
        migrations.RunPython(copy_state, migrations.RunPython.noop, elidable=True),
        migrations.RunPython(fillfactor, fillfactor_back),
    ]
