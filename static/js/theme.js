// Runs in <head> before paint so the chosen theme never flashes. Choice kept in localStorage;
// html gets class "dark" (Tailwind) and data-theme (the Django admin's stylesheets).
(function () {
  var KEY = "uhp-theme";
  function preferred() {
    var saved = null;
    try { saved = localStorage.getItem(KEY); } catch (e) {}
    if (saved === "dark" || saved === "light") return saved;
    return window.matchMedia && matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  }
  function apply(theme) {
    document.documentElement.classList.toggle("dark", theme === "dark");
    document.documentElement.dataset.theme = theme;
  }
  apply(preferred());
  // Scripts run: pages may show their scripted form (the creation wizard's steps).
  document.documentElement.classList.add("js");
  function toggle() {
    var next = document.documentElement.classList.contains("dark") ? "light" : "dark";
    try { localStorage.setItem(KEY, next); } catch (e) {}
    apply(next);
    return next;
  }
  window.uhpTheme = { toggle: toggle };
  // One switch for the portal and the admin: any [data-theme-toggle] button.
  document.addEventListener("click", function (ev) {
    if (ev.target.closest("[data-theme-toggle]")) toggle();
  });
})();
