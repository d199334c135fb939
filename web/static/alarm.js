/* An alarm's page: the vital-sign chart (uPlot) and the keyboard shortcuts (A acknowledge, C clear,
 * N next alarm: back to the queue). */
(function () {
  "use strict";
  var page = document.getElementById("alarm");
  if (!page) return;

  var data = document.getElementById("vitals-data");
  var box = document.getElementById("vitals-chart");
  if (data && box && window.uPlot) {
    var series = JSON.parse(data.textContent);
    var times = Array.from(new Set([].concat.apply([], series.map(function (s) { return s.t; })))).sort(function (a, b) { return a - b; });
    var columns = [times].concat(series.map(function (s) {
      var at = {};
      s.t.forEach(function (t, i) { at[t] = s.avg[i]; });
      return times.map(function (t) { return t in at ? at[t] : null; });
    }));
    var colours = ["#b03a2e", "#1f618d", "#117a65", "#7d3c98", "#9a7d0a", "#515a5a"];
    new uPlot({
      width: Math.max(320, box.clientWidth || 800),
      height: 240,
      series: [{}].concat(series.map(function (s, i) {
        return { label: s.label + " (" + s.unit + ")", stroke: colours[i % colours.length], width: 2, spanGaps: false };
      })),
      axes: [{}, {}],
    }, columns, box);
  }

  var works = page.dataset.works === "yes";
  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    var tag = (e.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "select" || tag === "textarea" || tag === "button") return;
    var key = e.key.toLowerCase();
    if (key === "a" && works) {
      var ack = document.getElementById("ack");
      if (ack) ack.click();
    } else if (key === "c" && works) {
      var outcome = document.getElementById("outcome");
      if (outcome) { outcome.scrollIntoView({ block: "center" }); outcome.focus(); e.preventDefault(); }
    } else if (key === "n") {
      window.location.href = "/operator/queue";
    }
  });
  if (window.location.hash === "#clear") {
    var first = document.getElementById("outcome");
    if (first) first.focus();
  }
})();
