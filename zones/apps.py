from django.apps import AppConfig


class DnsConfig(AppConfig):
    # The module is not called ``dns``: that name is dnspython's, which this app drives (a
    # top-level ``dns`` package here would hide it from every import). The label, and so the
    # URLs (/dns/), model labels and table names, stay "dns".
    name = "zones"
    label = "dns"
    # Until the app has pages of its own (a urls.py), the portal shows this placeholder.
    placeholder = ("DNS", "network", "DNS zones and their records will be listed here.")
