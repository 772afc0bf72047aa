/* The dashboard, live: small vanilla JS on the cheap endpoints of dashboard/api.py.
 *
 * - status: polled every second with ?since_version=N; the server answers 204 while the observatory
 *   state's version has not moved, so an idle night costs one single-row read per client and second.
 *   A full read every FULL_REFRESH_MS anyway: the Sun altitude and the devices snapshot move without
 *   a version bump.
 * - progress: the exposure bar is computed here from exposure_started and exposure_s, 4 times a second,
 *   so it moves smoothly between two status changes.
 * - logs: polled every second with ?after_id=<newest shown>; "older records" pages back with before_id.
 * - timeline: the scheduler's chart (timeline.js); its "now" line is moved here every 30 s, the plan is
 *   fetched again every 2 minutes and whenever the running sequence changes.
 * - operator controls: POST /api/observatory/<action>/ with the CSRF token (the server checks the role).
 */
(function () {
  "use strict";

  const root = document.getElementById("dashboard");
  if (!root) return;

  const STATUS_POLL_MS = 1000;
  const FULL_REFRESH_MS = 5000;
  const LOG_POLL_MS = 1000;
  const LOG_MAX_ROWS = 3000;
  const WEATHER_REFRESH_MS = 60000;
  const TIMELINE_REFRESH_MS = 120000;
  const TIMELINE_NOW_MS = 30000;

  const $ = (id) => document.getElementById(id);
  const csrfToken = (() => {
    try {
      return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"] || "";
    } catch (e) {
      return "";
    }
  })();

  function text(id, value) {
    const element = $(id);
    if (element) element.textContent = value === null || value === undefined || value === "" ? "—" : String(value);
  }

  function fixed(value, digits) {
    return typeof value === "number" && isFinite(value) ? value.toFixed(digits) : "—";
  }

  function hhmm(iso) {  // "23:41 UTC" (static/pyros/pyros.js: one way to show a time on every page)
    return iso ? window.pyrosFormat.utc(iso, "hm") : "";
  }

  function duration(seconds) {
    if (!isFinite(seconds)) return "—";
    seconds = Math.max(0, Math.round(seconds));
    const m = Math.floor(seconds / 60), s = seconds % 60;
    return m ? m + " min " + String(s).padStart(2, "0") + " s" : s + " s";
  }

  async function getJSON(url) {
    const response = await fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}});
    if (response.status === 204) return {unchanged: true};
    if (!response.ok) throw new Error(response.status + " " + response.statusText);
    return {data: await response.json()};
  }

  function setLive(ok) {
    const dot = $("live-indicator");
    if (dot) dot.classList.toggle("live-dot-lost", !ok);
  }

  // --- Status ---------------------------------------------------------------------------------
  let status = JSON.parse(($("initial-status") || {}).textContent || "null");
  let lastFullRead = Date.now();
  let currentSequence = status && status.current ? status.current.sequence : null;

  function badge(id, value, classes) {
    const element = $(id);
    if (!element) return;
    element.textContent = value || "—";
    element.className = "card-stat status-badge " + (classes[value] || "");
  }

  function renderStatus(s) {
    if (!s) return;
    badge("phase", s.phase, {night: "text-info", day: "text-warning"});
    text("sun-alt", fixed(s.sun_alt_deg, 1));
    if (s.night && s.night.start) {
      text("night-bounds", (s.night.is_night ? "night until " + hhmm(s.night.end)
        : "next night " + hhmm(s.night.start) + "–" + hhmm(s.night.end)));
    }
    badge("mode", s.mode, {automatic: "text-success", paused: "text-warning", stopped: "text-danger"});
    $("pause-requested").textContent = s.pause_requested ? "pause " + s.pause_requested + " requested" : "";
    badge("safety", s.safety, {safe: "text-success", unsafe: "text-danger", unknown: "text-warning"});
    const reasons = $("safety-reasons");
    reasons.replaceChildren(...(s.safety_reasons || []).map((r) => {
      const li = document.createElement("li");
      li.textContent = r;
      return li;
    }));
    const alarm = s.safety_alarm;
    $("safety-alarm")?.classList.toggle("d-none", !alarm);
    text("safety-alarm-detail", alarm && alarm.problems ? " (" + alarm.problems.join("; ") + ")" : " ");
    const watchdog = s.watchdog || {};
    text("watchdog-status", (watchdog.status || "—") +
      (typeof watchdog.heartbeat_timeout_s === "number" ? " (" + watchdog.heartbeat_timeout_s.toFixed(0) + " s)" : ""));
    text("idle-reason", s.idle_reason ? ": " + s.idle_reason : " ");
    const dome = s.dome || {};
    badge("dome-shutter", dome.shutter || "unknown", {open: "text-success", closed: "text-secondary"});
    text("dome-azimuth", fixed(dome.azimuth_deg, 1));
    const mount = s.mount || {};
    badge("mount-state", mount.state || "unknown", {tracking: "text-success", slewing: "text-info",
                                                    error: "text-danger"});
    text("mount-position", "RA " + window.pyrosFormat.ra(mount.ra_deg) + " Dec " + window.pyrosFormat.dec(mount.dec_deg));
    const w = s.weather || {};
    text("w-wind", fixed(w.wind_m_s, 1));
    text("w-humidity", fixed(w.humidity_pct, 0));
    text("w-rain", fixed(w.rain_mm_h, 1));
    text("w-temperature", fixed(w.temperature_c, 1));
    text("w-clouds", fixed(w.cloud_cover_pct, 0));
    renderCurrent(s.current, s.activity);
    renderNext(s.next || []);
    text("status-version", s.version);
  }

  function renderCurrent(c, activity) {
    // Calibrations and procedures are executor work too: say so instead of "No sequence is executing".
    $("current-activity").classList.toggle("d-none", !activity);
    text("current-activity", activity ? activity.text : " ");
    $("current-none").classList.toggle("d-none", !!c || !!activity);
    $("current-detail").classList.toggle("d-none", !c);
    if (!c) return;
    // Between the dispatch and the executor's first report only the sequence id is known.
    text("current-name", c.name || "Sequence #" + c.sequence);
    text("current-target", c.target);
    text("current-sequence", c.sequence);
    text("current-plan", (c.plan_index ?? "—") + "/" + (c.plans_total ?? "—"));
    text("current-filter", c.filter);
    text("current-exposure", (c.exposure ?? "—") + "/" + (c.of ?? "—"));
    text("current-exposure-s", c.exposure_s);
    text("current-step", c.step);
    tickProgress();
  }

  function renderNext(entries) {
    const list = $("next-sequences");
    if (!entries.length) {
      const li = document.createElement("li");
      li.className = "text-body-secondary list-unstyled";
      li.textContent = "Nothing planned.";
      list.replaceChildren(li);
      return;
    }
    list.replaceChildren(...entries.map((e) => {
      const li = document.createElement("li");
      li.textContent = hhmm(e.tsp) + " " + (e.target || "") + " — " + (e.name || "");
      return li;
    }));
  }

  function setBar(id, fraction) {
    const bar = $(id);
    if (!bar) return;
    const pct = Math.max(0, Math.min(100, fraction * 100));
    bar.style.width = pct.toFixed(1) + "%";
    bar.parentElement.setAttribute("aria-valuenow", pct.toFixed(0));
  }

  function tickProgress() {
    const c = status && status.current;
    if (!c) return;
    let exposureFraction = 0;
    const started = c.exposure_started ? Date.parse(c.exposure_started) : NaN;
    const exposureS = Number(c.exposure_s);
    if (isFinite(started) && exposureS > 0) {
      const elapsedS = (Date.now() - started) / 1000;
      exposureFraction = Math.min(1, Math.max(0, elapsedS / exposureS));
      text("exposure-elapsed", duration(Math.min(elapsedS, exposureS)));
      text("exposure-remaining", duration(exposureS - elapsedS));
    } else {
      text("exposure-elapsed", "—");
      text("exposure-remaining", "—");
    }
    setBar("exposure-progress-bar", exposureFraction);
    // The sequence bar: the executor's fraction, advanced within the running exposure so that it moves
    // between two status changes (one exposure's share is 1 / (exposures of the plan x plans)).
    let fraction = Number(c.progress) || 0;
    const perExposure = c.of && c.plans_total ? 1 / (c.of * c.plans_total) : 0;
    if (c.step === "exposing" || c.step === "exposure") fraction += perExposure * exposureFraction;
    setBar("sequence-progress-bar", Math.min(1, fraction));
  }

  async function pollStatus() {
    const full = Date.now() - lastFullRead >= FULL_REFRESH_MS || !status;
    const url = root.dataset.statusUrl + (!full && status ? "?since_version=" + status.version : "");
    try {
      const result = await getJSON(url);
      setLive(true);
      // When the values were last confirmed (a 204 confirms them too), not when the state row was last
      // saved: progress moves without that date changing, and "updated 19:23:10" looked stale (#16).
      text("status-updated", window.pyrosFormat.utc(new Date(), "time"));
      if (result.data) {
        lastFullRead = Date.now();
        status = result.data;
        renderStatus(status);
        const running = status.current ? status.current.sequence : null;
        if (running !== currentSequence) {
          currentSequence = running;
          loadTimeline();
        }
      }
    } catch (error) {
      setLive(false);
    }
    setTimeout(pollStatus, STATUS_POLL_MS);
  }

  // --- Logs -----------------------------------------------------------------------------------
  const logRows = $("log-rows");
  const logPanel = $("log-panel");
  let newestLogId = null;
  let oldestLogId = null;
  let logGeneration = 0; // bumped when the filters change, so late answers of an old filter are dropped

  function logFilters() {
    const params = new URLSearchParams();
    const level = $("log-level").value, component = $("log-component").value;
    if (level) params.set("level", level);
    if (component) params.set("component", component);
    return params;
  }

  const LEVEL_CLASS = {WARNING: "text-warning", ERROR: "text-danger", CRITICAL: "text-danger fw-bold",
                       DEBUG: "text-body-secondary"};

  function logRow(record) {
    const tr = document.createElement("tr");
    tr.className = "log-line " + (LEVEL_CLASS[record.level_name] || "");
    tr.dataset.logId = record.id;
    const cells = [record.time.substring(11, 23), record.level_name, record.component, record.message];
    cells.forEach((value, k) => {
      const td = document.createElement("td");
      td.textContent = value;
      if (k < 3) td.className = "text-nowrap";
      tr.appendChild(td);
    });
    return tr;
  }

  function addComponentOption(component) {
    const select = $("log-component");
    if ([...select.options].some((o) => o.value === component)) return;
    const option = document.createElement("option");
    option.value = option.textContent = component;
    select.appendChild(option);
  }

  async function fetchLogs(params) {
    const generation = logGeneration;
    const result = await getJSON(root.dataset.logsUrl + "?" + params.toString());
    if (generation !== logGeneration) return null;
    return result.data.results;
  }

  async function pollLogs() {
    try {
      const params = logFilters();
      if (newestLogId !== null) params.set("after_id", newestLogId);
      const records = await fetchLogs(params);
      if (records && records.length) {
        const before = logPanel.scrollHeight;
        const fragment = document.createDocumentFragment();
        records.forEach((r) => {
          fragment.appendChild(logRow(r));
          addComponentOption(r.component);
        });
        logRows.prepend(fragment);
        newestLogId = Math.max(newestLogId || 0, records[0].id);
        if (oldestLogId === null) oldestLogId = records[records.length - 1].id;
        // Someone reading older lines keeps their place; at the top, new lines just appear.
        if (logPanel.scrollTop > 0) logPanel.scrollTop += logPanel.scrollHeight - before;
        while (logRows.children.length > LOG_MAX_ROWS) logRows.lastElementChild.remove();
      } else if (records && newestLogId === null) {
        newestLogId = 0;
      }
    } catch (error) {
      setLive(false);
    }
    setTimeout(pollLogs, LOG_POLL_MS);
  }

  async function loadOlderLogs() {
    if (oldestLogId === null) return;
    const params = logFilters();
    params.set("before_id", oldestLogId);
    params.set("limit", "200");
    const records = await fetchLogs(params);
    if (!records) return;
    if (!records.length) {
      $("log-older").textContent = "no older records";
      $("log-older").disabled = true;
      return;
    }
    const fragment = document.createDocumentFragment();
    records.forEach((r) => fragment.appendChild(logRow(r)));
    logRows.appendChild(fragment);
    oldestLogId = records[records.length - 1].id;
  }

  function resetLogs() {
    logGeneration += 1;
    newestLogId = null;
    oldestLogId = null;
    logRows.replaceChildren();
    $("log-older").textContent = "older records";
    $("log-older").disabled = false;
  }

  $("log-level").addEventListener("change", resetLogs);
  $("log-component").addEventListener("change", resetLogs);
  $("log-older").addEventListener("click", loadOlderLogs);

  // --- Weather sparkline ----------------------------------------------------------------------
  async function loadWeather() {
    const element = $("weather-sparkline");
    if (!element || !window.Plotly) return;
    try {
      const {data} = await getJSON(root.dataset.weatherUrl + "?hours=3");
      if (!data || !data.time.length) {
        element.textContent = "";
        return;
      }
      const traces = [
        {x: data.time, y: data.wind_m_s, name: "wind m/s", type: "scatter", mode: "lines", line: {width: 1}},
        {x: data.time, y: data.humidity_pct, name: "humidity %", type: "scatter", mode: "lines", yaxis: "y2",
         line: {width: 1}},
      ];
      const layout = {height: 60, margin: {l: 0, r: 0, t: 0, b: 0}, showlegend: false,
                      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
                      xaxis: {visible: false}, yaxis: {visible: false},
                      yaxis2: {visible: false, overlaying: "y", range: [0, 100]}};
      window.Plotly.react(element, traces, layout, {staticPlot: true, responsive: true});
    } catch (error) {
      element.textContent = "";
    }
  }

  // --- Tonight's plan -------------------------------------------------------------------------
  let timelineData = null;

  async function loadTimeline() {
    const element = $("dashboard-timeline");
    try {
      const {data} = await getJSON(root.dataset.timelineUrl);
      if (!data.timeline) {
        element.innerHTML = '<div class="text-body-secondary small">No plan yet for tonight.</div>';
        timelineData = null;
        return;
      }
      timelineData = data.timeline;
      drawTimeline();
    } catch (error) {
      element.innerHTML = '<div class="text-body-secondary small">The plan could not be loaded.</div>';
    }
  }

  function drawTimeline() {
    if (!timelineData || !window.PyrosTimeline) return;
    const now = new Date();
    const range = timelineData.range || [];
    const inside = range.length === 2 && now >= new Date(range[0]) && now <= new Date(range[1]);
    timelineData.now = inside ? now.toISOString().replace(/\.\d+Z$/, "Z") : null;
    const element = $("dashboard-timeline");
    element.replaceChildren();
    window.PyrosTimeline.draw(element, timelineData, {});
  }

  // --- Operator controls ----------------------------------------------------------------------
  document.querySelectorAll("[data-control]").forEach((button) => {
    button.addEventListener("click", async () => {
      const action = button.dataset.control;
      if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
      const result = $("control-result");
      result.className = "small mt-2";
      result.textContent = button.textContent.trim() + "…";
      try {
        const response = await fetch(root.dataset.controlUrl + action + "/", {
          method: "POST", credentials: "same-origin",
          headers: {"Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrfToken},
          body: button.dataset.body || "{}",
        });
        let detail = "";
        try {
          const body = await response.json();
          detail = body.detail || body.message || "";
        } catch (e) { /* an empty answer is fine */ }
        result.className = "small mt-2 " + (response.ok ? "text-success" : "text-danger");
        result.textContent = (response.ok ? "Done: " : "Refused (" + response.status + "): ") +
          (detail || button.textContent.trim());
        lastFullRead = 0; // show the effect at the next poll
      } catch (error) {
        result.className = "small mt-2 text-danger";
        result.textContent = "Could not reach the server: " + error.message;
      }
    });
  });

  renderStatus(status);
  setInterval(tickProgress, 250);
  setTimeout(pollStatus, STATUS_POLL_MS);
  pollLogs();
  loadWeather();
  setInterval(loadWeather, WEATHER_REFRESH_MS);
  loadTimeline();
  setInterval(loadTimeline, TIMELINE_REFRESH_MS);
  setInterval(drawTimeline, TIMELINE_NOW_MS);
})();
