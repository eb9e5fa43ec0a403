from servers.api import views

routes = [
    ("servers", views.ServerViewSet, "server"),
    ("firewall-rules", views.FirewallRuleViewSet, "firewallrule"),
]
urlpatterns: list = []
