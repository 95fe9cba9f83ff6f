// Live updates without a build step: every data-poll seconds, fetch this page again and put
// its <main> in place of ours, unless the viewer is typing in a form. Pages read without
// JavaScript too (reload to update).
(function () {
  "use strict";
  var main = document.getElementById("main");
  var every = main ? Number(main.getAttribute("data-poll")) * 1000 : 0;
  if (!every) { return; }
  function busy() {
    var el = document.activeElement;
    return el && el.closest && el.closest("main form") && el.tagName !== "BUTTON";
  }
  function tick() {
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Recdock-Live": "1" } })
      .then(function (r) {
        if (r.redirected || r.status === 401) { window.location.reload(); return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (html) {
        if (html && !busy()) {
          var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("main");
          if (fresh) { main.innerHTML = fresh.innerHTML; }
        }
      })
      .catch(function () { /* the centre is away: try again on the next tick */ })
      .then(function () { window.setTimeout(tick, every); });
  }
  window.setTimeout(tick, every);
}());
