// The console's own script: times in the viewer's time zone (UTC stays in
// the title, shown on hover) and the message-rate chart (uPlot). It runs on
// the page and again on every fragment htmx swaps in. No inline script
// exists: the Content-Security-Policy allows scripts from files only.
(function () {
  "use strict";

  var timeFormat = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short"
  });

  function localTimes(root) {
    root.querySelectorAll("time[data-local]").forEach(function (el) {
      var d = new Date(el.getAttribute("datetime"));
      if (!isNaN(d)) {
        el.textContent = timeFormat.format(d);
      }
    });
  }

  var colors = { accepted: "#116329", dead: "#b3261e", refused: "#8a4600" };

  function rateChart(el) {
    if (typeof window.uPlot !== "function") {
      return;
    }
    var s;
    try {
      s = JSON.parse(el.getAttribute("data-series"));
    } catch (e) {
      return;
    }
    if (!s || !s.t || s.t.length < 1) {
      return;
    }
    var width = Math.max(280, el.clientWidth || 600);
    var opts = {
      width: width,
      height: 200,
      scales: { x: { time: true } },
      axes: [{}, { label: "messages / s", size: 60 }],
      series: [
        {},
        { label: "accepted", stroke: colors.accepted, width: 2 },
        { label: "rejected", stroke: colors.dead, width: 2 },
        { label: "refused", stroke: colors.refused, width: 2 }
      ]
    };
    el.textContent = "";
    var plot = new window.uPlot(opts, [s.t, s.accepted, s.dead, s.refused], el);
    var resize = function () {
      if (!document.body.contains(el)) {
        window.removeEventListener("resize", resize);
        return;
      }
      plot.setSize({ width: Math.max(280, el.clientWidth), height: 200 });
    };
    window.addEventListener("resize", resize);
  }

  var done = new WeakSet();

  function init(root) {
    localTimes(root);
    root.querySelectorAll("[data-chart='rates']").forEach(function (el) {
      if (!done.has(el)) {
        done.add(el);
        rateChart(el);
      }
    });
  }

  // A sign-in link (/signin#token=wwt_...), as `wanwu demo` prints: the
  // token travels in the fragment, which the browser never sends; it is
  // put in the form, taken out of the address bar and history, and the
  // form is sent.
  function signInLink() {
    var m = /^#token=(wwt_[A-Za-z0-9_\-]+)$/.exec(window.location.hash);
    var form = document.querySelector("form[action='/signin']");
    if (!m || !form) {
      return;
    }
    history.replaceState(null, "", window.location.pathname + window.location.search);
    form.querySelector("input[name='token']").value = m[1];
    form.submit();
  }

  document.addEventListener("DOMContentLoaded", function () { signInLink(); init(document); });
  // htmx fires htmx:load on every element it swaps in.
  document.addEventListener("htmx:load", function (e) { init(e.target); });
})();
