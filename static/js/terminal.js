// Web terminal: fetch a single-use ticket, then bridge xterm.js and the server's shell.
(function () {
  var box = document.getElementById("terminal");
  var status = document.getElementById("term-status");
  var term = new Terminal({ cursorBlink: true, fontSize: 14, convertEol: false });
  var fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(box);
  fit.fit();
  function setStatus(text, tone) { status.textContent = text; status.className = "badge badge-" + tone; }
  var csrf = JSON.parse(document.body.getAttribute("hx-headers"))["X-CSRFToken"];
  fetch(box.dataset.ticketUrl, { method: "POST", headers: { "X-CSRFToken": csrf }, credentials: "same-origin" })
    .then(function (r) { if (!r.ok) throw new Error("ticket refused (" + r.status + ")"); return r.json(); })
    .then(function (data) {
      var proto = location.protocol === "https:" ? "wss://" : "ws://";
      var ws = new WebSocket(proto + location.host + data.url + "?ticket=" + encodeURIComponent(data.ticket));
      ws.binaryType = "arraybuffer";
      function resize() { fit.fit(); if (ws.readyState === 1) ws.send(JSON.stringify({ t: "r", c: term.cols, r: term.rows })); }
      ws.onopen = function () { setStatus("connected", "ok"); resize(); term.focus(); };
      // data-flow="ack" (the VPS serial console): acknowledge what xterm.js has drawn, so
      // the server sends no more than its window ahead of a slow browser.
      var ack = box.dataset.flow === "ack", drawn = 0;
      function acknowledge(n) {
        drawn += n;
        if (drawn >= 16384 && ws.readyState === 1) { ws.send(JSON.stringify({ t: "a", n: drawn })); drawn = 0; }
      }
      ws.onmessage = function (ev) {
        var data = typeof ev.data === "string" ? ev.data : new Uint8Array(ev.data);
        if (!ack) { term.write(data); return; }
        term.write(data, function () { acknowledge(data.length); });
      };
      ws.onclose = function (ev) { setStatus(ev.code === 1000 ? "closed" : "disconnected (" + ev.code + ")", "warn"); };
      term.onData(function (d) { if (ws.readyState === 1) ws.send(JSON.stringify({ t: "i", d: d })); });
      window.addEventListener("resize", resize);
    })
    .catch(function (err) { setStatus(err.message, "bad"); });
})();
