"""The VPS area of the portal, mounted at /vps/."""

from django.urls import path

from vps import views

urlpatterns = [
    path("", views.VpsList.as_view(), name="vps"),
    path("new/", views.VpsCreate.as_view(), name="vps_add"),
    path("keys/", views.SshKeyList.as_view(), name="ssh_keys"),
    path("keys/<uuid:uuid>/delete/", views.SshKeyDelete.as_view(), name="ssh_key_delete"),
    path("<uuid:uuid>/", views.VpsDetail.as_view(), name="vps_detail"),
    path("<uuid:uuid>/delete/", views.VpsDelete.as_view(), name="vps_delete"),
    path("<uuid:uuid>/power/<str:action>/", views.VpsPower.as_view(), name="vps_power"),
    path("<uuid:uuid>/snapshots/", views.SnapshotCreate.as_view(), name="vps_snapshot_add"),
    path(
        "<uuid:uuid>/snapshots/<uuid:snapshot>/<str:action>/",
        views.SnapshotAction.as_view(),
        name="vps_snapshot_action",
    ),
]
