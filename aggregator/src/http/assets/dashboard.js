// patchwatch dashboard: keeps the fleet view live from /api/v1/events (Server-Sent Events).
// Rows are updated in place; the markup mirrors host_row / finding_row in dashboard.rs.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var fleet = document.querySelector("#fleet tbody");
  var findings = document.querySelector("#findings tbody");
  var MAX_FINDINGS = 25;

  function esc(s) {
    return String(s == null ? "" : s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function orDash(s) { return s ? esc(s) : '<span class="muted">—</span>'; }
  function timeCell(t) {
    return t ? '<time class="ago" datetime="' + esc(t) + '" title="' + esc(t) + '">' + esc(t) + "</time>"
             : '<span class="muted">—</span>';
  }
  var OUTCOMES = { in_progress: "In progress", succeeded: "Succeeded", failed: "Failed", stalled: "Stalled" };
  function outcomeBadge(o) {
    return '<span class="badge outcome-' + esc(o) + '">' + (OUTCOMES[o] || "Unknown") + "</span>";
  }
  function counts(c) {
    return '<span class="counts">' + ["critical", "high", "medium", "low", "info"].map(function (k) {
      var n = c[k] || 0;
      return '<span class="count sev-' + k + (n ? "" : " zero") + '" title="' + k + '">' + n + "</span>";
    }).join("") + "</span>";
  }
  function hostCells(h) {
    var r = h.latest_run || {};
    return '<td class="host"><strong>' + esc(h.hostname) + "</strong><small>" + esc(h.fqdn) + "</small></td>" +
      "<td>" + orDash(r.product) + '</td><td class="mono">' + orDash(r.target_build) + "</td>" +
      "<td>" + orDash(r.phase) + "</td><td>" + outcomeBadge(r.outcome || "unspecified") + "</td>" +
      "<td>" + timeCell(r.last_line_time || h.last_seen) + "</td><td>" + counts(h.findings || {}) + "</td>";
  }
  function findingCells(f) {
    return "<td>" + timeCell(f.observed_time) + '</td><td><span class="sev sev-' + esc(f.severity) + '">' +
      esc(f.severity) + "</span></td><td>" + esc(f.host) + '</td><td class="mono">' + esc(f.rule_id) +
      '</td><td><a href="/findings/' + encodeURIComponent(f.id) + '">' + esc(f.title || f.rule_id) + "</a></td>";
  }
  function flash(tr) {
    tr.classList.remove("flash");
    void tr.offsetWidth; // restart the animation
    tr.classList.add("flash");
  }

  function upsertHost(h) {
    if (!fleet) return;
    var tr = null;
    for (var i = 0; i < fleet.rows.length; i++) {
      if (fleet.rows[i].getAttribute("data-host") === h.hostname) { tr = fleet.rows[i]; break; }
    }
    if (!tr) {
      tr = document.createElement("tr");
      tr.setAttribute("data-host", h.hostname);
      var before = null;
      for (var j = 0; j < fleet.rows.length; j++) {
        if (fleet.rows[j].getAttribute("data-host") > h.hostname) { before = fleet.rows[j]; break; }
      }
      fleet.insertBefore(tr, before);
    }
    tr.innerHTML = hostCells(h);
    flash(tr);
    summarize();
    refreshTimes();
  }
  function addFinding(f) {
    if (!findings || findings.querySelector('tr[data-finding="' + CSS.escape(f.id) + '"]')) return;
    var tr = document.createElement("tr");
    tr.setAttribute("data-finding", f.id);
    tr.innerHTML = findingCells(f);
    findings.insertBefore(tr, findings.firstChild);
    while (findings.rows.length > MAX_FINDINGS) findings.deleteRow(findings.rows.length - 1);
    flash(tr);
    refreshTimes();
  }
  function summarize() {
    var n = fleet.rows.length, failing = 0, critical = 0;
    for (var i = 0; i < n; i++) {
      if (fleet.rows[i].querySelector(".outcome-failed, .outcome-stalled")) failing++;
      var c = fleet.rows[i].querySelector(".count.sev-critical");
      if (c) critical += parseInt(c.textContent, 10) || 0;
    }
    var k = document.getElementById("stat-critical"); if (k) k.textContent = critical;
    var s = document.getElementById("stat-hosts"); if (s) s.textContent = n;
    var f = document.getElementById("stat-failing"); if (f) f.textContent = failing;
    var e = document.getElementById("fleet-empty"); if (e) e.hidden = n > 0;
  }
  function reloadHosts() {
    fetch("/api/v1/hosts", { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (body) { body.items.forEach(upsertHost); })
      .catch(function () {});
  }

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
  refreshTimes();
  setInterval(refreshTimes, 1000);

  function setLive(state, text) {
    if (!live) return;
    live.setAttribute("data-state", state);
    live.textContent = text;
  }
  if (fleet && window.EventSource) {
    var es = new EventSource("/api/v1/events");
    es.addEventListener("ready", function () { setLive("live", "live"); });
    es.addEventListener("host", function (e) { upsertHost(JSON.parse(e.data)); });
    es.addEventListener("finding", function (e) { addFinding(JSON.parse(e.data)); });
    es.addEventListener("lagged", reloadHosts);
    es.onerror = function () { setLive("down", "reconnecting"); };
    es.onopen = function () { reloadHosts(); };
  } else if (live) {
    live.hidden = true; // Only the fleet view is live.
  }
})();
