// A captured window's page (datasets.go, page_window.html): a uPlot chart
// per property with a series, drawn from the element's data-series
// attribute ({property, from, to, t, v, n}: times in Unix seconds, the
// x axis the window's span). No inline script exists: the
// Content-Security-Policy allows scripts from files only.
(function () {
  "use strict";

  function draw(el) {
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
    var from = s.from, to = s.to > s.from ? s.to : s.from + 1;
    var width = Math.max(280, el.clientWidth || 600);
    var opts = {
      width: width,
      height: 200,
      scales: { x: { time: true, range: function () { return [from, to]; } } },
      axes: [{}, { size: 60 }],
      series: [{}, { label: s.property, stroke: "#0b5cad", width: 2, points: { show: s.t.length <= 120 } }]
    };
    el.textContent = "";
    var plot = new window.uPlot(opts, [s.t, s.v], el);
    var resize = function () {
      if (!document.body.contains(el)) {
        window.removeEventListener("resize", resize);
        return;
      }
      plot.setSize({ width: Math.max(280, el.clientWidth), height: 200 });
    };
    window.addEventListener("resize", resize);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-chart='window']").forEach(draw);
  });
})();
