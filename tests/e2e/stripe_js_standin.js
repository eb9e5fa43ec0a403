// A stand-in for Stripe.js v3 (https://js.stripe.com/v3/), which cannot be reached from the
// test machine: tests/e2e/test_billing.py serves this file at that address through
// Playwright's routing, and forwards https://api.stripe.com to the Stripe stand-in
// (tests/integration/stripe_standin.py). It implements what static/js/stripe-card.js uses,
// the way Stripe.js behaves:
//   Stripe(publishableKey).elements().create("card").mount(selector)
//   stripe.confirmCardSetup(clientSecret, {payment_method: {card}})
//     -> {setupIntent} or {error: {type, code, message}}
// The card element is a plain input (Stripe's is a frame of its own): it has no name, so the
// number is never part of the panel's form. Confirming posts to
// https://api.stripe.com/v1/setup_intents/<id>/confirm with the publishable key and the
// client secret, as Stripe.js does; Stripe's test card numbers become its test payment
// methods (Stripe.js sends the card itself, which the stand-in does not take).
(function () {
  "use strict";
  var TEST_CARDS = {
    "4242424242424242": "pm_card_visa",
    "5555555555554444": "pm_card_mastercard",
    "4000000000000002": "pm_card_chargeDeclined",
    "4000002760003184": "pm_card_authenticationRequired",
  };
  var API = "https://api.stripe.com/v1";

  function luhn(digits) {
    var sum = 0;
    for (var i = 0; i < digits.length; i++) {
      var d = Number(digits[digits.length - 1 - i]);
      if (i % 2 === 1) { d *= 2; if (d > 9) d -= 9; }
      sum += d;
    }
    return digits.length >= 12 && sum % 10 === 0;
  }

  function form(fields) {
    return Object.keys(fields)
      .map(function (k) { return encodeURIComponent(k) + "=" + encodeURIComponent(fields[k]); })
      .join("&");
  }

  function CardElement() {
    this.input = null;
  }
  CardElement.prototype.mount = function (target) {
    var host = typeof target === "string" ? document.querySelector(target) : target;
    if (!host) throw new Error("Stripe: mount target " + target + " not found");
    var input = document.createElement("input");
    input.type = "text";
    input.inputMode = "numeric";
    input.autocomplete = "cc-number";
    input.placeholder = "Card number";
    input.setAttribute("aria-label", "Card number");
    input.dataset.testid = "card-number";
    host.appendChild(input);
    this.input = input;
  };
  CardElement.prototype.number = function () {
    return this.input ? this.input.value.replace(/[\s-]/g, "") : "";
  };

  window.Stripe = function (publishableKey) {
    if (!/^pk_(test|live)_\w+$/.test(publishableKey || "")) {
      throw new Error("Stripe: invalid publishable key");
    }
    return {
      elements: function () {
        return {
          create: function (type) {
            if (type !== "card") throw new Error("Stripe stand-in: only the card element");
            return new CardElement();
          },
        };
      },
      confirmCardSetup: async function (clientSecret, data) {
        var card = data && data.payment_method && data.payment_method.card;
        var digits = card ? card.number() : "";
        if (!/^\d+$/.test(digits) || !luhn(digits)) {
          // Stripe.js checks the number before anything is sent.
          return { error: { type: "validation_error", code: "incomplete_number",
                            message: "Your card number is invalid." } };
        }
        var id = String(clientSecret).split("_secret_")[0];
        var answer = await fetch(API + "/setup_intents/" + encodeURIComponent(id) + "/confirm", {
          method: "POST",
          headers: { "Content-Type": "application/x-www-form-urlencoded" },
          body: form({
            payment_method: TEST_CARDS[digits] || "pm_card_unknown_test_number",
            key: publishableKey,
            client_secret: clientSecret,
          }),
        });
        var body = await answer.json();
        if (!answer.ok) return { error: body.error };
        if (body.status !== "succeeded") {
          return { error: { type: "invalid_request_error", message: "Setup not complete." } };
        }
        return { setupIntent: body };
      },
    };
  };
})();
