"""One FilterSet per model, shared by the portal and the API."""

import django_filters

from hooks.models import Delivery, Webhook


class WebhookFilter(django_filters.FilterSet):
    class Meta:
        model = Webhook
        fields = ["enabled"]


class DeliveryFilter(django_filters.FilterSet):
    state = django_filters.ChoiceFilter(choices=Delivery.State.choices)
    type = django_filters.CharFilter(field_name="event__type")
    webhook = django_filters.UUIDFilter(field_name="webhook__uuid")

    class Meta:
        model = Delivery
        fields = ["state", "type", "webhook"]
