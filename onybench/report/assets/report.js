/* onybench report.html: draws the charts described in #onybench-data with uPlot.
   Text reaches the page only through textContent (uPlot's legend does the same). */
(function () {
  "use strict";
  var state = window.__onybench;
  var data = JSON.parse(document.getElementById("onybench-data").textContent);
  var plots = [];

  function theme() {
    var css = getComputedStyle(document.documentElement);
    var read = function (name) { return css.getPropertyValue(name).trim(); };
    var palette = [];
    for (var i = 0; i < 8; i++) palette.push(read("--c" + i));
    return { fg: read("--fg"), muted: read("--muted"), grid: read("--grid"), palette: palette };
  }

  function fmt(v, digits) {
    if (v == null || !isFinite(v)) return "-";
    var a = Math.abs(v);
    if (a >= 1000) return v.toLocaleString("en-US", { maximumFractionDigits: 0 });
    if (a >= 100) return v.toFixed(1);
    if (a >= 1) return v.toFixed(digits == null ? 2 : digits);
    return v.toPrecision(3);
  }

  function percentLabel(x) {
    var p = 100 - 100 / x;
    if (p <= 0) return "0%";
    var digits = Math.max(0, Math.ceil(Math.log10(x)) - 2);
    return p.toFixed(digits) + "%";
  }

  function logSplits(u, axisIdx, min, max) {
    var splits = [];
    for (var v = 1; v <= max * 1.0001; v *= 10) if (v >= min / 1.0001) splits.push(v);
    return splits;
  }

  function options(spec, width, t) {
    var axis = function (label) {
      return {
        label: label,
        stroke: t.fg,
        grid: { stroke: t.grid, width: 1 },
        ticks: { stroke: t.grid, width: 1 },
      };
    };
    var x = axis(spec.xLabel);
    var y = axis(spec.yLabel);
    y.size = 60;
    var scales = { x: { time: false } };
    if (spec.kind === "cdf") scales.y = { range: [0, 1] };
    var xValue = function (u, v) { return fmt(v); };
    if (spec.kind === "percentile") {
      scales.x = { time: false, distr: 3, log: 10 };
      x.splits = logSplits;
      x.values = function (u, splits) { return splits.map(percentLabel); };
      xValue = function (u, v) { return v == null ? "-" : percentLabel(v); };
    } else if (spec.kind === "stage") {
      var n = spec.xTicks.length;
      scales.x = { time: false, range: [-0.5, n - 0.5] };
      x.splits = function () { return spec.x; };
      x.values = function (u, splits) {
        return splits.map(function (i) { return spec.xTicks[i] == null ? "" : spec.xTicks[i]; });
      };
      xValue = function (u, v) { return v == null ? "-" : spec.xTicks[v]; };
    }
    var series = [{ label: spec.xLabel, value: xValue }];
    spec.series.forEach(function (s) {
      var color = t.palette[s.color % t.palette.length];
      var line = {
        label: s.label,
        stroke: color,
        width: 1.5,
        spanGaps: true,
        value: function (u, v) { return fmt(v); },
        points: {
          show: spec.kind === "stage" || spec.kind === "load" || spec.x.length < 3,
          size: 6,
          fill: color,
        },
      };
      if (s.dash) line.dash = [6, 4];
      if (spec.kind === "cdf") line.paths = uPlot.paths.stepped({ align: 1 });
      series.push(line);
    });
    return {
      width: width,
      height: 300,
      series: series,
      axes: [x, y],
      scales: scales,
      legend: { show: true, live: true },
      cursor: { drag: { x: true, y: false } },
    };
  }

  function draw() {
    var t = theme();
    data.charts.forEach(function (spec) {
      var el = document.getElementById(spec.id);
      if (!el) throw new Error("no element for " + spec.id);
      var columns = [spec.x].concat(spec.series.map(function (s) { return s.values; }));
      var width = Math.max(el.clientWidth, 280);
      plots.push({ el: el, plot: new uPlot(options(spec, width, t), columns, el) });
    });
  }

  function redraw() {
    plots.forEach(function (p) { p.plot.destroy(); });
    plots = [];
    draw();
  }

  function resize() {
    plots.forEach(function (p) {
      p.plot.setSize({ width: Math.max(p.el.clientWidth, 280), height: 300 });
    });
  }

  // The page checks itself: every chart must have drawn a canvas with a size,
  // with no error, no blocked or loaded resource. Browser tests read the result.
  function check() {
    var charts = document.querySelectorAll(".chart");
    var sized = 0;
    var problems = [];
    charts.forEach(function (el) {
      var canvas = el.querySelector("canvas");
      var box = el.getBoundingClientRect();
      if (canvas && canvas.width > 0 && canvas.height > 0 && box.width > 0 && box.height > 0) {
        sized += 1;
      } else {
        problems.push(el.id);
      }
    });
    var resources = performance.getEntriesByType("resource").map(function (r) { return r.name; });
    var result = {
      charts: charts.length,
      sized: sized,
      unsized: problems,
      errors: state.errors,
      violations: state.violations,
      resources: resources,
    };
    var ok = charts.length === data.charts.length && sized === charts.length &&
      !state.errors.length && !state.violations.length && !resources.length;
    var marker = document.getElementById("render-status");
    marker.textContent = JSON.stringify(result);
    marker.setAttribute("data-status", ok ? "ok" : "failed");
  }

  try {
    draw();
  } catch (e) {
    state.errors.push(String(e && e.stack || e));
  }
  var pending;
  window.addEventListener("resize", function () {
    clearTimeout(pending);
    pending = setTimeout(resize, 100);
  });
  if (window.matchMedia) {
    var scheme = window.matchMedia("(prefers-color-scheme: dark)");
    if (scheme.addEventListener) scheme.addEventListener("change", redraw);
  }
  setTimeout(check, 0);
})();
