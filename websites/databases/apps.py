from django.apps import AppConfig


class DatabasesConfig(AppConfig):
    """Customer databases (MariaDB/MySQL and PostgreSQL): a sub-app of websites with its own
    label, models and migrations. Its pages are mounted by websites/urls.py, its API routes
    by websites/api/urls.py."""

    name = "websites.databases"
    label = "databases"
    verbose_name = "Customer databases"

    def ready(self):
        from core import schedules
        from core.sections import add_section
        from websites.databases import plan
        from websites.databases.sections import server_database_servers, website_databases

        schedules.every(60, "websites.databases.tasks.refresh_sizes")
        plan.register()
        add_section(
            "servers.server_detail",
            "databases/partials/server_database_servers.html",
            server_database_servers,
        )
        add_section(
            "websites.website_detail",
            "databases/partials/website_databases.html",
            website_databases,
        )
