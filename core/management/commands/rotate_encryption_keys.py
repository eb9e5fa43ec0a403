from django.core.management.base import BaseCommand
from django.db import transaction

from core.fields import encrypted_fields


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret with the first key of PANEL_ENCRYPTION_KEYS. "
        "Reading decrypts with any listed key; writing encrypts with the first."
    )

    def handle(self, *args, **options):
        total = 0
        for model, name in encrypted_fields():
            with transaction.atomic():
                rows = model.objects.exclude(**{f"{name}__isnull": True}).exclude(**{name: ""})
                for pk, value in rows.values_list("pk", name).iterator():
                    model.objects.filter(pk=pk).update(**{name: value})
                    total += 1
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {total} value(s) with the first key."))
