from django.core.management.base import BaseCommand, CommandError

from accounts.bootstrap import ensure_first_admin, first_admin, reset_password


class Command(BaseCommand):
    help = (
        "Create the first administrator if there is none and print a one-time password; "
        "with --reset, give the first administrator a new one-time password."
    )

    def add_arguments(self, parser):
        parser.add_argument("--email", default="admin@example.com")
        parser.add_argument(
            "--reset", action="store_true", help="set a new one-time password for it"
        )

    def handle(self, *args, email, reset, **options):
        if reset:
            user = first_admin()
            if user is None:
                raise CommandError("There is no administrator yet; run without --reset.")
            password = reset_password(user)
            self.stdout.write(self.style.SUCCESS("New one-time password set."))
        else:
            user, password = ensure_first_admin(email)
            if password is None:
                self.stdout.write(
                    f"An administrator exists already: {user.email}. Lost its password? "
                    "Run this again with --reset."
                )
                return
            self.stdout.write(self.style.SUCCESS("First administrator created."))
        self.stdout.write(f"  Email:    {user.email}")
        self.stdout.write(f"  Password: {password}   (shown once: change it after signing in)")
