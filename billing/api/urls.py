from billing.api import views

routes = [
    ("invoices", views.InvoiceViewSet, "invoice"),
    ("payments", views.PaymentViewSet, "payment"),
    ("usage", views.UsageViewSet, "usage"),
]
urlpatterns: list = []
