// A server's live charts (monitoring; a VPS's page too, with data-usage, data-net and
// data-topic): the series of the chosen range comes once from the element's data-api, then
// every new sample arrives over the live-event websocket (?format=json, replayed from the
// page's sequence) and is added to the last bucket or as a new point. Nothing is polled. Drawn with the vendored uPlot (static/vendor/uplot/).
(function () {
  "use strict";
  var USAGE_DEFAULT = [["cpu", "CPU %", "#0ea5e9"], ["mem_pct", "Memory %", "#8b5cf6"], ["disk_pct", "Disk %", "#f59e0b"]];
  var NET_DEFAULT = [["net_rx", "Received B/s", "#10b981"], ["net_tx", "Sent B/s", "#ef4444"]];
  var SPANS = { "1h": 3600, "24h": 86400, "7d": 604800, "30d": 2592000, "1y": 31536000 };

  function setup(box) {
    // Other charts (a VPS's) name their own series and event topic on the element.
    var USAGE = box.dataset.usage ? JSON.parse(box.dataset.usage) : USAGE_DEFAULT;
    var NET = box.dataset.net ? JSON.parse(box.dataset.net) : NET_DEFAULT;
    var TOPIC = box.dataset.topic || "monitoring.sample";
    var state = { range: "1h", step: 30, t: [], avg: {}, n: [], charts: {}, seq: Number(box.dataset.since || 0) };
    var status = box.querySelector("[data-chart-status]");
    var buttons = document.querySelectorAll("[data-metrics-ranges] [data-range]");

    function width() { return Math.max(280, box.clientWidth || 600); }

    function make(name, defs, yLabel) {
      var el = box.querySelector('[data-chart="' + name + '"]');
      el.textContent = "";
      var series = [{}].concat(defs.map(function (d) { return { label: d[1], stroke: d[2], width: 1.5, spanGaps: false }; }));
      var opts = { width: width(), height: 180, series: series, axes: [{}, { label: yLabel, size: 60 }], legend: { live: true } };
      return new uPlot(opts, data(defs), el);
    }

    function data(defs) {
      return [state.t].concat(defs.map(function (d) { return state.avg[d[0]] || state.t.map(function () { return null; }); }));
    }

    function redraw() {
      if (!state.charts.usage) {
        state.charts.usage = make("usage", USAGE, "%");
        state.charts.network = make("network", NET, "B/s");
      } else {
        state.charts.usage.setData(data(USAGE));
        state.charts.network.setData(data(NET));
      }
      status.textContent = state.t.length ? state.t.length + " points, every " + state.step + " s" : "No samples in this range yet.";
    }

    function load(range) {
      var metrics = USAGE.concat(NET).map(function (d) { return d[0]; }).join(",");
      return fetch(box.dataset.api + "?range=" + range + "&metrics=" + metrics, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
        .then(function (body) {
          state.range = range; state.step = body.step; state.t = body.t; state.avg = {};
          state.n = body.t.map(function () { return 1; });
          Object.keys(body.metrics).forEach(function (m) { state.avg[m] = body.metrics[m].avg; });
          redraw();
          box.dataset.points = String(state.t.length);
        })
        .catch(function (e) { status.textContent = "Could not load the metrics (" + e.message + ")."; });
    }

    function add(at, values) {
      var bucket = Math.floor(at / state.step) * state.step;
      var last = state.t.length - 1;
      var names = USAGE.concat(NET).map(function (d) { return d[0]; });
      if (last >= 0 && state.t[last] === bucket) {
        var n = state.n[last] + 1;
        names.forEach(function (m) {
          var v = values[m];
          if (v === undefined) return;
          var old = state.avg[m][last];
          state.avg[m][last] = old === null || old === undefined ? v : old + (v - old) / n;
        });
        state.n[last] = n;
      } else if (last < 0 || bucket > state.t[last]) {
        state.t.push(bucket); state.n.push(1);
        names.forEach(function (m) {
          if (!state.avg[m]) state.avg[m] = state.t.slice(0, -1).map(function () { return null; });
          state.avg[m].push(values[m] === undefined ? null : values[m]);
        });
        var oldest = bucket - SPANS[state.range];
        while (state.t.length && state.t[0] < oldest) {
          state.t.shift(); state.n.shift();
          names.forEach(function (m) { state.avg[m].shift(); });
        }
      }
      redraw();
      box.dataset.points = String(state.t.length);
      box.dataset.lastAt = String(at);
    }

    function listen() {
      var proto = location.protocol === "https:" ? "wss://" : "ws://";
      var ws = new WebSocket(proto + location.host + box.dataset.ws + "?format=json&since=" + state.seq);
      ws.onmessage = function (msg) {
        var ev = JSON.parse(msg.data);
        if (ev.type === "changed" && ev.model === TOPIC && ev.data && ev.data.values) {
          state.seq = Math.max(state.seq, ev.seq);
          add(ev.data.at, ev.data.values);
        } else if (ev.type === "reload") {
          load(state.range);
        }
      };
      ws.onclose = function () { setTimeout(listen, 3000); };
    }

    buttons.forEach(function (b) {
      b.addEventListener("click", function () {
        buttons.forEach(function (o) { o.setAttribute("aria-pressed", o === b ? "true" : "false"); });
        load(b.dataset.range);
      });
    });
    load("1h").then(listen);
  }

  document.querySelectorAll("[data-metrics-chart]").forEach(setup);
})();
