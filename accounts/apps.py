from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and security"

    def ready(self):
        from accounts import audit_hooks
        from accounts.api import schema  # noqa: F401 - registers OpenAPI auth extensions

        audit_hooks.connect()
