// flowpod dashboard: live updates and the few interactive bits of the server-rendered pages.
//
// The server sends `event: change` notices over SSE (/events, one shared watch per kind behind
// it). On a notice this script waits a moment (notices come in bursts), refetches the current
// URL with ?fragment=1 and swaps every [data-live] block by id; then it dispatches
// `flowpod:change` on document so timeline.js refetches its data. At most one refetch is in
// flight; notices that arrive meanwhile cause exactly one more. Server HTML is parsed with
// DOMParser and imported node by node (never run as script); everything in it was escaped
// by the server.
(function () {
  "use strict";
  var DEBOUNCE_MS = 400;
  var timer = null;
  var inFlight = false;
  var again = false;
  var lastNotice = null;

  function parse(html) {
    return new DOMParser().parseFromString(html, "text/html");
  }

  function swapLive(doc) {
    var blocks = doc.querySelectorAll("[data-live][id]");
    for (var i = 0; i < blocks.length; i++) {
      var target = document.getElementById(blocks[i].id);
      if (target) {
        // A swapped block may hold a choice the reader made (the log panel's task): keep it.
        var chosen = target.querySelector("select");
        var fresh = document.importNode(blocks[i], true);
        var select = fresh.querySelector("select");
        if (chosen && select) { select.value = chosen.value; }
        target.replaceWith(fresh);
      }
    }
    reloadShownLogs();
  }

  // The logs a reader asked for follow the run: reread after changes while the panel is open,
  // at most every LOG_REFRESH_MS (each reread may read many stored logs).
  var LOG_REFRESH_MS = 5000;
  var shownLogs = null;
  var lastLogRead = 0;
  var logTimer = null;

  function reloadShownLogs() {
    if (shownLogs === null || logTimer !== null) { return; }
    var wait = Math.max(0, lastLogRead + LOG_REFRESH_MS - Date.now());
    logTimer = window.setTimeout(function () {
      logTimer = null;
      if (shownLogs !== null) { loadLogs(shownLogs.box, shownLogs.src); }
    }, wait);
  }

  function refresh() {
    timer = null;
    if (inFlight) {
      again = true;
      return;
    }
    inFlight = true;
    var url = new URL(window.location.href);
    url.searchParams.set("fragment", "1");
    fetch(url.toString(), {credentials: "same-origin", headers: {"Accept": "text/html"}})
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      })
      .then(function (html) {
        swapLive(parse(html));
        document.dispatchEvent(new CustomEvent("flowpod:change", {detail: lastNotice}));
      })
      .catch(function () { /* the next notice tries again */ })
      .then(function () {
        inFlight = false;
        if (again) {
          again = false;
          schedule();
        }
      });
  }

  function schedule() {
    if (timer === null) {
      timer = window.setTimeout(refresh, DEBOUNCE_MS);
    }
  }

  function connect() {
    var url = document.body.getAttribute("data-events");
    var dot = document.getElementById("live-dot");
    if (!url || !window.EventSource) { return; }
    var source = new EventSource(url);
    source.addEventListener("open", function () {
      if (dot) { dot.className = "live-dot on"; dot.title = "live"; }
    });
    source.addEventListener("error", function () {
      if (dot) { dot.className = "live-dot off"; dot.title = "reconnecting"; }
    });
    source.addEventListener("change", function (event) {
      try { lastNotice = JSON.parse(event.data); } catch (e) { lastNotice = null; }
      schedule();
    });
  }

  function loadLogs(box, src) {
    shownLogs = {box: box, src: src};
    lastLogRead = Date.now();
    box.setAttribute("aria-busy", "true");
    fetch(src, {credentials: "same-origin", headers: {"Accept": "text/html"}})
      .then(function (response) { return response.text(); })
      .then(function (html) {
        var doc = parse(html);
        var nodes = [];
        for (var i = 0; i < doc.body.childNodes.length; i++) {
          nodes.push(document.importNode(doc.body.childNodes[i], true));
        }
        box.replaceChildren.apply(box, nodes);
      })
      .catch(function () { box.textContent = "The logs could not be read."; })
      .then(function () { box.removeAttribute("aria-busy"); });
  }

  function wireLogs() {
    var box = document.getElementById("logs");
    if (!box) { return; }
    var form = document.getElementById("log-filter");
    if (form) {
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        var task = form.elements.namedItem("task");
        var src = form.getAttribute("data-src");
        if (task && task.value) { src += "?task=" + encodeURIComponent(task.value); }
        loadLogs(box, src);
      });
    }
    if (box.hasAttribute("data-autoload")) {
      loadLogs(box, box.getAttribute("data-src"));
    }
  }

  function wireCancel() {
    document.addEventListener("click", function (event) {
      var button = event.target;
      if (!button || button.id !== "cancel") { return; }
      if (!window.confirm("Cancel this flow run? Its pods are deleted.")) { return; }
      button.disabled = true;
      fetch(button.getAttribute("data-url"), {
        method: "POST", credentials: "same-origin", headers: {"X-Flowpod-Action": "cancel"}
      }).then(function (response) {
        button.textContent = response.ok ? "Cancel requested" : "Cancel refused";
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    connect();
    wireLogs();
    wireCancel();
  });
})();
