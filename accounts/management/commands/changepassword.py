"""Django's ``changepassword``, audited like every other password change.

(``accounts`` is listed before ``django.contrib.auth`` in INSTALLED_APPS so this one wins.)
"""

import getpass

from django.contrib.auth import get_user_model
from django.contrib.auth.management.commands import changepassword
from django.db import transaction

from core import audit


class Command(changepassword.Command):
    def handle(self, *args, **options):
        username = options["username"] or getpass.getuser()
        with transaction.atomic(using=options["database"]):
            result = super().handle(*args, **options)
            model = get_user_model()
            user = model._default_manager.using(options["database"]).get(
                **{model.USERNAME_FIELD: username}
            )
            audit.record("user.password_set", user, changes={"via": [None, "changepassword"]})
        return result
