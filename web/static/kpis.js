/* The supervisor's chart: the share of alarms acknowledged within 60 s per alarm type (bars, uPlot),
 * with the target as a line. */
(function () {
  "use strict";
  var data = document.getElementById("kpi-data");
  var box = document.getElementById("kpi-chart");
  if (!data || !box || !window.uPlot) return;
  var d = JSON.parse(data.textContent);
  var names = {}, label = {};
  var strings = document.getElementById("kpi-labels").content;  // a <template>: the translated names
  strings.querySelectorAll("[data-type]").forEach(function (el) { names[el.dataset.type] = el.textContent; });
  strings.querySelectorAll("[data-key]").forEach(function (el) { label[el.dataset.key] = el.textContent; });
  var xs = d.types.map(function (_, i) { return i; });
  var bars = uPlot.paths.bars({ size: [0.6, 80] });
  new uPlot({
    width: Math.max(320, box.clientWidth || 800),
    height: 260,
    scales: { x: { time: false, range: [-0.5, Math.max(0.5, xs.length - 0.5)] }, y: { range: [0, 100] } },
    axes: [
      { values: function (u, splits) { return splits.map(function (i) { return Number.isInteger(i) ? (names[d.types[i]] || "") : ""; }); }, splits: function () { return xs; } },
      { values: function (u, splits) { return splits.map(function (v) { return v + " %"; }); } },
    ],
    series: [
      { label: "", value: function (u, i) { return i == null ? "" : (names[d.types[i]] || ""); } },
      { label: label.share, fill: "#1f618d99", stroke: "#1f618d", paths: bars, points: { show: false } },
      { label: label.target, stroke: "#b03a2e", dash: [6, 4], width: 2, points: { show: false } },
    ],
  }, [xs, d.share, xs.map(function () { return d.target; })], box);
})();
