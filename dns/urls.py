"""The DNS area of the portal, mounted at /dns/."""

from django.urls import path

from dns import views

urlpatterns = [
    path("", views.ZoneList.as_view(), name="dns"),
    path("new/", views.ZoneCreate.as_view(), name="zone_add"),
    path("<uuid:uuid>/", views.ZoneDetail.as_view(), name="zone"),
    path("<uuid:uuid>/delete/", views.ZoneDelete.as_view(), name="zone_delete"),
    path("<uuid:uuid>/publish/", views.ZonePublish.as_view(), name="zone_publish"),
    path("<uuid:uuid>/check-ns/", views.ZoneCheckNs.as_view(), name="zone_check_ns"),
    path("<uuid:uuid>/dnssec/", views.ZoneDnssec.as_view(), name="zone_dnssec"),
    path("<uuid:uuid>/import/", views.ZoneImport.as_view(), name="zone_import"),
    path("<uuid:uuid>/export/", views.ZoneExport.as_view(), name="zone_export"),
    path("<uuid:uuid>/records/", views.RecordAdd.as_view(), name="record_add"),
    path(
        "<uuid:uuid>/records/delete/", views.RecordBulkDelete.as_view(), name="record_bulk_delete"
    ),
    path("<uuid:uuid>/records/<uuid:record>/", views.RecordEdit.as_view(), name="record_edit"),
    path(
        "<uuid:uuid>/records/<uuid:record>/delete/",
        views.RecordDelete.as_view(),
        name="record_delete",
    ),
]
