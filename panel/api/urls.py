from rest_framework.routers import DefaultRouter

from accounts.api import views as account_views
from core.api.views import OperationViewSet
from servers.api.views import FirewallRuleViewSet, ServerViewSet

router = DefaultRouter()
router.register("operations", OperationViewSet, basename="operation")
router.register("users", account_views.UserViewSet, basename="user")
router.register("tokens", account_views.ApiTokenViewSet, basename="apitoken")
router.register("audit", account_views.AuditViewSet, basename="auditentry")
router.register("servers", ServerViewSet, basename="server")
router.register("firewall-rules", FirewallRuleViewSet, basename="firewallrule")

urlpatterns = [*account_views.urlpatterns, *router.urls]
