from websites.api import views

routes = [
    ("websites", views.WebsiteViewSet, "website"),
    ("plans", views.PlanViewSet, "plan"),
    ("system-accounts", views.SystemAccountViewSet, "systemaccount"),
]
from websites.databases.api.urls import routes as database_routes  # noqa: E402

routes += database_routes
from websites.certificates.api.urls import routes as certificate_routes  # noqa: E402

routes += certificate_routes
