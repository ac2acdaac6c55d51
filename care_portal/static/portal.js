// CareHub care portal: say loudly when the live overview can no longer refresh itself.
(function () {
  "use strict";
  function banner() {
    return document.getElementById("stale-banner");
  }
  function showStale() {
    var el = banner();
    if (el) { el.hidden = false; }
  }
  function hideStale() {
    var el = banner();
    if (el) { el.hidden = true; }
  }
  document.addEventListener("htmx:sendError", showStale);
  document.addEventListener("htmx:responseError", showStale);
  document.addEventListener("htmx:timeout", showStale);
  document.addEventListener("htmx:afterSwap", hideStale);
})();
