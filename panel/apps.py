from django.contrib.admin.apps import AdminConfig


class PanelAdminConfig(AdminConfig):
    """Django's admin, served by the panel's site (brand, staff-only page, list defaults)."""

    default_site = "panel.admin_site.PanelAdminSite"
