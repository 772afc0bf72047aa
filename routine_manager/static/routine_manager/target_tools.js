// The request editor's target tools (issue #16): coordinates from a name (PyROS's offline list of bright
// objects, then Sesame when the server may reach it) and the target's altitude over its window before submitting.
(() => {
  const form = document.getElementById("request-form");
  if (!form) return;
  const field = (row, name) => row.querySelector(`[name="s-${row.dataset.index}-${name}"]`);
  const say = (row, text, ok) => {
    const out = row.querySelector(".target-tools-result");
    out.textContent = text;
    out.className = "small target-tools-result " + (ok ? "text-success" : "text-danger");
  };
  const getJSON = async (url) => {
    const answer = await fetch(url, {headers: {Accept: "application/json"}, credentials: "same-origin"});
    const body = await answer.json().catch(() => ({detail: `error ${answer.status}`}));
    if (!answer.ok) throw new Error(body.detail || `error ${answer.status}`);
    return body;
  };
  const resolve = async (row) => {
    const name = field(row, "target_name").value.trim();
    if (!name) return say(row, "Type a target name first (e.g. M51, NGC 7331, Vega).", false);
    try {
      const found = await getJSON(form.dataset.resolveUrl + "?" + new URLSearchParams({name}));
      field(row, "ra_deg").value = found.ra_deg;
      field(row, "dec_deg").value = found.dec_deg;
      // The fields take degrees; the sentence reads the PyROS way (sexagesimal, rounded: pyrosFormat)
      say(row, `${found.name}${found.kind ? " (" + found.kind + ")" : ""}: RA ${window.pyrosFormat.ra(found.ra_deg)}, ` +
               `Dec ${window.pyrosFormat.dec(found.dec_deg)} (J2000, ${found.source}).`, true);
    } catch (error) { say(row, error.message, false); }
  };
  const preview = async (row) => {
    const params = {name: field(row, "target_name").value, ra: field(row, "ra_deg").value, dec: field(row, "dec_deg").value,
      start: field(row, "window_start").value, end: field(row, "window_end").value,
      min_altitude: field(row, "min_altitude_deg").value, max_airmass: field(row, "max_airmass").value};
    const box = row.querySelector(".altitude-preview");
    try {
      const fig = await getJSON(form.dataset.previewUrl + "?" + new URLSearchParams(params));
      box.hidden = false;
      const best = fig.max_altitude_deg;
      say(row, `Highest altitude ${best === null ? "?" : best.toFixed(0)}° in the window's first week (limit ${fig.limit_deg}°).`,
          best !== null && best >= fig.limit_deg);
      if (typeof Plotly === "undefined") return;
      const shapes = fig.nights.map(([x0, x1]) => ({type: "rect", xref: "x", yref: "paper", x0, x1, y0: 0, y1: 1,
        fillcolor: "rgba(80,110,200,0.18)", line: {width: 0}, layer: "below"}));
      shapes.push({type: "line", xref: "paper", x0: 0, x1: 1, y0: fig.limit_deg, y1: fig.limit_deg,
                   line: {color: "#e55", dash: "dash", width: 1.5}});
      window.pyrosFigure(box, `${fig.title}: altitude in degrees against time (UTC) over the window's first week, ` +
                              `highest ${best === null ? "unknown" : best.toFixed(0) + "°"}, limit ${fig.limit_deg}°`);
      const fit = window.pyrosChartFit(box, fig.title);
      Plotly.newPlot(box, [
        {x: fig.times, y: fig.altitude, customdata: fig.airmass, name: "target", mode: "lines",
         hovertemplate: "%{x|%Y-%m-%d %H:%M} UTC<br>altitude %{y:.1f}°<br>airmass %{customdata:.2f}<extra></extra>"},
        {x: fig.times, y: fig.moon, name: "Moon", mode: "lines", line: {color: "#bbb", dash: "dot", width: 1}},
      // The legend sits above the plotting area, under the title: inside it (top right) it covered the
      // target's curve at its highest on a phone. Text in the page's light colour (Plotly's #444: 1.6:1).
      ], {title: {text: fit.title, x: 0, xanchor: "left", font: {size: 13}},
          shapes, margin: {l: 55, r: 10, t: fit.marginTop + 24, b: 50},
          font: {color: "#dee2e6"},
          yaxis: {title: {text: "altitude (°)"}, range: [0, 90], automargin: true, gridcolor: "#495057"},
          xaxis: {title: {text: "time (UTC)"}, automargin: true, tickformat: "%H:%M<br>%Y-%m-%d", nticks: fit.narrow ? 4 : 10,
                  gridcolor: "#495057"},
          legend: {orientation: "h", x: 0, xanchor: "left", y: 1, yanchor: "bottom", yref: "paper", bgcolor: "rgba(0,0,0,0)"},
          paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)"},
        {displaylogo: false, responsive: true, displayModeBar: fit.narrow ? false : "hover"});
    } catch (error) { say(row, error.message, false); }
  };
  form.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (!button) return;
    const row = button.closest(".sequence-row");
    if (button.classList.contains("resolve-target")) resolve(row);
    else if (button.classList.contains("preview-altitude")) preview(row);
  });
})();
