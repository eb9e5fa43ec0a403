from core.api.views import OperationViewSet

routes = [("operations", OperationViewSet, "operation")]
urlpatterns: list = []
