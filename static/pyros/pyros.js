// Site-wide behaviour, no inline scripts: a form (or a button) with data-confirm="..." asks before it is
// submitted, with a message that says what the action does (issue #16: irreversible or night-changing
// actions ask first).
document.addEventListener("submit", (event) => {
  const form = event.target;
  const button = event.submitter;
  const message = (button && button.dataset.confirm) || form.dataset.confirm;
  if (message && !window.confirm(message)) event.preventDefault();
}, true);

// How times and sky positions read on every page (the same rules as common/formats.py and its template
// filters): "2026-12-04 23:41:07 UTC", RA "12h30m49.42s", Dec "+12°23′28.0″", sizes "42″" / "3.5′" / "2.5°".
window.pyrosFormat = (() => {
  const EMPTY = "—";
  const pad = (n, width) => String(n).padStart(width, "0");
  function asDate(value) {
    if (value === null || value === undefined || value === "") return null;
    if (value instanceof Date) return isNaN(value) ? null : value;
    let text = String(value).trim();
    // ISO strings without a zone are UTC (as the server sends them); a space may stand for the "T"
    if (/^\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?$/.test(text)) text = text.replace(" ", "T") + "Z";
    const date = new Date(text);
    return isNaN(date) ? null : date;
  }
  function utc(value, style = "s") {
    const d = asDate(value);
    if (!d) return EMPTY;
    const day = `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1, 2)}-${pad(d.getUTCDate(), 2)}`;
    const hm = `${pad(d.getUTCHours(), 2)}:${pad(d.getUTCMinutes(), 2)}`;
    const hms = `${hm}:${pad(d.getUTCSeconds(), 2)}`;
    switch (style) {
      case "min": return `${day} ${hm} UTC`;
      case "ms": return `${day} ${hms}.${pad(d.getUTCMilliseconds(), 3)} UTC`;
      case "time": return `${hms} UTC`;
      case "hm": return `${hm} UTC`;
      case "date": return day;
      default: return `${day} ${hms} UTC`;
    }
  }
  const finite = (v) => (typeof v === "number" || (typeof v === "string" && v.trim() !== "")) && isFinite(Number(v));
  function ra(deg) {
    if (!finite(deg)) return EMPTY;
    let cs = Math.round((((Number(deg) % 360) + 360) % 360) / 15 * 360000) % (24 * 360000);
    const h = Math.floor(cs / 360000); cs -= h * 360000;
    const m = Math.floor(cs / 6000); cs -= m * 6000;
    return `${pad(h, 2)}h${pad(m, 2)}m${(cs / 100).toFixed(2).padStart(5, "0")}s`;
  }
  function dec(deg) {
    if (!finite(deg)) return EMPTY;
    const value = Number(deg);
    let tenths = Math.round(Math.abs(value) * 36000);
    const sign = value < 0 && tenths > 0 ? "-" : "+";
    const d = Math.floor(tenths / 36000); tenths -= d * 36000;
    const m = Math.floor(tenths / 600); tenths -= m * 600;
    return `${sign}${pad(d, 2)}°${pad(m, 2)}′${(tenths / 10).toFixed(1).padStart(4, "0")}″`;
  }
  function significant(x) {
    const trim = (s) => s.includes(".") ? s.replace(/0+$/, "").replace(/\.$/, "") : s;
    if (x >= 99.95) return x.toFixed(0);
    if (x >= 10) return trim(x.toFixed(1));
    if (x >= 1) return x < 9.995 ? trim(x.toFixed(2)) : trim(x.toFixed(1));
    return String(Number(x.toPrecision(2)));
  }
  function angle(deg) {
    if (!finite(deg)) return EMPTY;
    const size = Math.abs(Number(deg));
    if (size * 60 < 1) return significant(size * 3600) + "″";
    if (size < 1) return significant(size * 60) + "′";
    return significant(size) + "°";
  }
  return {utc, ra, dec, angle, asDate};
})();

// A chart drawn by a script (Plotly's SVG says nothing to a screen reader): a figure with a name saying
// what it shows. Templates name their chart containers already; scripts refine the name with the data.
window.pyrosFigure = (element, name) => {
  if (!element) return;
  if (!element.getAttribute("role")) element.setAttribute("role", "figure");
  element.setAttribute("aria-label", name);
};

// A chart title that fits its chart: broken into lines at word boundaries for the chart's width (about
// 7.5 px a character at Plotly's 13 px), with the top margin it needs and no tool bar on a phone.
window.pyrosChartFit = (element, title) => {
  const width = element.clientWidth || 600;
  const perLine = Math.max(20, Math.floor(width / 7.5));
  const lines = [];
  for (const word of String(title).split(" ")) {
    const last = lines.length - 1;
    if (last >= 0 && (lines[last] + " " + word).length <= perLine) lines[last] += " " + word;
    else lines.push(word);
  }
  return {title: lines.join("<br>"), marginTop: 24 + 17 * lines.length, narrow: width < 576};
};
