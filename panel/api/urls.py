from rest_framework.routers import DefaultRouter

from accounts.api import views as account_views
from panel.api.views import OperationViewSet

router = DefaultRouter()
router.register("operations", OperationViewSet, basename="operation")
router.register("users", account_views.UserViewSet, basename="user")
router.register("tokens", account_views.ApiTokenViewSet, basename="apitoken")
router.register("audit", account_views.AuditViewSet, basename="auditentry")

urlpatterns = [*account_views.urlpatterns, *router.urls]
