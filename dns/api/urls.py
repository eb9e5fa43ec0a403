from dns.api import views

routes = [
    ("zones", views.ZoneViewSet, "zone"),
    ("records", views.RecordViewSet, "record"),
    (r"zones/(?P<zone_uuid>[0-9a-fA-F-]{32,36})/records", views.ZoneRecordViewSet, "zone-record"),
]
