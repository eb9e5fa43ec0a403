from django.conf import settings

# (url name, label, icon). The url name is also the first path segment it lives under.
NAV = [
    ("dashboard", "Dashboard", "layout-dashboard"),
    ("servers", "Servers", "server"),
    ("websites", "Websites", "globe"),
    ("dns", "DNS", "network"),
    ("vps", "VPS", "cpu"),
    ("monitoring", "Monitoring", "activity"),
    ("operations", "Operations", "list-checks"),
    ("account", "Account", "user-cog"),
]
_SECTION_ALIASES = {"": "dashboard", "2fa": "account"}


def portal(request):
    first = request.path.strip("/").split("/", 1)[0]
    return {
        "nav_items": NAV,
        "nav_section": _SECTION_ALIASES.get(first, first),
        "panel_allow_signup": settings.PANEL_ALLOW_SIGNUP,
    }
