"""A local stand-in for Stripe's HTTP API (the public one cannot be reached here): a real
HTTP server on loopback speaking the subset the panel uses, as Stripe does.

- Requests are form-encoded (``a[b]=c``), authenticated with ``Authorization: Bearer
  <secret key>`` (401 ``invalid_request_error`` otherwise); answers are Stripe's JSON
  objects (``id``, ``object``, ...) and errors ``{"error": {"type", "code", "message"}}``.
- ``Idempotency-Key``: a repeated POST with the same key gets the first answer back; the
  same key with other parameters is refused (400 ``idempotency_error``), as Stripe does.
- Cards: Stripe's test payment methods ``pm_card_visa`` (succeeds) and
  ``pm_card_chargeDeclined`` (declined: HTTP 402 ``card_error``/``card_declined`` with the
  PaymentIntent in the error), ``pm_card_authenticationRequired`` (3-D Secure: the charge
  answers ``requires_action``). Confirming a SetupIntent with one makes a new ``pm_...``
  attached to the customer.
- PaymentIntents: ``POST /v1/payment_intents`` (with ``confirm=true``; off session when
  ``off_session=true``, else on session with a ``return_url``), ``GET
  /v1/payment_intents/<id>``, ``GET /v1/payment_intents?customer=..`` (newest first,
  ``limit`` and ``starting_after``, ``has_more``: Stripe's list; no metadata filter, as at
  Stripe), ``POST /v1/payment_intents/<id>/cancel`` (``cancellation_reason``; refused with
  400 ``payment_intent_unexpected_state`` once succeeded or canceled, as Stripe does). Each
  intent has a ``client_secret``.
- 3-D Secure: off session, a card needing it answers ``requires_action`` with
  ``next_action.type == "use_stripe_sdk"`` (nobody can authenticate). On session (a
  ``return_url``), ``next_action`` is ``{"type": "redirect_to_url", "redirect_to_url":
  {"url": <this server>/3ds/<pi id>, "return_url": ...}}``. That URL is an HTML page, like
  Stripe's test 3DS page, with two buttons: "Complete authentication" (the intent
  succeeds) and "Fail authentication" (``requires_payment_method`` with
  ``last_payment_error.code == "payment_intent_authentication_failure"``); each posts its
  event and redirects (302) to ``return_url`` with ``?payment_intent=pi_..&
  payment_intent_client_secret=..&redirect_status=succeeded|failed``. The page needs no API
  key (it is the customer's browser); used again once the intent left ``requires_action``,
  it changes nothing and sends the browser back.
- ``drop_answers``: the next that many POSTs to ``/v1/payment_intents`` are carried out
  (and their idempotent answer kept), then the connection is closed without an answer: a
  charge whose answer is lost on the way back.
- Webhooks: each PaymentIntent outcome becomes an event (``payment_intent.succeeded`` /
  ``payment_intent.payment_failed`` / ``payment_intent.requires_action`` /
  ``payment_intent.canceled``) signed as Stripe signs (``Stripe-Signature:
  t=<unix time>,v1=<HMAC-SHA256 of "t.body" with the endpoint secret>``), posted to
  ``webhook_url`` when set and kept in ``events`` for tests to deliver again (replays).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
import urllib.request
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode, urlsplit

TEST_CARDS = {
    "pm_card_visa": {"brand": "visa", "last4": "4242", "declines": False},
    "pm_card_mastercard": {"brand": "mastercard", "last4": "4444", "declines": False},
    "pm_card_chargeDeclined": {"brand": "visa", "last4": "0002", "declines": True},
    # 3-D Secure: a charge answers ``requires_action`` (nobody can authenticate off session).
    "pm_card_authenticationRequired": {
        "brand": "visa",
        "last4": "3184",
        "declines": False,
        "action": True,
    },
}


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The Stripe-Signature header for ``payload``."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def parse_form(body: str) -> dict:
    """Stripe's nested form encoding: ``metadata[k]=v``, ``types[]=card`` or ``types[0]``."""
    out: dict = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        parts = key.replace("]", "").split("[")
        node = out
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            nxt = parts[i + 1] if not last else None
            if last:
                if isinstance(node, list):
                    node.append(value)
                else:
                    node[part] = value
            else:
                container = [] if nxt == "" or (nxt or "").isdigit() else {}
                if isinstance(node, list):
                    node.append(container)
                    node = container
                else:
                    node = node.setdefault(part, container)
    return out


class StripeStandIn:
    def __init__(self, *, api_key: str, webhook_secret: str, publishable_key: str = ""):
        self.api_key = api_key
        self.publishable_key = publishable_key  # what Stripe.js in a browser sends
        self.webhook_secret = webhook_secret
        self.webhook_url = ""
        self.objects: dict[str, dict] = {}
        self.declining: set[str] = set()
        self.needing_action: set[str] = set()
        self.return_urls: dict[str, str] = {}  # where the 3DS page sends the browser back
        self.idempotent: dict[str, tuple[int, dict]] = {}
        self.events: list[tuple[bytes, str]] = []  # (body, Stripe-Signature)
        self.requests: list[tuple[str, str, dict, dict]] = []  # method, path, params, headers
        self.drop_answers = 0
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> StripeStandIn:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # Objects ------------------------------------------------------------------------------

    def _new(self, prefix: str, kind: str, **fields) -> dict:
        obj = {"id": f"{prefix}_{secrets.token_hex(12)}", "object": kind, "livemode": False,
               "created": int(time.time()), **fields}  # fmt: skip
        self.objects[obj["id"]] = obj
        return obj

    def _card_pm(self, test_pm: str, customer: str | None) -> dict | None:
        card = TEST_CARDS.get(test_pm)
        if card is None:
            return None
        pm = self._new(
            "pm", "payment_method", type="card", customer=customer,
            card={"brand": card["brand"], "last4": card["last4"], "exp_month": 12,
                  "exp_year": 2030},
        )  # fmt: skip
        if card["declines"]:
            self.declining.add(pm["id"])
        if card.get("action"):
            self.needing_action.add(pm["id"])
        return pm

    def route(self, method: str, path: str, p: dict) -> tuple[int, dict]:
        parts = path.strip("/").split("/")[1:]  # after "v1"
        if method == "POST" and parts == ["customers"]:
            return 200, self._new("cus", "customer", email=p.get("email"), name=p.get("name"),
                                  metadata=p.get("metadata", {}))  # fmt: skip
        if method == "POST" and parts == ["setup_intents"]:
            if p.get("customer") not in self.objects:
                return self._missing("customer", p.get("customer"))
            obj = self._new("seti", "setup_intent", customer=p["customer"],
                            status="requires_payment_method", payment_method=None,
                            usage=p.get("usage", "off_session"))  # fmt: skip
            obj["client_secret"] = f"{obj['id']}_secret_{secrets.token_hex(8)}"
            return 200, obj
        if len(parts) == 2 and parts[0] == "setup_intents" and method == "GET":
            return self._get(parts[1])
        if len(parts) == 3 and parts[0] == "setup_intents" and parts[2] == "confirm":
            intent = self.objects.get(parts[1])
            if intent is None:
                return self._missing("setup_intent", parts[1])
            pm = self._card_pm(p.get("payment_method", ""), intent["customer"])
            if pm is None:
                return self._missing("payment_method", p.get("payment_method"))
            intent.update(status="succeeded", payment_method=pm["id"])
            return 200, intent
        if len(parts) == 3 and parts[0] == "payment_methods" and parts[2] == "attach":
            pm = self.objects.get(parts[1])
            if pm is None:
                return self._missing("payment_method", parts[1])
            pm["customer"] = p.get("customer")
            return 200, pm
        if len(parts) == 3 and parts[0] == "payment_methods" and parts[2] == "detach":
            pm = self.objects.get(parts[1])
            if pm is None:
                return self._missing("payment_method", parts[1])
            pm["customer"] = None
            return 200, pm
        if method == "GET" and parts == ["payment_methods"]:
            data = [o for o in self.objects.values() if o["object"] == "payment_method"
                    and o.get("customer") == p.get("customer")]  # fmt: skip
            return 200, {"object": "list", "data": data, "has_more": False,
                         "url": "/v1/payment_methods"}  # fmt: skip
        if method == "POST" and parts == ["payment_intents"]:
            return self._payment_intent(p)
        if method == "GET" and parts == ["payment_intents"]:
            return self._list_payment_intents(p)
        if method == "GET" and len(parts) == 2 and parts[0] == "payment_intents":
            intent = self.objects.get(parts[1])
            if intent is None or intent["object"] != "payment_intent":
                return self._missing("payment_intent", parts[1])
            return 200, intent
        if method == "POST" and len(parts) == 3 and parts[::2] == ["payment_intents", "cancel"]:
            return self._cancel(parts[1], p)
        message = f"Unrecognized request URL ({method}: {path})."
        return 404, {"error": {"type": "invalid_request_error", "message": message}}

    def _get(self, oid: str) -> tuple[int, dict]:
        obj = self.objects.get(oid)
        return (200, obj) if obj else self._missing("object", oid)

    @staticmethod
    def _missing(kind: str, oid) -> tuple[int, dict]:
        return 404, {"error": {"type": "invalid_request_error", "code": "resource_missing",
                               "message": f"No such {kind}: '{oid}'"}}  # fmt: skip

    def _list_payment_intents(self, p: dict) -> tuple[int, dict]:
        intents = [o for o in reversed(self.objects.values()) if o["object"] == "payment_intent"
                   and (not p.get("customer") or o["customer"] == p["customer"])]  # fmt: skip
        if p.get("starting_after"):
            ids = [i["id"] for i in intents]
            if p["starting_after"] not in ids:
                return self._missing("payment_intent", p["starting_after"])
            intents = intents[ids.index(p["starting_after"]) + 1 :]
        limit = max(1, min(100, int(p.get("limit") or 10)))
        return 200, {"object": "list", "data": intents[:limit], "has_more": len(intents) > limit,
                     "url": "/v1/payment_intents"}  # fmt: skip

    CANCELABLE = ("requires_payment_method", "requires_capture", "requires_confirmation",
                  "requires_action", "processing")  # fmt: skip

    def _cancel(self, intent_id: str, p: dict) -> tuple[int, dict]:
        intent = self.objects.get(intent_id)
        if intent is None or intent["object"] != "payment_intent":
            return self._missing("payment_intent", intent_id)
        if intent["status"] not in self.CANCELABLE:
            message = (f"You cannot cancel this PaymentIntent because it has a status of "
                       f"{intent['status']}. Only a PaymentIntent with one of the following "
                       f"statuses may be canceled: {', '.join(self.CANCELABLE)}.")  # fmt: skip
            return 400, {"error": {"type": "invalid_request_error",
                                   "code": "payment_intent_unexpected_state",
                                   "message": message, "payment_intent": intent}}  # fmt: skip
        intent.update(status="canceled", canceled_at=int(time.time()), next_action=None,
                      cancellation_reason=p.get("cancellation_reason"))  # fmt: skip
        self._event("payment_intent.canceled", intent)
        return 200, intent

    def _payment_intent(self, p: dict) -> tuple[int, dict]:
        pm = self.objects.get(p.get("payment_method", ""))
        if pm is None or pm.get("customer") != p.get("customer"):
            return self._missing("payment_method", p.get("payment_method"))
        on_session = p.get("off_session") != "true"
        if p.get("confirm") == "true" and on_session and not p.get("return_url"):
            # Stripe wants a return_url to confirm on session with redirect-based actions.
            return 400, {"error": {"type": "invalid_request_error", "param": "return_url",
                                   "message": "Missing required param: return_url."}}  # fmt: skip
        intent = self._new(
            "pi", "payment_intent", amount=int(p["amount"]), currency=p["currency"],
            customer=p["customer"], payment_method=pm["id"], description=p.get("description"),
            metadata=p.get("metadata", {}), amount_received=0, last_payment_error=None,
            status="requires_confirmation", next_action=None, canceled_at=None,
            cancellation_reason=None,
        )  # fmt: skip
        intent["client_secret"] = f"{intent['id']}_secret_{secrets.token_hex(8)}"
        if p.get("return_url"):
            self.return_urls[intent["id"]] = p["return_url"]
        if p.get("confirm") != "true":
            return 200, intent
        if pm["id"] in self.declining:
            error = {"type": "card_error", "code": "card_declined",
                     "decline_code": "generic_decline", "message": "Your card was declined.",
                     "payment_method": pm}  # fmt: skip
            intent.update(status="requires_payment_method", last_payment_error=error)
            self._event("payment_intent.payment_failed", intent)
            return 402, {"error": {**error, "payment_intent": intent}}
        if pm["id"] in self.needing_action:
            if on_session:
                redirect = {"url": f"{self.url}/3ds/{intent['id']}",
                            "return_url": p["return_url"]}  # fmt: skip
                next_action = {"type": "redirect_to_url", "redirect_to_url": redirect}
            else:
                next_action = {"type": "use_stripe_sdk"}
            intent.update(status="requires_action", next_action=next_action)
            self._event("payment_intent.requires_action", intent)
            return 200, intent
        intent.update(status="succeeded", amount_received=intent["amount"])
        self._event("payment_intent.succeeded", intent)
        return 200, intent

    # The 3-D Secure page (the customer's browser; no API key) ----------------------------

    def authentication_page(self, intent_id: str) -> tuple[int, str, dict]:
        intent = self.objects.get(intent_id)
        if intent is None or intent["object"] != "payment_intent":
            return 404, "<!doctype html><title>Not found</title><p>No such payment.</p>", {}
        action = f"/3ds/{escape(intent_id)}"
        amount = f"{intent['amount'] / 100:.2f} {intent['currency'].upper()}"
        page = (
            '<!doctype html><html><head><meta charset="utf-8">'
            "<title>3D Secure test payment</title></head><body>"
            f"<h1>3D Secure test payment</h1><p>{escape(amount)}</p>"
            f'<form method="post" action="{action}/complete">'
            '<button type="submit">Complete authentication</button></form>'
            f'<form method="post" action="{action}/fail">'
            '<button type="submit">Fail authentication</button></form></body></html>'
        )
        return 200, page, {}

    def authenticate(self, intent_id: str, outcome: str) -> tuple[int, str, dict]:
        """The buttons: the intent succeeds or fails authentication (its event posted), and
        the browser goes back to the return_url, as Stripe sends it."""
        intent = self.objects.get(intent_id)
        if (
            intent is None
            or intent["object"] != "payment_intent"
            or outcome not in ("complete", "fail")
        ):
            return 404, "<!doctype html><title>Not found</title><p>No such payment.</p>", {}
        return_url = self.return_urls.get(intent_id, "")
        if intent["status"] == "requires_action":
            if outcome == "complete":
                intent.update(status="succeeded", amount_received=intent["amount"],
                              next_action=None)  # fmt: skip
                self._event("payment_intent.succeeded", intent)
            else:
                error = {"type": "invalid_request_error",
                         "code": "payment_intent_authentication_failure",
                         "message": "The provided PaymentMethod has failed authentication. "
                         "You can provide payment_method_data or a new PaymentMethod to "
                         "attempt to fulfill this PaymentIntent again."}  # fmt: skip
                intent.update(status="requires_payment_method", last_payment_error=error,
                              next_action=None)  # fmt: skip
                self._event("payment_intent.payment_failed", intent)
        if not return_url:
            return 200, "<!doctype html><title>Done</title><p>You may close this page.</p>", {}
        query = urlencode({
            "payment_intent": intent["id"],
            "payment_intent_client_secret": intent["client_secret"],
            "redirect_status": "succeeded" if intent["status"] == "succeeded" else "failed",
        })  # fmt: skip
        location = f"{return_url}{'&' if '?' in return_url else '?'}{query}"
        return 302, "", {"Location": location}

    # Webhooks ------------------------------------------------------------------------------

    def _event(self, kind: str, obj: dict) -> None:
        event = {"id": f"evt_{secrets.token_hex(12)}", "object": "event", "type": kind,
                 "api_version": "2025-01-27", "created": int(time.time()), "livemode": False,
                 "data": {"object": json.loads(json.dumps(obj))}}  # fmt: skip
        body = json.dumps(event).encode()
        self.events.append((body, sign(body, self.webhook_secret)))
        if self.webhook_url:
            # After the API answer, as Stripe does (asynchronously).
            threading.Timer(0.05, self.deliver, args=(body,)).start()

    def deliver(self, body: bytes, url: str = "", signature: str = "") -> int:
        request = urllib.request.Request(
            url or self.webhook_url, data=body, method="POST",
            headers={"Content-Type": "application/json",
                     "Stripe-Signature": signature or sign(body, self.webhook_secret)},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback
                return answer.status
        except urllib.error.HTTPError as exc:
            return exc.code

    # Stripe.js -----------------------------------------------------------------------------

    def browser_may(self, method: str, path: str, p: dict) -> bool:
        """Stripe.js confirms a SetupIntent from the browser with the publishable key (the
        ``key`` field) and the intent's ``client_secret`` instead of the secret key, as
        Stripe allows: only that call, only with the intent's own secret."""
        parts = path.strip("/").split("/")[1:]  # after "v1"
        if not (method == "POST" and len(parts) == 3 and parts[0] == "setup_intents"
                and parts[2] == "confirm"):  # fmt: skip
            return False
        intent = self.objects.get(parts[1]) or {}
        return bool(
            self.publishable_key
            and p.get("key") == self.publishable_key
            and intent.get("client_secret")
            and hmac.compare_digest(str(p.get("client_secret", "")), intent["client_secret"])
        )

    # HTTP ---------------------------------------------------------------------------------

    def _handler(self):
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", f"req_{secrets.token_hex(8)}")
                self.end_headers()
                self.wfile.write(data)

            def _page(self, status: int, html: str, headers: dict) -> None:
                data = html.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def _serve(self, method: str) -> None:
                split = urlsplit(self.path)
                if split.path.startswith("/3ds/"):
                    length = int(self.headers.get("Content-Length") or 0)
                    self.rfile.read(length)
                    parts = split.path.strip("/").split("/")[1:]
                    with standin.lock:
                        if method == "GET" and len(parts) == 1:
                            return self._page(*standin.authentication_page(parts[0]))
                        if method == "POST" and len(parts) == 2:
                            return self._page(*standin.authenticate(parts[0], parts[1]))
                    return self._page(405, "Method not allowed", {})
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode() if length else split.query
                params = parse_form(raw)
                standin.requests.append((method, split.path, params, dict(self.headers)))
                secret_key = self.headers.get("Authorization") == f"Bearer {standin.api_key}"
                if not secret_key and not standin.browser_may(method, split.path, params):
                    return self._answer(401, {"error": {"type": "invalid_request_error",
                                              "message": "Invalid API Key provided."}})  # fmt: skip
                key = self.headers.get("Idempotency-Key")
                with standin.lock:
                    if method == "POST" and key and key in standin.idempotent:
                        status, body, first = standin.idempotent[key]
                        if first != (split.path, params):
                            message = ("Keys for idempotent requests can only be used with "
                                       "the same parameters they were first used with. Try "
                                       f"using a key other than '{key}' if you meant to "
                                       "execute a different request.")  # fmt: skip
                            error = {"type": "idempotency_error", "message": message}
                            return self._answer(400, {"error": error})
                        return self._answer(status, body)
                    status, body = standin.route(method, split.path, params)
                    if method == "POST" and key:
                        # The answer as it was (Stripe replays the first response).
                        answer = json.loads(json.dumps(body))
                        standin.idempotent[key] = (status, answer, (split.path, params))
                    drop = standin.drop_answers > 0 and split.path == "/v1/payment_intents"
                    if drop and method == "POST":
                        standin.drop_answers -= 1
                        self.close_connection = True
                        return None  # done at "Stripe", the answer lost
                return self._answer(status, body)

            def do_GET(self):
                self._serve("GET")

            def do_POST(self):
                self._serve("POST")

            def do_DELETE(self):
                self._serve("DELETE")

        return Handler
