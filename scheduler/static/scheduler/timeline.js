/* The night plan as a Gantt chart (and, optionally, the altitude of its targets), drawn with Plotly.
 *
 * Data: the dict of scheduler.selectors.schedule_timeline_data / simulation_timeline_data
 * ({range, night, now, entries: [{label, start, end, state, ...}], times, twilight, altitudes}).
 * Usage, on any page that loads plotly.min.js and this file:
 *   <div data-pyros-timeline="timeline-data" data-pyros-altitude="altitude-chart"></div>
 *   {{ timeline|json_script:"timeline-data" }}
 * or PyrosTimeline.draw(element, data, {altitudeElement}). Entry states: executed, running, planned.
 */
(function () {
  "use strict";

  const STATE_STYLE = {
    executed: {name: "Executed", color: "#6c757d"},
    running: {name: "Running", color: "#ffc107"},
    planned: {name: "Planned", color: "#0d6efd"},
  };
  // Sun altitude bands: day > 0 > civil > -6 > nautical > -12 > astronomical > -18 > night.
  const BAND_COLOR = {
    day: "rgba(255, 214, 102, 0.22)",
    civil: "rgba(255, 159, 67, 0.16)",
    nautical: "rgba(111, 66, 193, 0.16)",
    astronomical: "rgba(13, 110, 253, 0.10)",
  };
  const TEXT_COLOR = getComputedStyle(document.documentElement).getPropertyValue("--bs-body-color").trim() || "#dee2e6";
  const GRID_COLOR = "rgba(128, 128, 128, 0.25)";

  function utcHM(iso) {  // "23:41 UTC" (static/pyros/pyros.js)
    return iso ? window.pyrosFormat.utc(iso, "hm") : "";
  }

  function backgroundShapes(data) {
    const shapes = (data.twilight || []).filter((band) => BAND_COLOR[band.kind]).map((band) => ({
      type: "rect", xref: "x", yref: "paper", x0: band.start, x1: band.end, y0: 0, y1: 1,
      fillcolor: BAND_COLOR[band.kind], line: {width: 0}, layer: "below",
    }));
    if (data.now) {
      shapes.push({type: "line", xref: "x", yref: "paper", x0: data.now, x1: data.now, y0: 0, y1: 1,
                   line: {color: "#ea868f", width: 2, dash: "dot"}});
    }
    return shapes;
  }

  function annotations(data) {
    const notes = [];
    if (data.now) {
      notes.push({x: data.now, y: 1, xref: "x", yref: "paper", text: "now " + utcHM(data.now), showarrow: false,
                  yanchor: "bottom", font: {color: "#ea868f", size: 11}});
    }
    // Name each twilight band once, where it is widest, so the shading explains itself.
    const seen = {};
    (data.twilight || []).forEach((band) => {
      if (!BAND_COLOR[band.kind]) return;
      const width = Date.parse(band.end) - Date.parse(band.start);
      if (!seen[band.kind] || width > seen[band.kind].width) seen[band.kind] = {band: band, width: width};
    });
    Object.values(seen).forEach(({band, width}) => {
      if (width < 15 * 60 * 1000) return;
      const middle = new Date((Date.parse(band.start) + Date.parse(band.end)) / 2).toISOString();
      // Inside the plot, at its bottom edge: clear of the time axis labels below it.
      notes.push({x: middle, y: 0, xref: "x", yref: "paper", text: band.kind, showarrow: false, yanchor: "bottom",
                  textangle: -90, font: {size: 10, color: TEXT_COLOR}, opacity: 0.8});
    });
    return notes;
  }

  function baseLayout(data, extra) {
    return Object.assign({
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)", font: {color: TEXT_COLOR, size: 12},
      margin: {l: 150, r: 20, t: 60, b: 50},
      xaxis: {type: "date", range: data.range, gridcolor: GRID_COLOR, title: {text: "time (UTC)"}, tickformat: "%H:%M"},
      shapes: backgroundShapes(data), annotations: annotations(data), hovermode: "closest",
      legend: {orientation: "h", y: 1.02, yanchor: "bottom", x: 1, xanchor: "right"},
    }, extra);
  }

  function ganttTraces(data) {
    const traces = [];
    Object.keys(STATE_STYLE).forEach((state) => {
      const entries = data.entries.filter((e) => e.state === state);
      if (!entries.length) return;
      traces.push({
        type: "bar", orientation: "h", name: STATE_STYLE[state].name,
        y: entries.map((e) => e.label),
        base: entries.map((e) => e.start),
        x: entries.map((e) => Date.parse(e.end) - Date.parse(e.start)),
        marker: {color: STATE_STYLE[state].color,
                 line: {color: entries.map((e) => (e.is_alert ? "#dc3545" : "rgba(0,0,0,0)")), width: 2}},
        customdata: entries.map((e) => [e.target, utcHM(e.start), utcHM(e.end), e.priority,
                                         Math.round((e.slack_s || 0) / 60), e.request_url || ""]),
        hovertemplate: "<b>%{customdata[0]}</b><br>%{customdata[1]}–%{customdata[2]}<br>" +
                       "priority %{customdata[3]}, slack %{customdata[4]} min<extra>" + STATE_STYLE[state].name +
                       "</extra>",
      });
    });
    return traces;
  }

  function altitudeTraces(data) {
    // Light tints: every curve at least 3:1 against the dark page (WCAG 1.4.11, graphical objects).
    const palette = ["#6ea8fe", "#20c997", "#fd7e14", "#e685b5", "#a98eda", "#0dcaf0", "#ffc107", "#75b798"];
    const traces = [];
    const times = data.times || [];
    (data.altitudes || []).forEach((curve, k) => {
      const color = palette[k % palette.length];
      traces.push({type: "scatter", mode: "lines", x: times, y: curve.alt_deg, name: curve.label,
                   line: {color: color, width: 1}, opacity: 0.5, showlegend: false, hoverinfo: "skip"});
      const entry = data.entries.find((e) => e.label === curve.label);
      if (!entry) return;
      // The part of the curve inside the scheduled block, drawn thick.
      const start = Date.parse(entry.start), end = Date.parse(entry.end);
      const x = [], y = [];
      times.forEach((t, i) => {
        const ms = Date.parse(t);
        if (ms >= start && ms <= end) { x.push(t); y.push(curve.alt_deg[i]); }
      });
      traces.push({type: "scatter", mode: "lines", x: x, y: y, name: curve.label, line: {color: color, width: 4},
                   hovertemplate: "<b>" + curve.label + "</b><br>%{x|%H:%M} UTC, %{y:.0f}°<extra></extra>",
                   showlegend: false});
    });
    return traces;
  }

  function draw(element, data, options) {
    options = options || {};
    if (!window.Plotly) {
      element.textContent = "The chart library did not load.";
      return;
    }
    const rows = new Set(data.entries.map((e) => e.label)).size;
    const range = (data.range || []).length === 2
      ? window.pyrosFormat.utc(data.range[0], "date") + ", " + utcHM(data.range[0]) + "–" + utcHM(data.range[1]) : "";
    // On a phone the chart keeps its width for the night: short target labels (the hover and the table
    // below give them whole), the title on two lines, no tool bar over it.
    const narrow = element.clientWidth > 0 && element.clientWidth < 576;
    const title = "Planned sequences" + (range ? (narrow ? "<br>" + range : " (" + range + ")") : "");
    window.pyrosFigure(element, title.replace("<br>", ", ") + ": " + (data.entries.length
      ? data.entries.length + " planned: " + data.entries.slice(0, 10).map((e) => utcHM(e.start) + " " + e.target).join("; ") +
        (data.entries.length > 10 ? "; …" : "")
      : "nothing planned"));
    const layout = baseLayout(data, {
      title: {text: title, x: 0, xanchor: "left", font: {size: 13}},
      height: Math.max(260, 110 + 22 * rows), barmode: "overlay",
      yaxis: {autorange: "reversed", type: "category", gridcolor: GRID_COLOR, automargin: true,
              title: {text: narrow ? "target" : "target (sequence)"},
              categoryorder: "array", categoryarray: data.entries.map((e) => e.label)},
    });
    if (narrow) {
      const labels = [...new Set(data.entries.map((e) => e.label))];
      Object.assign(layout.yaxis, {tickvals: labels,
                                   ticktext: labels.map((l) => (l.length > 11 ? l.slice(0, 10) + "…" : l))});
      // The title takes two lines there: the legend goes under it, at the left, above the plotting area
      // (at the right it overlapped the title's second line).
      layout.margin = Object.assign({}, layout.margin, {l: 10, t: 100});
      layout.legend = {orientation: "h", x: 0, xanchor: "left", y: 1, yanchor: "bottom"};
    }
    if (!data.entries.length) {
      layout.annotations.push({text: "Nothing planned", xref: "paper", yref: "paper", x: 0.5, y: 0.5,
                               showarrow: false, font: {size: 16, color: TEXT_COLOR}});
    }
    window.Plotly.newPlot(element, ganttTraces(data), layout,
                          {responsive: true, displaylogo: false, displayModeBar: narrow ? false : "hover"});
    element.on("plotly_click", (event) => {
      const url = event.points && event.points[0] && event.points[0].customdata[5];
      if (url) window.location.href = url;
    });
    const altitudeElement = options.altitudeElement;
    if (altitudeElement && (data.altitudes || []).length) {
      window.pyrosFigure(altitudeElement, "Altitude of the planned targets over the night, in degrees");
      const altitudeLayout = baseLayout(data, {
        title: {text: "Altitude of the planned targets", x: 0, xanchor: "left", font: {size: 13}},
        height: 320, showlegend: false,
        yaxis: {range: [0, 90], title: {text: "altitude (°)"}, gridcolor: GRID_COLOR, dtick: 15},
      });
      if (narrow) altitudeLayout.margin = Object.assign({}, altitudeLayout.margin, {l: 10});
      Object.assign(altitudeLayout.yaxis, {automargin: true});
      window.Plotly.newPlot(altitudeElement, altitudeTraces(data), altitudeLayout,
                            {responsive: true, displaylogo: false, displayModeBar: narrow ? false : "hover"});
    }
  }

  function drawAll(root) {
    (root || document).querySelectorAll("[data-pyros-timeline]").forEach((element) => {
      const source = document.getElementById(element.dataset.pyrosTimeline);
      if (!source) return;
      const altitudeId = element.dataset.pyrosAltitude;
      draw(element, JSON.parse(source.textContent),
           {altitudeElement: altitudeId ? document.getElementById(altitudeId) : null});
    });
  }

  window.PyrosTimeline = {draw: draw, drawAll: drawAll};
  document.addEventListener("DOMContentLoaded", () => drawAll(document));
  // Pages that swap the chart in with htmx get it drawn too.
  document.addEventListener("htmx:afterSwap", (event) => drawAll(event.target));
})();
