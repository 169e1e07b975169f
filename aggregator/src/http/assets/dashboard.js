// patchwatch dashboard script (served from the binary; the pages carry no inline script).
// - Times: `time.ago` shows its age, `time.local` the reader's local time.
// - Fleet: keeps the page of hosts live from /api/v1/events. Rows are rendered by the server
//   only (/fleet/rows, same query as the page); a row is replaced, and highlighted, only when
//   its data-rev changed.
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
  // The page shows one page of hosts for its query (page, state, q). When a host changes,
  // the same query is fetched again from /fleet/rows: the counts, range and pager are
  // replaced, and the rows are put in the server's order, each kept as it is unless its
  // data-rev changed (then replaced and highlighted). A host that moved onto this page
  // appears; one that moved off goes.
  function flash(tr) {
    tr.classList.remove("flash");
    void tr.offsetWidth; // restart the animation
    tr.classList.add("flash");
  }
  function applyView(html) {
    var tpl = document.createElement("template");
    tpl.innerHTML = html;
    var parts = tpl.content;
    ["fleet-summary", "fleet-range", "fleet-empty", "fleet-pager"].forEach(function (id) {
      var fresh = parts.getElementById(id), old = document.getElementById(id);
      // Replaced only when it changed: a focused link (the pager's) keeps its focus.
      if (fresh && old && fresh.outerHTML !== old.outerHTML) {
        old.replaceWith(document.importNode(fresh, true));
      }
    });
    var body = parts.querySelector("#fleet tbody");
    if (!body) return;
    var current = {};
    Array.prototype.forEach.call(fleet.rows, function (tr) {
      current[tr.getAttribute("data-host")] = tr;
    });
    var wanted = [], changed = [];
    Array.prototype.forEach.call(body.rows, function (tr) {
      var old = current[tr.getAttribute("data-host")];
      if (old && old.getAttribute("data-rev") === tr.getAttribute("data-rev")) {
        wanted.push(old);
        return;
      }
      var row = document.importNode(tr, true);
      localTimes(row);
      wanted.push(row);
      changed.push(row);
    });
    Array.prototype.slice.call(fleet.rows).forEach(function (tr) {
      if (wanted.indexOf(tr) < 0) tr.remove();
    });
    // Move only rows out of place, so unchanged rows keep their highlight state.
    wanted.forEach(function (tr, i) {
      if (fleet.rows[i] !== tr) fleet.insertBefore(tr, fleet.rows[i] || null);
    });
    changed.forEach(flash);
    refreshTimes();
  }
  function loadView() {
    return fetch("/fleet/rows" + location.search, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(applyView)
      .catch(function () {});
  }
  var timer = null;
  function hostChanged() {
    // Batches arrive in bursts, from many hosts: one fetch of the page per burst.
    if (timer) return;
    timer = setTimeout(function () { timer = null; loadView(); }, 500);
  }
  if (fleet && document.getElementById("fleet-view") && window.EventSource) {
    var es = new EventSource("/api/v1/events");
    es.addEventListener("ready", function () { setLive("live", "live"); });
    es.addEventListener("host", hostChanged);
    es.addEventListener("lagged", hostChanged);
    es.onerror = function () { setLive("down", "reconnecting"); };
    // Catch up on what changed before (re)connecting; unchanged rows stay as they are.
    es.onopen = function () { loadView(); };
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
