// Live pages. An element with data-live="/ws/live/..." keeps a websocket open; the server
// first replays every change after the sequence the element was rendered with
// (data-live-since, and data-live-line for log lines), then sends changes as they happen.
// Each message says which rows to replace or insert, which to remove and which lines to
// append; a reconnect resumes from the last sequence received. See docs/live-events.md.
(function () {
  "use strict";
  var sockets = new Map(); // root element -> its state

  function wsUrl(root, state) {
    var url = new URL(root.dataset.live, window.location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("since", String(state.seq));
    if (state.line !== null) url.searchParams.set("line", String(state.line));
    if (root.dataset.livePage) url.searchParams.set("page", root.dataset.livePage);
    return url.toString();
  }

  function element(html) {
    var template = document.createElement("template");
    template.innerHTML = html.trim();
    return template.content.firstElementChild;
  }

  function clearEmpty(scope) {
    scope.querySelectorAll("[data-empty]").forEach(function (el) { el.remove(); });
  }

  function trim(box) {
    var max = parseInt(box.dataset.liveMax || "0", 10);
    while (max && box.children.length > max) box.lastElementChild.remove();
  }

  function activate(el) {
    if (window.htmx) window.htmx.process(el);
  }

  function reload(root) {
    var target = root.dataset.liveReload && document.querySelector(root.dataset.liveReload);
    close(root);
    if (target && window.htmx) {
      window.htmx.ajax("GET", window.location.href, { target: target, swap: "innerHTML" });
    } else {
      window.location.reload();
    }
  }

  function upsert(root, rows) {
    var anchors = new Map(); // keeps a batch of new rows in the order the server sent them
    var refetch = rows.some(function (row) {
      return row.refetch && !document.getElementById(row.id);
    });
    if (refetch) {
      reload(root); // a new row of a sorted list: its place is the server's to say
      return;
    }
    rows.forEach(function (row) {
      var el = element(row.html);
      if (!el) return;
      var old = document.getElementById(row.id);
      if (old) {
        old.replaceWith(el);
        activate(el);
        return;
      }
      var box = row.insert && document.getElementById(row.insert);
      if (!box) return;
      if (!anchors.has(box)) anchors.set(box, box.firstElementChild);
      box.insertBefore(el, anchors.get(box));
      activate(el);
      clearEmpty(root);
      trim(box);
    });
  }

  function append(items) {
    items.forEach(function (item) {
      var box = document.getElementById(item.target);
      var el = element(item.html);
      if (!box || !el) return;
      var following = box.scrollTop + box.clientHeight >= box.scrollHeight - 8;
      clearEmpty(box);
      box.appendChild(el);
      if (following) box.scrollTop = box.scrollHeight;
    });
  }

  function apply(root, state, msg) {
    if (msg.reload) {
      reload(root);
      return;
    }
    upsert(root, msg.rows || []);
    (msg.remove || []).forEach(function (id) {
      var el = document.getElementById(id);
      if (el) el.remove();
    });
    append(msg.append || []);
    if (msg.seq) state.seq = Math.max(state.seq, msg.seq);
    if (msg.line) state.line = Math.max(state.line || 0, msg.line);
    if (msg.ready) root.dataset.liveState = "ready";
  }

  function open(root, state) {
    var ws = new WebSocket(wsUrl(root, state));
    state.ws = ws;
    root.dataset.liveState = "connecting";
    ws.onmessage = function (ev) {
      if (!document.contains(root)) {
        close(root);
        return;
      }
      state.retry = 500;
      apply(root, state, JSON.parse(ev.data));
    };
    ws.onclose = function (ev) {
      if (state.closed) return;
      root.dataset.liveState = "closed";
      if (ev.code === 4401 || ev.code === 4404) return; // signed out or out of reach
      setTimeout(function () {
        if (!state.closed && document.contains(root)) open(root, state);
      }, state.retry);
      state.retry = Math.min(state.retry * 2, 15000);
    };
  }

  function connect(root) {
    if (sockets.has(root)) return;
    var line = root.dataset.liveLine;
    var state = {
      seq: parseInt(root.dataset.liveSince || "0", 10),
      line: line === undefined ? null : parseInt(line, 10),
      retry: 500,
      closed: false,
      ws: null,
    };
    sockets.set(root, state);
    open(root, state);
  }

  function close(root) {
    var state = sockets.get(root);
    if (!state) return;
    state.closed = true;
    sockets.delete(root);
    if (state.ws) state.ws.close();
  }

  function scan(scope) {
    if (scope.matches && scope.matches("[data-live]")) connect(scope);
    scope.querySelectorAll("[data-live]").forEach(connect);
  }

  document.addEventListener("DOMContentLoaded", function () { scan(document); });
  // A list re-fetched by htmx (filters, pages) brings its own root, rendered with its own
  // sequence: the old socket closes with the old content and the new one starts.
  document.addEventListener("htmx:load", function (ev) { scan(ev.target); });
  document.addEventListener("htmx:beforeCleanupElement", function (ev) {
    if (sockets.has(ev.target)) close(ev.target);
  });
})();
