// VNC screen of a VPS: fetch a single-use ticket (with the screen's password), then let
// noVNC (vendored, static/vendor/novnc) speak RFB over the panel's websocket.
import RFB from "../vendor/novnc/core/rfb.js";

const box = document.getElementById("vnc-screen");
const status = document.getElementById("vnc-status");
const cad = document.getElementById("vnc-cad");
function setStatus(text, tone) { status.textContent = text; status.className = "badge badge-" + tone; }
const csrf = JSON.parse(document.body.getAttribute("hx-headers"))["X-CSRFToken"];

fetch(box.dataset.ticketUrl, { method: "POST", headers: { "X-CSRFToken": csrf }, credentials: "same-origin" })
  .then(async (r) => {
    const data = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(data.error || "ticket refused (" + r.status + ")");
    return data;
  })
  .then((data) => {
    const proto = location.protocol === "https:" ? "wss://" : "ws://";
    const url = proto + location.host + data.url + "?ticket=" + encodeURIComponent(data.ticket);
    const rfb = new RFB(box, url, { credentials: { password: data.password }, wsProtocols: ["binary"] });
    rfb.scaleViewport = true;
    rfb.addEventListener("connect", () => { setStatus("connected", "ok"); cad.disabled = false; rfb.focus(); });
    rfb.addEventListener("disconnect", (ev) => {
      cad.disabled = true;
      setStatus(ev.detail.clean ? "closed" : "disconnected", "warn");
    });
    rfb.addEventListener("securityfailure", (ev) => setStatus("refused: " + (ev.detail.reason || ev.detail.status), "bad"));
    rfb.addEventListener("desktopname", (ev) => { box.dataset.desktop = ev.detail.name; });
    cad.addEventListener("click", () => rfb.sendCtrlAltDel());
  })
  .catch((err) => setStatus(err.message, "bad"));
