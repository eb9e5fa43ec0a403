"""Fail operations whose worker died, every five minutes."""

from django.db import migrations


def add(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.update_or_create(
        name="panel.reap_stale_operations",
        defaults={
            "func": "panel.tasks.reap_stale_operations",
            "schedule_type": "I",
            "minutes": 5,
            "repeats": -1,
        },
    )


def remove(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(
        name="panel.reap_stale_operations"
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("panel", "0002_worker_heartbeat_schedule")]
    operations = [migrations.RunPython(add, remove)]
