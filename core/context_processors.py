from django.conf import settings

# (url name, label, icon). The url name is also the first path segment it lives under.
NAV = [
    ("dashboard", "Dashboard", "layout-dashboard"),
    ("servers", "Servers", "server"),  # not for customers: servers are their provider's
    ("websites", "Websites", "globe"),
    ("certificates", "Certificates", "shield-check"),
    ("databases", "Databases", "database"),
    ("dns", "DNS", "network"),
    ("mail", "Mail", "mail"),
    ("vps", "VPS", "cpu"),
    ("monitoring", "Monitoring", "activity"),
    ("backups", "Backups", "history"),
    ("operations", "Operations", "list-checks"),
    ("hooks", "Webhooks", "upload"),
    ("billing", "Billing", "scroll-text"),
    ("account", "Account", "user-cog"),
]
_SECTION_ALIASES = {"": "dashboard", "2fa": "account"}


def portal(request):
    first = request.path.strip("/").split("/", 1)[0]
    role = getattr(request.user, "role", None)
    return {
        "nav_items": [item for item in NAV if item[0] != "servers" or role != "customer"],
        "nav_section": _SECTION_ALIASES.get(first, first),
        "panel_allow_signup": settings.PANEL_ALLOW_SIGNUP,
    }
