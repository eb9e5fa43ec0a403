import secrets

from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.models import Role, User
from core import audit


class Command(BaseCommand):
    help = "Create the first administrator if there is none and print a one-time password."

    def add_arguments(self, parser):
        parser.add_argument("--email", default="admin@example.com")

    def handle(self, *args, email, **options):
        if User.objects.filter(role=Role.ADMIN).exists():
            self.stdout.write("An administrator exists already; sign in with that account.")
            return
        password = secrets.token_urlsafe(12)
        with transaction.atomic():
            user = User.objects.create_user(email, password, role=Role.ADMIN, name="Administrator")
            _mark_email_verified(user)
            audit.record("user.bootstrap_admin", user)
        self.stdout.write(self.style.SUCCESS("First administrator created."))
        self.stdout.write(f"  Email:    {email}")
        self.stdout.write(f"  Password: {password}   (shown once: change it after signing in)")
        self.stdout.write("  You will be asked to set up two-factor authentication at first login.")


def _mark_email_verified(user) -> None:
    from allauth.account.models import EmailAddress

    EmailAddress.objects.update_or_create(
        user=user, email=user.email, defaults={"verified": True, "primary": True}
    )
