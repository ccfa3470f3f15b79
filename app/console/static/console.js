// warroom console: small progressive enhancements. Every page and form works without this script;
// it only refreshes the incident list, asks before executing a remediation, and highlights the
// evidence a citation points to. No framework, no third-party code (the CSP allows /static/ only).
(function () {
  "use strict";

  // The incident list re-fetches its rows (/incidents/rows, same filters) and swaps the table body.
  function startRefresh() {
    var body = document.getElementById("incident-rows");
    if (!body) return;
    var url = body.getAttribute("data-refresh-url");
    var every = parseInt(body.getAttribute("data-refresh-ms"), 10) || 10000;
    var status = document.getElementById("refresh-status");
    var busy = false;

    function tick() {
      if (busy || document.hidden) return;
      busy = true;
      fetch(url, { credentials: "same-origin", cache: "no-store", headers: { "X-Requested-With": "fetch" } })
        .then(function (response) {
          if (response.status === 401) {
            var here = window.location.pathname + window.location.search;
            window.location.assign("/login?next=" + encodeURIComponent(here));
            return null;
          }
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.text();
        })
        .then(function (html) {
          if (html === null) return;
          body.innerHTML = html; // server-rendered and escaped by the same templates as the page
          body.setAttribute("data-refreshed-at", new Date().toISOString());
          if (status) status.textContent = "Updated " + new Date().toLocaleTimeString();
          body.dispatchEvent(new CustomEvent("warroom:refreshed", { bubbles: true }));
        })
        .catch(function (err) {
          if (status) status.textContent = "Refresh failed (" + err.message + "); retrying";
        })
        .finally(function () {
          busy = false;
        });
    }

    window.setInterval(tick, every);
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden) tick();
    });
  }

  // A submit button with data-confirm asks first; a submitted form's buttons are disabled so a
  // double click does not post twice.
  document.addEventListener("submit", function (event) {
    var button = event.submitter;
    var question = button && button.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
      return;
    }
    var form = event.target;
    window.setTimeout(function () {
      form.querySelectorAll("button[type=submit]").forEach(function (b) { b.disabled = true; });
    }, 0);
  });

  // Evidence citations ([E3]) open and highlight the cited item.
  function showEvidence(id) {
    var item = document.getElementById(id);
    if (!item || !item.classList.contains("evidence")) return;
    if (item.tagName === "DETAILS") item.open = true;
    item.classList.remove("highlight");
    void item.offsetWidth; // restart the highlight animation
    item.classList.add("highlight");
    item.scrollIntoView({ block: "center" });
    item.focus({ preventScroll: true });
  }

  document.addEventListener("click", function (event) {
    var link = event.target.closest ? event.target.closest("a.ref[data-evidence]") : null;
    if (!link) return;
    var id = (link.getAttribute("href") || "").replace(/^#/, "");
    if (!document.getElementById(id)) return;
    event.preventDefault();
    window.history.replaceState(null, "", "#" + id);
    showEvidence(id);
  });

  window.addEventListener("hashchange", function () {
    showEvidence(window.location.hash.slice(1));
  });

  document.addEventListener("DOMContentLoaded", function () {
    startRefresh();
    if (window.location.hash.indexOf("#evidence-") === 0) showEvidence(window.location.hash.slice(1));
  });
})();
