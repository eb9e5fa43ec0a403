from billing.api import payments_urls, views

routes = [
    ("invoices", views.InvoiceViewSet, "invoice"),
    ("payments", views.PaymentViewSet, "payment"),
    ("usage", views.UsageViewSet, "usage"),
]
# Card payments (their own module): payment methods and paying an invoice.
urlpatterns: list = [*payments_urls.urlpatterns]
