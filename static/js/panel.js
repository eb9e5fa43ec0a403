// Portal behaviour without inline scripts (the CSP forbids them).
(function () {
  function dismiss(toast) {
    toast.classList.add("opacity-0");
    setTimeout(function () { toast.remove(); }, 300);
  }
  function armToasts(root) {
    root.querySelectorAll("[data-toast]:not([data-armed])").forEach(function (toast) {
      toast.dataset.armed = "1";
      var error = toast.classList.contains("toast-error");
      if (!error) setTimeout(function () { dismiss(toast); }, 6000);
    });
  }
  // The phone menu: a drawer over a backdrop; focus moves into it and back, Escape closes it.
  function setMenu(open) {
    var sb = document.getElementById("sidebar");
    if (!sb) return;
    sb.dataset.open = open ? "true" : "false";
    document.querySelectorAll("[aria-controls=sidebar]").forEach(function (b) {
      b.setAttribute("aria-expanded", open ? "true" : "false");
    });
    var target = open ? sb.querySelector("a, button") : document.querySelector("[aria-controls=sidebar]");
    if (target && window.matchMedia("(max-width: 1023px)").matches) target.focus();
  }
  document.addEventListener("keydown", function (ev) {
    var sb = document.getElementById("sidebar");
    if (ev.key === "Escape" && sb && sb.dataset.open === "true") setMenu(false);
  });
  document.addEventListener("click", function (ev) {
    var el = ev.target.closest("[data-dismiss]");
    if (el) { dismiss(el.closest("[data-toast]")); return; }
    if (ev.target.closest("[data-sidebar-toggle]")) {
      var sb = document.getElementById("sidebar");
      setMenu(sb.dataset.open !== "true");
      return;
    }
    var copy = ev.target.closest("[data-copy]");
    if (copy) {
      var target = document.getElementById(copy.dataset.copy);
      navigator.clipboard.writeText(target.textContent.trim()).then(function () {
        copy.dataset.copied = "1";
        copy.querySelector("[data-copy-label]").textContent = "Copied";
      });
    }
    var confirmEl = ev.target.closest("[data-confirm]");
    if (confirmEl && !window.confirm(confirmEl.dataset.confirm)) ev.preventDefault();
  });
  // Fields that only matter for some values of another field (an alert rule's kind): the
  // wrapper names the field and the values; a field with an error always stays visible.
  function applySwitches(root) {
    root.querySelectorAll("[data-switch]").forEach(function (wrap) {
      var form = wrap.closest("form");
      var input = form && form.elements[wrap.dataset.switch];
      if (!input) return;
      var shown = wrap.dataset.showFor.split(" ").indexOf(input.value) !== -1;
      wrap.hidden = !shown && !wrap.classList.contains("field-error");
    });
  }
  document.addEventListener("change", function (ev) {
    var all = ev.target.dataset && ev.target.dataset.checkAll;
    if (all) {
      document.querySelectorAll("input[type=checkbox][name='" + all + "']").forEach(function (box) {
        box.checked = ev.target.checked;
      });
      return;
    }
    if (ev.target.form && ev.target.form.querySelector("[data-switch='" + ev.target.name + "']")) {
      applySwitches(ev.target.form);
    }
  });
  document.addEventListener("DOMContentLoaded", function () { armToasts(document); applySwitches(document); });
  document.addEventListener("htmx:afterSettle", function () { armToasts(document); applySwitches(document); });
  // Work that streams only while its page is open (a site's followed logs): leaving the
  // page cancels its operation. keepalive lets the request outlive the page.
  window.addEventListener("pagehide", function () {
    var headers = {};
    try {
      headers = JSON.parse(document.body.getAttribute("hx-headers") || "{}");
    } catch (e) { /* no token: the operation ends at its time limit */ }
    document.querySelectorAll("[data-follow-stop]").forEach(function (el) {
      fetch(el.dataset.followStop, {
        method: "POST", keepalive: true, credentials: "same-origin", headers: headers,
      });
    });
  });
})();
