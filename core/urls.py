from django.urls import path

from core import views

url_prefix = "operations/"

urlpatterns = [
    path("", views.OperationList.as_view(), name="operations"),
    path("self-check/", views.start_self_check, name="operation-self-check"),
    path("<uuid:uuid>/", views.OperationDetail.as_view(), name="operation"),
    path("<uuid:uuid>/cancel/", views.operation_cancel, name="operation-cancel"),
    path("<uuid:uuid>/retry/", views.operation_retry, name="operation-retry"),
]
