"""Webhook pages, mounted at /hooks/."""

from django.urls import path

from hooks import views

urlpatterns = [
    path("", views.WebhookList.as_view(), name="hooks"),
    path("new/", views.WebhookEdit.as_view(), name="webhook_add"),
    path("<uuid:uuid>/", views.WebhookEdit.as_view(), name="webhook"),
    path("<uuid:uuid>/delete/", views.WebhookDelete.as_view(), name="webhook_delete"),
    path("<uuid:uuid>/test/", views.WebhookTest.as_view(), name="webhook_test"),
]
