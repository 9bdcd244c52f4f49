// The object page's Telemetry section (live.go): a uPlot chart per numeric
// property from the data-series attribute, and the live values over
// server-sent events from the section's data-live URL, which update the
// latest-value table and extend the charts. The stream is closed while the
// page is hidden and opened again when it is shown; a "signedout" event
// sends the browser to sign in, to come back here. It runs on the page and
// again when htmx swaps the section in (the range picker).
(function () {
  "use strict";

  var timeFormat = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short"
  });

  // current is the section on the page: its element, EventSource, charts
  // by property and the range its charts show (seconds).
  var current = null;

  function chart(el, rangeSec) {
    var s;
    try {
      s = JSON.parse(el.getAttribute("data-series"));
    } catch (e) {
      return null;
    }
    if (!s || typeof window.uPlot !== "function") {
      return null;
    }
    var c = { t: s.t || [], v: s.v || [], range: s.range || rangeSec, plot: null, el: el };
    var width = Math.max(280, el.clientWidth || 600);
    var opts = {
      width: width,
      height: 200,
      scales: {
        x: {
          time: true,
          range: function () {
            var now = Date.now() / 1000;
            return [now - c.range, now];
          }
        }
      },
      axes: [{}, { label: s.unit || "", size: 60 }],
      series: [{}, { label: s.unit ? s.property + " (" + s.unit + ")" : s.property, stroke: "#0b5cad", width: 2, spanGaps: true }]
    };
    el.textContent = "";
    c.plot = new window.uPlot(opts, [c.t, c.v], el);
    return c;
  }

  function append(c, t, v) {
    var n = c.t.length;
    if (n > 0 && t <= c.t[n - 1]) {
      return;
    }
    c.t.push(t);
    c.v.push(v);
    var oldest = Date.now() / 1000 - c.range;
    while (c.t.length > 0 && c.t[0] < oldest) {
      c.t.shift();
      c.v.shift();
    }
    c.plot.setData([c.t, c.v]);
  }

  function text(v) {
    if (v === null || v === undefined) {
      return "";
    }
    if (typeof v === "object") {
      return JSON.stringify(v);
    }
    return String(v);
  }

  function timeElement(iso) {
    var d = new Date(iso);
    var el = document.createElement("time");
    el.setAttribute("datetime", iso);
    el.setAttribute("data-local", "");
    if (!isNaN(d)) {
      el.setAttribute("title", d.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC").replace(/Z$/, " UTC"));
      el.textContent = timeFormat.format(d);
    } else {
      el.textContent = iso;
    }
    return el;
  }

  function setState(st, word) {
    var el = st.section.querySelector("[data-live-state]");
    if (el && el.textContent !== word) {
      el.textContent = word;
      el.className = "live-state " + word.replace(/[^a-z]/g, "");
    }
  }

  // refresh reloads the section (a property the page did not show has a
  // value now), once.
  function refresh(st) {
    if (st.refreshing || !window.htmx) {
      return;
    }
    st.refreshing = true;
    window.htmx.ajax("GET", st.section.getAttribute("data-refresh"), { target: st.section, swap: "outerHTML" });
  }

  function onValues(st, e) {
    var values;
    try {
      values = JSON.parse(e.data);
    } catch (err) {
      return;
    }
    values.forEach(function (lv) {
      var row = null;
      st.section.querySelectorAll("tr[data-property]").forEach(function (tr) {
        if (tr.getAttribute("data-property") === lv.property) {
          row = tr;
        }
      });
      if (!row) {
        // A value the section has no row for: reload it when it shows
        // no values at all yet (the empty state); a property outside
        // the thing model (the section lists the model's) is not shown.
        if (st.section.querySelector("tr[data-property]") === null) {
          refresh(st);
        }
        return;
      }
      var cell = row.querySelector("[data-value]");
      if (cell) {
        cell.textContent = text(lv.value);
      }
      var at = row.querySelector("[data-time]");
      if (at) {
        at.textContent = "";
        at.appendChild(timeElement(lv.time));
      }
      var c = st.charts[lv.property];
      if (c && typeof lv.value === "number") {
        append(c, Date.parse(lv.time) / 1000, lv.value);
      } else if (!c && typeof lv.value === "number" && st.section.querySelector("[data-chart='telemetry']") === null && st.noCharts) {
        refresh(st);
      }
    });
  }

  function open(st) {
    if (st.es || !document.body.contains(st.section)) {
      return;
    }
    var es = new EventSource(st.section.getAttribute("data-live"));
    st.es = es;
    setState(st, "connecting");
    es.onopen = function () { setState(st, "live"); };
    es.onerror = function () {
      if (es.readyState === EventSource.CLOSED) {
        // Refused (too many streams, not found) or not a stream: reload
        // the page to try again.
        st.es = null;
        setState(st, "not live");
      } else {
        setState(st, "reconnecting");
      }
    };
    es.addEventListener("values", function (e) { onValues(st, e); });
    es.addEventListener("signedout", function () {
      close(st);
      window.location.href = "/signin?next=" + encodeURIComponent(window.location.pathname + window.location.search);
    });
  }

  function close(st) {
    if (st.es) {
      st.es.close();
      st.es = null;
    }
  }

  function init(root) {
    var section = null;
    if (root.matches && root.matches("[data-live]")) {
      section = root;
    } else if (root.querySelector) {
      section = root.querySelector("[data-live]");
    }
    if (!section || (current && current.section === section)) {
      return;
    }
    if (current) {
      close(current);
    }
    var rangeSec = parseFloat(section.getAttribute("data-range")) || 3600;
    var st = { section: section, es: null, charts: {}, refreshing: false, noCharts: true };
    section.querySelectorAll("[data-chart='telemetry']").forEach(function (el) {
      st.noCharts = false;
      var c = chart(el, rangeSec);
      if (c) {
        st.charts[el.getAttribute("data-property")] = c;
      }
    });
    current = st;
    if (document.visibilityState === "hidden") {
      setState(st, "paused");
    } else {
      open(st);
    }
  }

  document.addEventListener("visibilitychange", function () {
    if (!current) {
      return;
    }
    if (document.visibilityState === "hidden") {
      close(current);
      setState(current, "paused");
    } else {
      open(current);
    }
  });

  window.addEventListener("resize", function () {
    if (!current) {
      return;
    }
    Object.keys(current.charts).forEach(function (k) {
      var c = current.charts[k];
      c.plot.setSize({ width: Math.max(280, c.el.clientWidth), height: 200 });
    });
  });

  window.addEventListener("pagehide", function () {
    if (current) {
      close(current);
    }
  });

  document.addEventListener("DOMContentLoaded", function () { init(document); });
  document.addEventListener("htmx:load", function (e) { init(e.target); });
})();
