from websites.api import views

routes = [
    ("websites", views.WebsiteViewSet, "website"),
    ("plans", views.PlanViewSet, "plan"),
    ("system-accounts", views.SystemAccountViewSet, "systemaccount"),
]
