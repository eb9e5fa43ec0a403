"""The VPS area of the portal, mounted at /vps/."""

from django.urls import path

from vps import console_views as console
from vps import staff_views as staff
from vps import views

urlpatterns = [
    path("", views.VpsList.as_view(), name="vps"),
    path("new/", views.VpsCreate.as_view(), name="vps_add"),
    path("keys/", views.SshKeyList.as_view(), name="ssh_keys"),
    path("keys/<uuid:uuid>/delete/", views.SshKeyDelete.as_view(), name="ssh_key_delete"),
    path("<uuid:uuid>/", views.VpsDetail.as_view(), name="vps_detail"),
    path("<uuid:uuid>/delete/", views.VpsDelete.as_view(), name="vps_delete"),
    path("<uuid:uuid>/renew/", views.VpsRenew.as_view(), name="vps_renew"),
    path("<uuid:uuid>/power/<str:action>/", views.VpsPower.as_view(), name="vps_power"),
    path("<uuid:uuid>/change/<str:action>/", views.VpsChange.as_view(), name="vps_change"),
    path("<uuid:uuid>/snapshots/", views.SnapshotCreate.as_view(), name="vps_snapshot_add"),
    path(
        "<uuid:uuid>/snapshots/<uuid:snapshot>/<str:action>/",
        views.SnapshotAction.as_view(),
        name="vps_snapshot_action",
    ),
    # Serial console and VNC (vps/console_views.py).
    path("<uuid:uuid>/console/", console.serial_page, name="vps_console"),
    path("<uuid:uuid>/console/ticket/", console.serial_ticket, name="vps_console_ticket"),
    path("<uuid:uuid>/vnc/", console.vnc_page, name="vps_vnc"),
    path("<uuid:uuid>/vnc/ticket/", console.vnc_ticket, name="vps_vnc_ticket"),
    # Staff: hypervisors, images, plans, IP pools (vps/staff_views.py).
    path("hypervisors/", staff.HypervisorList.as_view(), name="vps_hypervisors"),
    path("hypervisors/new/", staff.HypervisorEdit.as_view(), name="vps_hypervisor_add"),
    path("hypervisors/<uuid:uuid>/", staff.HypervisorDetail.as_view(), name="vps_hypervisor"),
    path(
        "hypervisors/<uuid:uuid>/edit/",
        staff.HypervisorEdit.as_view(),
        name="vps_hypervisor_edit",
    ),
    path(
        "hypervisors/<uuid:uuid>/refresh/",
        staff.HypervisorRefresh.as_view(),
        name="vps_hypervisor_refresh",
    ),
    path(
        "hypervisors/<uuid:uuid>/delete/",
        staff.HypervisorDelete.as_view(),
        name="vps_hypervisor_delete",
    ),
    path("plans/", staff.PlanList.as_view(), name="vps_plans"),
    path("plans/new/", staff.PlanEdit.as_view(), name="vps_plan_add"),
    path("plans/<uuid:uuid>/edit/", staff.PlanEdit.as_view(), name="vps_plan_edit"),
    path("plans/<uuid:uuid>/delete/", staff.PlanDelete.as_view(), name="vps_plan_delete"),
    path("images/", staff.ImageList.as_view(), name="vps_images"),
    path("images/new/", staff.ImageEdit.as_view(), name="vps_image_add"),
    path("images/<uuid:uuid>/", staff.ImageDetail.as_view(), name="vps_image"),
    path("images/<uuid:uuid>/edit/", staff.ImageEdit.as_view(), name="vps_image_edit"),
    path("images/<uuid:uuid>/copy/", staff.ImageCopy.as_view(), name="vps_image_copy"),
    path("images/<uuid:uuid>/delete/", staff.ImageDelete.as_view(), name="vps_image_delete"),
    path("pools/", staff.PoolList.as_view(), name="vps_pools"),
    path("pools/new/", staff.PoolEdit.as_view(), name="vps_pool_add"),
    path("pools/<uuid:uuid>/", staff.PoolDetail.as_view(), name="vps_pool"),
    path("pools/<uuid:uuid>/edit/", staff.PoolEdit.as_view(), name="vps_pool_edit"),
    path("pools/<uuid:uuid>/delete/", staff.PoolDelete.as_view(), name="vps_pool_delete"),
]
