// patchwatch dashboard script (served from the binary; the pages carry no inline script).
// - Times: `time.ago` shows its age, `time.local` the reader's local time.
// - Fleet: keeps the rows live from /api/v1/events. Rows are rendered by the server only
//   (/fleet/rows); a row is replaced, and highlighted, only when its data-rev changed.
// - Forms with data-api post their fields as JSON to that API path (same origin, so the
//   server's cross-site write checks pass); buttons with data-post post to theirs.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var fleet = document.querySelector("#fleet tbody");

  function ago(ms) {
    var s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return s + "s ago";
    var m = Math.floor(s / 60); if (m < 60) return m + "m ago";
    var h = Math.floor(m / 60); if (h < 48) return h + "h " + (m % 60) + "m ago";
    return Math.floor(h / 24) + "d ago";
  }
  function refreshTimes() {
    var now = Date.now();
    document.querySelectorAll("time.ago").forEach(function (t) {
      var d = Date.parse(t.getAttribute("datetime"));
      if (isNaN(d)) return;
      t.textContent = t.classList.contains("full")
        ? new Date(d).toLocaleString() + " · " + ago(now - d)
        : ago(now - d);
    });
  }
  function localTimes(root) {
    root.querySelectorAll("time.local").forEach(function (t) {
      var d = Date.parse(t.getAttribute("datetime"));
      if (!isNaN(d)) {
        t.textContent = new Date(d).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
        t.title = t.getAttribute("datetime");
      }
    });
  }
  localTimes(document);
  refreshTimes();
  setInterval(refreshTimes, 1000);

  function setLive(state, text) {
    if (!live) return;
    live.setAttribute("data-state", state);
    live.textContent = text;
  }

  // ---- fleet ----
  function flash(tr) {
    tr.classList.remove("flash");
    void tr.offsetWidth; // restart the animation
    tr.classList.add("flash");
  }
  function rowFor(host) {
    for (var i = 0; i < fleet.rows.length; i++) {
      if (fleet.rows[i].getAttribute("data-host") === host) return fleet.rows[i];
    }
    return null;
  }
  function sortRows() {
    var rows = Array.prototype.slice.call(fleet.rows);
    rows.sort(function (a, b) {
      var r = (+a.getAttribute("data-rank")) - (+b.getAttribute("data-rank"));
      if (r) return r;
      var x = a.getAttribute("data-host"), y = b.getAttribute("data-host");
      return x < y ? -1 : x > y ? 1 : 0;
    });
    rows.forEach(function (r) { fleet.appendChild(r); });
  }
  function summarize() {
    var counts = { failed: 0, stalled: 0, in_progress: 0, succeeded: 0 };
    for (var i = 0; i < fleet.rows.length; i++) {
      var s = fleet.rows[i].getAttribute("data-state");
      if (s in counts) counts[s]++;
    }
    var set = function (id, n) { var e = document.getElementById(id); if (e) e.textContent = n; };
    set("stat-hosts", fleet.rows.length);
    Object.keys(counts).forEach(function (k) { set("stat-" + k, counts[k]); });
    var e = document.getElementById("fleet-empty"); if (e) e.hidden = fleet.rows.length > 0;
  }
  function applyRows(html) {
    var tpl = document.createElement("template");
    tpl.innerHTML = "<table><tbody>" + html + "</tbody></table>";
    var fresh = tpl.content.querySelectorAll("tr[data-host]");
    fresh.forEach(function (tr) {
      var old = rowFor(tr.getAttribute("data-host"));
      if (old && old.getAttribute("data-rev") === tr.getAttribute("data-rev")) return;
      var row = document.importNode(tr, true);
      if (old) fleet.replaceChild(row, old); else fleet.appendChild(row);
      localTimes(row);
      flash(row);
    });
    sortRows();
    summarize();
    refreshTimes();
  }
  function loadRows(host) {
    var url = "/fleet/rows" + (host ? "?host=" + encodeURIComponent(host) : "");
    return fetch(url, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(applyRows)
      .catch(function () {});
  }
  var pending = {}, timer = null;
  function hostChanged(name) {
    // Batches arrive in bursts: one fetch per host per burst.
    pending[name] = true;
    if (timer) return;
    timer = setTimeout(function () {
      var names = Object.keys(pending);
      pending = {}; timer = null;
      names.forEach(function (n) { loadRows(n); });
    }, 250);
  }
  if (fleet && window.EventSource) {
    var es = new EventSource("/api/v1/events");
    es.addEventListener("ready", function () { setLive("live", "live"); });
    es.addEventListener("host", function (e) { hostChanged(JSON.parse(e.data).hostname); });
    es.addEventListener("lagged", function () { loadRows(null); });
    es.onerror = function () { setLive("down", "reconnecting"); };
    // Catch up on what changed before (re)connecting; unchanged rows stay as they are.
    es.onopen = function () { loadRows(null); };
  } else if (live) {
    live.hidden = true; // Only the fleet view is live.
  }

  // ---- forms ----
  function showError(form, text) {
    var p = form.querySelector(".form-error");
    if (p) { p.textContent = text; p.hidden = !text; }
  }
  document.querySelectorAll("form[data-api]").forEach(function (form) {
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var body = {};
      new FormData(form).forEach(function (v, k) {
        v = String(v).trim();
        if (v === "") return;
        var input = form.querySelector('[name="' + k + '"]');
        // A ticked checkbox is a yes (an unticked one is not in the form data at all).
        if (input && input.type === "checkbox") { body[k] = true; return; }
        // A datetime-local input is the reader's local time; the API takes RFC 3339.
        if (input && input.type === "datetime-local") {
          var d = new Date(v);
          if (!isNaN(d)) v = d.toISOString();
        }
        body[k] = v;
      });
      showError(form, "");
      var button = form.querySelector("button[type=submit]");
      if (button) button.disabled = true;
      fetch(form.getAttribute("data-api"), {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body)
      }).then(function (r) {
        if (r.ok) { location.reload(); return null; }
        return r.json().then(function (j) { showError(form, j.error || ("HTTP " + r.status)); },
                             function () { showError(form, "HTTP " + r.status); });
      }).catch(function (e) { showError(form, String(e)); })
        .then(function () { if (button) button.disabled = false; });
    });
  });
  document.querySelectorAll("button[data-post]").forEach(function (b) {
    b.addEventListener("click", function () {
      b.disabled = true;
      fetch(b.getAttribute("data-post"), { method: "POST", credentials: "same-origin" })
        .then(function (r) {
          if (r.ok) { location.reload(); return; }
          b.disabled = false;
          r.json().then(function (j) { b.title = j.error || ""; }, function () {});
        });
    });
  });
})();
