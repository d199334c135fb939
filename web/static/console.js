/* The operators' queue, live: the alarm feed (server-sent events) refreshes the rows without a
 * reload; a new CRITICAL alarm (kind "raised", never a repeat) beeps and is flagged; keyboard
 * shortcuts move through the queue and act on the selected alarm. No framework: htmx does the
 * requests, this file the feed, the cue and the keys. */
(function () {
  "use strict";
  var root = document.getElementById("console");
  if (!root) return;
  var rowsUrl = root.dataset.rowsUrl;
  var works = root.dataset.works === "yes";
  var tbody = document.getElementById("queue-rows");
  var statusEl = document.getElementById("feed-status");
  var banner = document.getElementById("new-critical");
  var bannerText = document.getElementById("new-critical-text");
  var soundButton = document.getElementById("sound-toggle");
  var text = {}, typeNames = {};
  var strings = document.getElementById("i18n").content;  // a <template>: translated texts for this file
  strings.querySelectorAll("[data-key]").forEach(function (el) { text[el.dataset.key] = el.textContent; });
  strings.querySelectorAll("[data-type]").forEach(function (el) { typeNames[el.dataset.type] = el.textContent; });

  // --- The feed ----------------------------------------------------------------------------------
  var seen = new Set();          // event ids handled (a reconnect may replay some again)
  var newCritical = new Set();   // alarm ids flagged until acknowledged or opened
  var audio = null;
  window.eldercareConsole = { beeps: 0, events: 0, refreshes: 0 };

  function setStatus(state) {
    statusEl.dataset.state = state;
    statusEl.textContent = text[state] || state;
  }

  function beep() {
    window.eldercareConsole.beeps += 1;
    if (!audio) return;
    var t = audio.currentTime;
    [0, 0.35].forEach(function (offset) {
      var osc = audio.createOscillator();
      var gain = audio.createGain();
      osc.type = "square";
      osc.frequency.value = 880;
      gain.gain.setValueAtTime(0.25, t + offset);
      gain.gain.exponentialRampToValueAtTime(0.001, t + offset + 0.25);
      osc.connect(gain).connect(audio.destination);
      osc.start(t + offset);
      osc.stop(t + offset + 0.26);
    });
  }

  soundButton.addEventListener("click", function () {
    if (!audio) {
      var Ctx = window.AudioContext || window.webkitAudioContext;
      audio = Ctx ? new Ctx() : null;
    }
    if (audio && audio.state === "suspended") audio.resume();
    soundButton.setAttribute("aria-pressed", "true");
    soundButton.textContent = text["sound-on"];
  });

  function flag(data) {
    newCritical.add(data.alarm_id);
    bannerText.textContent = (typeNames[data.type] || data.type) + " · " + (data.elder_name || "") + (data.district ? " · " + data.district : "");
    banner.hidden = false;
    document.body.classList.add("flash");
    setTimeout(function () { document.body.classList.remove("flash"); }, 1500);
    beep();
  }

  // Rows are reloaded at most every 300 ms, and always once more after the last event.
  var refreshTimer = null, refreshing = false, again = false;
  function refresh() {
    if (refreshing) { again = true; return; }
    if (refreshTimer) return;
    refreshTimer = setTimeout(function () {
      refreshTimer = null;
      refreshing = true;
      window.eldercareConsole.refreshes += 1;
      htmx.ajax("GET", rowsUrl, { target: tbody, swap: "innerHTML" }).finally(function () {
        refreshing = false;
        if (again) { again = false; refresh(); }
      });
    }, 300);
  }

  var QUIET = new Set(["presented", "comment", "notified"]);  // change nothing the rows show
  function onEvent(e) {
    var data;
    try { data = JSON.parse(e.data); } catch (err) { return; }
    if (seen.has(data.event_id)) return;
    seen.add(data.event_id);
    window.eldercareConsole.events += 1;
    if (e.type === "raised" && data.severity === "CRITICAL") flag(data);
    if (e.type === "acknowledged" || e.type === "cleared") newCritical.delete(data.alarm_id);
    if (!QUIET.has(e.type)) refresh();
  }

  var KINDS = ["raised", "repeated", "presented", "claimed", "assigned", "acknowledged", "comment",
    "action", "escalated", "notified", "requeued", "grouped", "cleared", "reopened"];
  function connect() {
    var source = new EventSource("/api/v1/callcentre/stream?after=" + encodeURIComponent(root.dataset.cursor));
    KINDS.forEach(function (kind) { source.addEventListener(kind, onEvent); });
    source.onopen = function () { setStatus("live"); };
    source.onerror = function () {
      setStatus("reconnecting");
      // The browser reconnects by itself with Last-Event-ID; a closed source (an HTTP error) we reopen.
      if (source.readyState === EventSource.CLOSED) setTimeout(connect, 3000);
    };
  }
  connect();

  // --- Rows: ages, flags, selection -----------------------------------------------------------------
  function rows() { return Array.prototype.slice.call(tbody.querySelectorAll("tr[data-alarm-id]")); }
  var selected = null;

  function decorate() {
    var now = Date.now();
    rows().forEach(function (tr) {
      var id = Number(tr.dataset.alarmId);
      tr.classList.toggle("new-critical-row", newCritical.has(id));
      tr.classList.toggle("selected", String(id) === selected);
      tr.setAttribute("aria-selected", String(id) === selected ? "true" : "false");
      var age = Math.max(0, Math.round((now - Number(tr.dataset.received)) / 1000));
      var cell = tr.querySelector("[data-age]");
      if (cell) cell.textContent = age < 120 ? age + " s" : Math.round(age / 60) + " min";
    });
  }
  document.body.addEventListener("htmx:afterSwap", decorate);
  document.body.addEventListener("queue-changed", refresh);
  setInterval(decorate, 1000);
  decorate();

  function move(step) {
    var all = rows();
    if (!all.length) return;
    var i = all.findIndex(function (tr) { return tr.dataset.alarmId === selected; });
    i = i < 0 ? 0 : Math.min(all.length - 1, Math.max(0, i + step));
    selected = all[i].dataset.alarmId;
    decorate();
    all[i].scrollIntoView({ block: "nearest" });
  }

  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    var tag = (e.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "select" || tag === "textarea") return;
    var key = e.key.toLowerCase();
    if (key === "j" || key === "arrowdown") { move(1); e.preventDefault(); }
    else if (key === "k" || key === "arrowup") { move(-1); e.preventDefault(); }
    else if (key === "enter" && selected) { window.location.href = "/operator/alarms/" + selected; }
    else if (key === "a" && selected && works) {
      var button = tbody.querySelector('tr[data-alarm-id="' + selected + '"] button.ack');
      if (button) button.click();
    } else if (key === "c" && selected && works) {
      window.location.href = "/operator/alarms/" + selected + "#clear";
    }
  });
})();
