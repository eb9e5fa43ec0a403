"""API for card payments: the caller's cards (``/api/v1/payment-methods/``: list, save a
card from a confirmed SetupIntent, make default, remove; ``setup`` starts a SetupIntent for
Stripe.js), paying an invoice (``POST /api/v1/invoices/<uuid>/pay/``, off session) and asking
Stripe about a pending card payment (``POST /api/v1/payments/<uuid>/reconcile/``)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from billing import cards, payments
from billing.models import RECORD_PAYMENT, RECORD_REFUND, Invoice, Payment
from billing.payment_models import PaymentCard
from core.api.viewsets import PolicyViewSetMixin
from core.generic import get_for_user
from core.policy import CHANGE, VIEW, may


class PaymentCardSerializer(serializers.ModelSerializer):
    class Meta:
        model = PaymentCard
        fields = ["uuid", "brand", "last4", "exp_month", "exp_year", "is_default", "created_at"]
        read_only_fields = fields


class SaveCardSerializer(serializers.Serializer):
    setup_intent = serializers.CharField(max_length=100)


class SetupSerializer(serializers.Serializer):
    setup_intent = serializers.CharField()
    client_secret = serializers.CharField()


class PaySerializer(serializers.Serializer):
    card = serializers.UUIDField(required=False, help_text="A saved card; default: the default.")


class StaffPaymentFields(serializers.Serializer):
    """What staff settle in the panel's Stripe account: ``refund_due`` (received but not
    owed), ``refund_reference`` (the refund made) and ``attention`` (why a pending card
    payment waits for staff). Given to those the policy lets record refunds (billing staff,
    administrators); null for everyone else (customers, resellers)."""

    refund_due = serializers.SerializerMethodField()
    refund_reference = serializers.SerializerMethodField()
    attention = serializers.SerializerMethodField()

    def _staff(self) -> bool:
        if "_records_refunds" not in self.context:
            request = self.context.get("request")
            user = getattr(request, "user", None)
            self.context["_records_refunds"] = user is not None and may(
                user, RECORD_REFUND, Payment
            )
        return self.context["_records_refunds"]

    @extend_schema_field(serializers.DecimalField(max_digits=14, decimal_places=2, allow_null=True))
    def get_refund_due(self, payment) -> str | None:
        return str(payment.refund_due) if self._staff() else None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_refund_reference(self, payment) -> str | None:
        return payment.refund_reference if self._staff() else None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_attention(self, payment) -> str | None:
        return payment.attention if self._staff() else None


STAFF_PAYMENT_FIELDS = ["refund_due", "refund_reference", "attention"]


class CardPaymentSerializer(StaffPaymentFields, serializers.ModelSerializer):
    invoice = serializers.SlugRelatedField(slug_field="uuid", read_only=True)

    class Meta:
        model = Payment
        fields = ["uuid", "invoice", "amount", "currency", "method", "state", "failure_message",
                  "received_at", *STAFF_PAYMENT_FIELDS]  # fmt: skip
        read_only_fields = fields


class ReconcileSerializer(serializers.Serializer):
    payment = CardPaymentSerializer()
    state = serializers.CharField(help_text="The payment's state after the check.")
    message = serializers.CharField(help_text="What Stripe said, for people.")


class PaymentCardViewSet(
    PolicyViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Cards saved with Stripe (never their numbers). To add one: ``setup`` gives a
    SetupIntent's client secret, Stripe.js confirms it with the card, then POST its id."""

    queryset = PaymentCard.objects.all()
    serializer_class = PaymentCardSerializer

    def optimise(self, qs):
        return qs.order_by("-is_default", "-created_at")

    @extend_schema(request=SaveCardSerializer, responses={201: PaymentCardSerializer})
    def create(self, request):
        data = SaveCardSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        card = cards.do_save_card(
            request.user, actor=request.user, setup_intent=data.validated_data["setup_intent"]
        )
        return Response(PaymentCardSerializer(card).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, card):
        cards.do_remove_card(card, actor=self.request.user)

    @extend_schema(request=None, responses={200: SetupSerializer})
    @action(detail=False, methods=["post"], policy_action=VIEW)
    def setup(self, request):
        """A SetupIntent for Stripe.js: confirm it with the card, then POST its id here."""
        return Response(cards.start_card_setup(request.user, actor=request.user))

    @extend_schema(request=None, responses={200: PaymentCardSerializer})
    @action(detail=True, methods=["post"], policy_action=CHANGE)
    def default(self, request, uuid=None):
        card = cards.do_set_default_card(self.get_object(), actor=request.user)
        return Response(PaymentCardSerializer(card).data)


class PayInvoiceView(APIView):
    """Pay an issued invoice's balance with a saved card (the default unless ``card``), off
    session (an integrator has no browser for 3-D Secure: a card that needs it fails, and
    its PaymentIntent is canceled at Stripe). 200 with the payment (``succeeded``, or
    ``pending`` until Stripe's webhook); 400 with the reason for a declined card, a card
    that needs authentication or Stripe out of reach (nothing is marked paid)."""

    @extend_schema(request=PaySerializer, responses={200: CardPaymentSerializer})
    def post(self, request, uuid):
        invoice = get_for_user(Invoice, request.user, VIEW, uuid=uuid)
        data = PaySerializer(data=request.data)
        data.is_valid(raise_exception=True)
        card = None
        if data.validated_data.get("card"):
            card = get_for_user(PaymentCard, request.user, CHANGE, uuid=data.validated_data["card"])
        payment = payments.do_pay_invoice(invoice, actor=request.user, card=card)
        return Response(CardPaymentSerializer(payment, context={"request": request}).data)


class ReconcilePaymentView(APIView):
    """Ask Stripe what became of a pending card payment (for whoever may record payments
    on its invoice: administrators, billing staff and the reseller that issued it). 200
    with the payment as it is now (``succeeded``, ``failed``, or still ``pending``) and the
    message; 400 if it is not a pending card payment or Stripe cannot be reached (then
    nothing changed)."""

    @extend_schema(request=None, responses={200: ReconcileSerializer})
    def post(self, request, uuid):
        payment = get_for_user(Payment, request.user, VIEW, uuid=uuid)
        get_for_user(Invoice, request.user, RECORD_PAYMENT, pk=payment.invoice_id)
        outcome = payments.reconcile(payment, actor=request.user)
        return Response(
            ReconcileSerializer(
                {"payment": outcome.payment, "state": outcome.state, "message": outcome.message},
                context={"request": request},
            ).data
        )
