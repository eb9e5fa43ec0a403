from dns.api import views

routes = [
    ("zones", views.ZoneViewSet, "zone"),
    ("records", views.RecordViewSet, "record"),
]
