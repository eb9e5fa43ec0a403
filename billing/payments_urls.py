"""Payment pages, mounted at /billing/payments/ (included by billing/urls.py)."""

from django.urls import path

from billing import payments_views as views

urlpatterns = [
    path("", views.payment_methods, name="billing_payment_methods"),
    path("cards/setup/", views.card_setup, name="billing_card_setup"),
    path("cards/save/", views.card_save, name="billing_card_save"),
    path("cards/<uuid:uuid>/default/", views.card_default, name="billing_card_default"),
    path("cards/<uuid:uuid>/remove/", views.card_remove, name="billing_card_remove"),
    path("invoices/<uuid:uuid>/pay/", views.pay_invoice, name="billing_pay_invoice"),
    path("invoices/<uuid:uuid>/return/", views.payment_return, name="billing_payment_return"),
    path("<uuid:uuid>/reconcile/", views.reconcile_payment, name="billing_payment_reconcile"),
    path("<uuid:uuid>/refunded/", views.record_refund, name="billing_payment_refunded"),
    path("dunning/", views.dunning_queue, name="billing_dunning"),
    path("stripe/webhook/", views.stripe_webhook, name="billing_stripe_webhook"),
]
