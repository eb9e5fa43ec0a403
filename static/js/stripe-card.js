// Payment methods page: Stripe.js confirms a SetupIntent with the card typed into Stripe's
// frame, then the form posts the SetupIntent's id so the panel records the saved card.
(function () {
  const form = document.getElementById("stripe-card-form");
  if (!form || !window.Stripe) return;
  const stripe = window.Stripe(form.dataset.publishableKey);
  const card = stripe.elements().create("card");
  card.mount("#stripe-card-element");
  const error = document.getElementById("stripe-card-error");
  const csrf = form.querySelector("[name=csrfmiddlewaretoken]").value;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const answer = await fetch(form.dataset.setupUrl, {
      method: "POST",
      headers: { "X-CSRFToken": csrf },
    });
    const setup = await answer.json();
    if (!answer.ok) { error.textContent = setup.error; return; }
    const result = await stripe.confirmCardSetup(setup.client_secret, {
      payment_method: { card: card },
    });
    if (result.error) { error.textContent = result.error.message; return; }
    form.querySelector("[name=setup_intent]").value = result.setupIntent.id;
    form.submit();
  });
})();
