// One queue item's page: its flow's steps as a tree with their states, its log, Recover / Abort. Polls
// GET /api/queue/items/<uid>/ every second (what the worker has recorded: the page never guesses a state).
(function () {
  "use strict";
  const cfg = window.PYROS_ITEM;
  const $ = (id) => document.getElementById(id);
  const open = new Set();  // the steps whose data the reader opened, kept open across redraws
  const BADGE = {pending: "secondary", running: "primary", succeeded: "success", failed: "danger", skipped: "warning",
    aborted: "dark", queued: "secondary", completed: "success", stopped: "warning"};
  let last = "";
  let current = null;

  function esc(s) {
    return String(s === null || s === undefined ? "" : s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
  }
  function csrf() {
    const m = document.cookie.match(/csrftoken=([^;]+)/);
    return m ? m[1] : "";
  }
  function say(ok, msg, html) {
    const box = $("message");
    box.className = "alert py-2 " + (ok ? "alert-success" : "alert-danger");
    if (html) box.innerHTML = html; else box.textContent = msg;
  }
  const time = (iso) => (iso ? window.pyrosFormat.utc(iso, "time") : "—");  // log lines: the time of day
  const moment = (iso) => (iso ? window.pyrosFormat.utc(iso) : "—");  // an item's times: with their date

  function stepLine(s, itemEnded) {
    const shown = JSON.stringify(s.value);
    const value = s.kind === "iteration" && shown !== s.name ? ` <span class="text-muted">${esc(shown)}</span>` : "";
    const label = s.kind === "step" ? esc(s.title || s.name) : `<strong>${esc(s.title || s.name)}</strong>`;
    const tele = s.telescope ? ' <span class="badge text-bg-light border" title="needs the telescope">telescope</span>' : "";
    const when = !s.reused && s.duration_s !== null ? `<span class="text-muted">${s.duration_s.toFixed(1)} s</span>` : "";
    const msg = s.message && s.kind === "step" && !s.reused ? `<div class="text-${s.state === "failed" ? "danger" : "muted"} ms-4">${esc(s.message)}</div>` : "";
    const data = s.kind === "step" && Object.keys(s.data || {}).length
      ? `<details class="ms-4" data-path="${esc(s.path)}" ${open.has(s.path) ? "open" : ""}><summary class="text-muted">data</summary><pre class="mb-1">${esc(JSON.stringify(s.data, null, 1))}</pre></details>` : "";
    const tb = s.traceback ? `<details class="ms-4"><summary class="text-danger">traceback</summary><pre class="mb-1">${esc(s.traceback)}</pre></details>` : "";
    return `<li data-path="${esc(s.path)}" data-state="${esc(s.state)}" data-kind="${esc(s.kind)}" style="padding-left:${s.depth * 1.25}rem" class="py-1 border-bottom">
      <span class="badge text-bg-${BADGE[s.state] || "secondary"} step-state">${esc(s.state === "pending" && itemEnded ? "not run" : s.state)}</span> ${label}${value}${tele}
      ${s.reused ? '<span class="badge text-bg-light border" title="succeeded in the run this one recovers: not run again">done before</span>' : ""} ${when}${msg}${data}${tb}</li>`;
  }

  function draw(data) {
    const item = data.item, flow = data.flow;
    current = item;
    $("item-status").textContent = item.status;
    $("item-status").className = "badge text-bg-" + (BADGE[item.status] || "secondary");
    const facts = [["procedure", item.procedure], ["parameters", JSON.stringify(item.params)], ["added", `${moment(item.added_at)} by ${item.added_by || "?"}`],
      ["started", moment(item.started_at)], ["ended", moment(item.ended_at)], ["duration", item.duration_s !== null ? item.duration_s.toFixed(1) + " s" : "—"],
      ["outcome", item.message || "—"]];
    if (item.status === "running") facts.push(["progress", `${item.progress.current ?? ""}${item.progress.total ? " / " + item.progress.total : ""} ${item.progress.message || ""}`.trim() || "—"]);
    const published = item.published && Object.keys(item.published).length
      ? `<pre class="small mb-0" id="item-published" style="white-space:pre-wrap">${esc(JSON.stringify(item.published, null, 1))}</pre>` : "";
    $("item-facts").innerHTML = facts.map(([k, v]) => `<dt class="col-4">${esc(k)}</dt><dd class="col-8 text-break">${esc(v)}</dd>`).join("")
      + (published ? `<dt class="col-12">published</dt><dd class="col-12 text-break">${published}</dd>` : "");
    const log = (item.log || []).slice(-200).map((l) => `${esc(time(l[0]))} ${esc(l[1])} ${esc(l[2])}`).join("\n");
    const pre = $("item-log");
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.innerHTML = log;
    if (atBottom) pre.scrollTop = pre.scrollHeight;
    if (cfg.operator) {
      $("recover-btn").classList.toggle("d-none", !item.recoverable || (flow && flow.recoveries.some((r) => r.status === "queued" || r.status === "running")));
      $("abort-btn").classList.toggle("d-none", item.status !== "running");
    }
    // Not a flow: no steps to show, the log takes the page's width.
    const noSteps = !flow && item.status !== "queued";
    $("steps-col").classList.toggle("d-none", noSteps);
    $("side-col").classList.toggle("col-lg-5", !noSteps);
    if (!flow) {
      $("flow-counts").textContent = "";
      $("flow-tree").innerHTML = `<li class="text-muted">${item.status === "queued" ? "not started yet" : "not a flow: this procedure has no steps"}</li>`;
      return;
    }
    const c = flow.counts;
    $("flow-counts").textContent = `${c.steps} steps: ${c.succeeded} succeeded${c.reused ? ` (${c.reused} in an earlier run)` : ""}, ${c.running} running, ${c.failed} failed, ${c.aborted} aborted, ${c.skipped} skipped, ${c.pending} ${item.status === "running" ? "waiting" : "not run"}`;
    const links = [];
    if (flow.recovered_from) links.push(`recovers <a href="/procedures/items/${esc(flow.recovered_from)}/">${esc(flow.recovered_from.slice(0, 8))}</a>`);
    for (const r of flow.recoveries) links.push(`recovered by <a href="/procedures/items/${esc(r.uid)}/" data-recovery>${esc(r.uid.slice(0, 8))}</a> (${esc(r.status)})`);
    $("flow-links").innerHTML = links.join(" · ");
    const ended = !["queued", "running"].includes(item.status);
    $("flow-tree").innerHTML = flow.steps.map((st) => stepLine(st, ended)).join("");
  }

  async function refresh() {
    try {
      const r = await fetch(`/api/queue/items/${cfg.uid}/`, {credentials: "same-origin"});
      const data = await r.json();
      if (!data.success) { say(false, data.msg); return; }
      const key = JSON.stringify(data);
      if (key === last) return;
      last = key;
      draw(data);
    } catch (e) { /* the next round tries again */ }
  }

  async function post(path, body) {
    const r = await fetch("/api/" + path, {method: "POST", headers: {"Content-Type": "application/json", "X-CSRFToken": csrf()},
      credentials: "same-origin", body: JSON.stringify(body || {})});
    let data = {};
    try { data = await r.json(); } catch (e) { data = {success: false, msg: r.statusText}; }
    return data;
  }

  $("flow-tree").addEventListener("toggle", (ev) => {
    const d = ev.target;
    if (d.dataset && d.dataset.path) { if (d.open) open.add(d.dataset.path); else open.delete(d.dataset.path); }
  }, true);
  if (cfg.operator) {
    $("recover-btn").addEventListener("click", async (ev) => {
      if (!window.confirm(ev.currentTarget.dataset.confirm)) return;
      const data = await post("queue/history/recover/", {uid: cfg.uid});
      if (data.success) say(true, "", `${esc(data.msg)}: <a href="/procedures/items/${esc(data.item.uid)}/" id="recovery-link">follow the recovery run</a>`);
      else say(false, data.msg || "refused");
      last = "";
      refresh();
    });
    $("abort-btn").addEventListener("click", async (ev) => {
      const b = ev.currentTarget;
      if (!window.confirm(current && current.is_flow ? b.dataset.confirmFlow : b.dataset.confirm)) return;
      if (!current || current.status !== "running") return;
      const data = await post("queue/abort/", {});
      say(!!data.success, data.msg || (data.success ? "done" : "refused"));
      last = "";
      refresh();
    });
  }
  refresh();
  setInterval(refresh, 1000);
})();
