/* Weather/PLC and device history plots (Plotly, served locally). The weather page reloads its data
 * every minute without reloading the page. */
(function () {
  "use strict";

  const TEXT = getComputedStyle(document.documentElement).getPropertyValue("--bs-body-color").trim() || "#dee2e6";
  const GRID = "rgba(128, 128, 128, 0.25)";

  // A titled chart: time (UTC) along x, the quantity and its unit along y.
  function layout(title, yTitle, extra) {
    extra = extra || {};
    return Object.assign({
      title: {text: title, font: {size: 13}}, height: 290, margin: {l: 55, r: 50, t: 35, b: 80},
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)", font: {color: TEXT, size: 11},
      xaxis: {type: "date", gridcolor: GRID, tickformat: "%H:%M<br>%Y-%m-%d", hoverformat: "%Y-%m-%d %H:%M:%S UTC",
             title: {text: "time (UTC)"}},
      legend: {orientation: "h", y: -0.45}, hovermode: "x unified",
    }, extra, {yaxis: Object.assign({gridcolor: GRID, title: {text: yTitle}}, extra.yaxis || {})});
  }

  function line(x, y, name, extra) {
    return Object.assign({x: x, y: y, name: name, type: "scatter", mode: "lines", connectgaps: false}, extra || {});
  }

  function plot(id, traces, lay) {
    const element = document.getElementById(id);
    if (!element || !window.Plotly) return;
    window.pyrosFigure(element, lay.title.text + " against time (UTC)");
    window.Plotly.react(element, traces, lay, {responsive: true, displaylogo: false});
  }

  function drawWeather(h) {
    const t = h.time;
    plot("plot-wind", [line(t, h.wind_m_s, "wind"), line(t, h.gust_m_s, "gust", {line: {dash: "dot"}})],
         layout("Wind and gusts", "speed (m/s)"));
    plot("plot-humidity", [line(t, h.humidity_pct, "humidity"), line(t, h.cloud_cover_pct, "cloud cover")],
         layout("Humidity and cloud cover", "percent (%)", {yaxis: {range: [0, 100]}}));
    plot("plot-rain", [line(t, h.rain_mm_h, "rain", {fill: "tozeroy"}),
                       line(t, h.station_safe.map((s) => (s === null ? null : s ? 1 : 0)), "PLC safe",
                            {yaxis: "y2", line: {shape: "hv", color: "#20c997"}})],
         layout("Rain and PLC safe flag", "rain (mm/h)", {yaxis2: {overlaying: "y", side: "right", range: [-0.1, 1.1],
                                                            tickvals: [0, 1], ticktext: ["unsafe", "safe"]}}));
    plot("plot-temperature", [line(t, h.temperature_c, "temperature")], layout("Temperature", "temperature (°C)"));
    const points = document.getElementById("weather-points");
    if (points) points.textContent = t.length;
  }

  function weather(initial, url) {
    drawWeather(initial);
    setInterval(async () => {
      try {
        const response = await fetch(url, {credentials: "same-origin"});
        if (response.ok) drawWeather(await response.json());
      } catch (e) { /* keep the last plot */ }
    }, 60000);
  }

  function device(h) {
    const traces = Object.keys(h.values).map((key) => line(h.time, h.values[key], key));
    traces.push(line(h.time, h.state, "state", {yaxis: "y2", line: {shape: "hv", width: 1}}));
    plot("plot-device", traces, layout(h.device + ", last " + h.hours + " h", "value (device units)",
      {height: 360, yaxis2: {overlaying: "y", side: "right", type: "category"}}));
  }

  window.PyrosHistory = {weather: weather, device: device};
})();
