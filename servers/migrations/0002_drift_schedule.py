"""Check every server for drift once an hour."""

from django.db import migrations


def add(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.update_or_create(
        name="servers.drift",
        defaults={
            "func": "servers.tasks.detect_drift_everywhere",
            "schedule_type": "H",
            "repeats": -1,
        },
    )


def remove(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name="servers.drift").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("servers", "0001_initial"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]
    operations = [migrations.RunPython(add, remove)]
