from django.db import models

from core import crypto


class EncryptedTextField(models.TextField):
    """A text value stored encrypted; reads give the plain text back.

    Not searchable or indexable by content, by design.
    """

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return crypto.encrypt(value)

    def from_db_value(self, value, expression, connection):
        if value is None or value == "":
            return value
        return crypto.decrypt(value)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        return name, "core.fields.EncryptedTextField", args, kwargs


def encrypted_fields():
    """Every (model, field name) holding encrypted data, for key rotation."""
    from django.apps import apps

    for model in apps.get_models():
        for field in model._meta.concrete_fields:
            if isinstance(field, EncryptedTextField):
                yield model, field.name
