// The procedures page: draws the queue from GET /api/queue/ every second, sends commands to the API.
(function () {
  "use strict";
  const operator = window.PYROS_QUEUE && window.PYROS_QUEUE.operator;
  const procedures = JSON.parse(document.getElementById("procedures-data").textContent);
  const byName = Object.fromEntries(procedures.map((p) => [p.name, p]));
  const $ = (id) => document.getElementById(id);
  let version = null;
  const HISTORY_PAGE = 10;  // as many as GET /api/queue/ carries; "older items" asks the history for more
  let historyLimit = HISTORY_PAGE;

  function csrf() {
    const m = document.cookie.match(/csrftoken=([^;]+)/);
    return m ? m[1] : "";
  }
  function esc(s) {
    return String(s === null || s === undefined ? "" : s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
  }
  function say(ok, msg) {
    const box = $("message");
    box.className = "alert py-2 " + (ok ? "alert-success" : "alert-danger");
    box.textContent = msg;
  }
  async function post(path, body) {
    const r = await fetch("/api/" + path, {method: "POST", headers: {"Content-Type": "application/json", "X-CSRFToken": csrf()},
      credentials: "same-origin", body: JSON.stringify(body || {})});
    let data = {};
    try { data = await r.json(); } catch (e) { data = {success: false, msg: r.statusText}; }
    say(!!data.success, data.msg || (data.success ? "done" : "refused"));
    version = null;
    refresh();
    return data;
  }

  function bar(p) {
    const pct = p.fraction === null || p.fraction === undefined ? 0 : Math.round(p.fraction * 1000) / 10;
    return `<div class="progress mb-1" role="progressbar" aria-valuenow="${pct}"><div class="progress-bar" id="progress-bar" style="width:${pct}%">${pct}%</div></div>`;
  }
  function drawRunning(item) {
    const box = $("running");
    if (!item) { box.innerHTML = '<h2 class="h6">Running</h2><p class="text-muted mb-0" id="running-none">nothing</p>'; return; }
    const p = item.progress;
    const log = (item.log || []).slice(-30).map((l) => `${esc(window.pyrosFormat.utc(l[0], "time"))} ${esc(l[1])} ${esc(l[2])}`).join("\n");
    box.innerHTML = `<h2 class="h6">Running: <a id="running-name" href="/procedures/items/${esc(item.uid)}/">${esc(item.procedure)}</a>${item.recovers ? ' <span class="badge text-bg-light border" title="a recovery run: the steps that succeeded before are not run again">recovery</span>' : ""}${item.is_flow ? ` <a class="small" href="/procedures/items/${esc(item.uid)}/" id="running-steps">steps →</a>` : ""}</h2>
      <div class="small text-muted mb-1">${esc(JSON.stringify(item.params))} · ${item.duration_s ? item.duration_s.toFixed(0) : 0} s</div>
      ${bar(p)}<div class="small mb-2" id="progress-message">${esc(p.current ?? "")}${p.total ? " / " + esc(p.total) : ""} ${esc(p.message)}</div>
      <pre class="small bg-body-tertiary p-2 mb-0" id="live-log" style="max-height:16rem;overflow:auto;white-space:pre-wrap">${log}</pre>`;
    const pre = $("live-log");
    pre.scrollTop = pre.scrollHeight;
  }
  function drawItems(items) {
    const list = $("queue-items");
    list.classList.toggle("d-none", !items.length);
    $("queue-empty").classList.toggle("d-none", !!items.length);
    list.innerHTML = items.map((it, i) => `<li class="list-group-item d-flex align-items-center gap-2 py-1" draggable="${operator}" data-uid="${it.uid}" data-procedure="${esc(it.procedure)}">
      <span class="flex-grow-1 text-break"><a href="/procedures/items/${esc(it.uid)}/"><strong>${esc(it.procedure)}</strong></a>${it.recovers ? ' <span class="badge text-bg-light border" title="a recovery run: the steps that succeeded before are not run again">recovery</span>' : ""} <span class="small text-muted">${esc(JSON.stringify(it.params))}</span></span>
      ${operator ? `<button class="btn btn-sm btn-outline-secondary py-0" data-move="up" ${i === 0 ? "disabled" : ""} title="up">↑</button>
      <button class="btn btn-sm btn-outline-secondary py-0" data-move="down" ${i === items.length - 1 ? "disabled" : ""} title="down">↓</button>
      <button class="btn btn-sm btn-outline-danger py-0" data-remove title="remove" aria-label="remove ${esc(it.procedure)}">✕</button>` : ""}</li>`).join("");
  }
  function drawHistory(items) {
    $("history").innerHTML = items.map((it) => `<tr data-uid="${it.uid}"><td>${esc(window.pyrosFormat.utc(it.ended_at, "min"))}</td>
      <td><a href="/procedures/items/${esc(it.uid)}/">${esc(it.procedure)}</a>${it.recovers ? ' <span class="badge text-bg-light border" title="a recovery run">recovery</span>' : ""}</td><td><span class="badge text-bg-${it.status === "completed" ? "success" : it.status === "failed" ? "danger" : "warning"}">${esc(it.status)}</span></td>
      <td>${it.duration_s ? it.duration_s.toFixed(1) + " s" : ""}</td><td class="text-truncate" style="max-width:14rem" title="${esc(it.traceback || it.message)}">${esc(it.message)}</td>
      <td class="text-nowrap">${operator ? `<button class="btn btn-sm btn-outline-primary py-0" data-requeue data-procedure="${esc(it.procedure)}" data-flow="${it.is_flow}" title="queue it again from the start">again</button>` : ""}
      ${operator && it.recoverable ? '<button class="btn btn-sm btn-outline-success py-0" data-recover title="run the steps that did not succeed">recover</button>' : ""}</td></tr>`).join("");
  }
  async function refresh() {
    try {
      const r = await fetch("/api/queue/", {credentials: "same-origin"});
      const data = await r.json();
      if (!data.success) return;
      // The manager's liveness is read at each request: a manager that died bumps no version, so this is
      // drawn every round (else the page would go on saying "environment idle" about a dead process).
      const env = data.environment;
      $("env-state").textContent = "environment " + env.status + (env.pid ? ` (pid ${env.pid})` : "") + (env.manager_alive ? "" : " (manager not running)");
      $("env-state").className = "badge border " + (env.manager_alive ? "text-bg-light" : "text-bg-danger");
      if (data.version === version) return;
      version = data.version;
      const q = data.queue;
      $("queue-state").textContent = "queue " + q.state;
      $("waiting").textContent = q.waiting_reason || "";
      $("block-state").textContent = q.block_until ? `procedure block until ${window.pyrosFormat.utc(q.block_until, "min")}` : "no procedure block";
      if (operator) {
        $("block-close-btn").classList.toggle("d-none", !q.block_until);
        $("block-open-btn").textContent = q.block_until ? "Extend the block" : "Open a procedure block";
        $("abort-btn").disabled = !data.running_item;
        $("pause-now-btn").disabled = !data.running_item;
        $("clear-btn").disabled = !data.items.length;
      }
      drawRunning(data.running_item);
      drawItems(data.items);
      let history = data.history, count = null;
      if (historyLimit > HISTORY_PAGE) {  // the older items too (without their logs: the item page has them)
        const h = await (await fetch(`/api/queue/history/?limit=${historyLimit}&log=false`, {credentials: "same-origin"})).json();
        if (h.success) { history = h.items; count = h.count; }
      }
      drawHistory(history);
      $("history-count").textContent = !history.length ? "no item has ended yet" : count !== null ? `${history.length} of ${count}` : `the latest ${history.length}`;
      $("history-more-btn").classList.toggle("d-none", count !== null ? history.length >= count : history.length < HISTORY_PAGE);
    } catch (e) { /* the next round tries again */ }
  }

  // --- parameter form from the JSON schema -----------------------------------------------------
  function drawForm() {
    const p = byName[$("procedure-select").value];
    if (!p) return;
    $("procedure-doc").textContent = p.description;
    const props = p.schema.properties || {};
    $("param-form").innerHTML = Object.entries(props).map(([name, s]) => {
      const unit = s["x-unit"] ? ` [${esc(s["x-unit"])}]` : "";
      const type = Array.isArray(s.type) ? s.type.find((t) => t !== "null") : s.type;
      const def = s.default === undefined || s.default === null ? "" : (Array.isArray(s.default) ? s.default.join(", ") : s.default);
      let input;
      if (s.enum) {
        input = `<select class="form-select form-select-sm" name="${esc(name)}">${s.enum.map((v) => `<option ${v === s.default ? "selected" : ""}>${esc(v)}</option>`).join("")}</select>`;
      } else if (type === "boolean") {
        input = `<input type="checkbox" class="form-check-input" name="${esc(name)}" ${s.default ? "checked" : ""}>`;
      } else {
        const html = type === "integer" || type === "number" ? `type="number" step="${type === "integer" ? 1 : "any"}"` : 'type="text"';
        input = `<input class="form-control form-control-sm" ${html} name="${esc(name)}" value="${esc(def)}" ${s.minimum !== undefined ? `min="${s.minimum}"` : ""} ${s.maximum !== undefined ? `max="${s.maximum}"` : ""}>`;
      }
      return `<div class="mb-2"><label class="form-label mb-0">${esc(s.title || name)}${unit}</label>${input}<div class="form-text">${esc(s.description || "")}</div></div>`;
    }).join("");
  }
  function formParams() {
    const p = byName[$("procedure-select").value];
    const out = {};
    for (const el of $("param-form").elements) {
      const s = p.schema.properties[el.name];
      if (!s) continue;
      if (el.type === "checkbox") out[el.name] = el.checked;
      else if (el.value !== "" || !("default" in s)) out[el.name] = el.value;  // converted by the schema on the server
    }
    return out;
  }

  if (operator) {
    $("procedure-select").addEventListener("change", drawForm);
    drawForm();
    $("add-btn").addEventListener("click", () => post("queue/items/", {procedure: $("procedure-select").value, params: formParams()}));
    $("detect-btn").addEventListener("click", async () => {
      const r = await fetch("/api/procedures/changes/", {credentials: "same-origin"});
      const d = await r.json();
      const c = d.changes || {};
      say(d.success, `${d.msg}: added ${(c.added || []).join(", ") || "-"}; modified ${(c.modified || []).join(", ") || "-"}; removed ${(c.removed || []).join(", ") || "-"}`);
    });
    $("reload-btn").addEventListener("click", async () => { const d = await post("procedures/reload/"); if (d.success) setTimeout(() => location.reload(), 600); });
    $("block-open-btn").addEventListener("click", () => post("queue/block/", {minutes: $("block-minutes").value}));
    $("block-close-btn").addEventListener("click", () => post("queue/block/", {minutes: 0}));
    document.body.addEventListener("click", (ev) => {
      const b = ev.target.closest("button");
      if (!b) return;
      // Irreversible commands ask first (the message says what happens).
      if (b.dataset.confirm && !window.confirm(b.dataset.confirm)) return;
      if (b.dataset.cmd) post("queue/" + b.dataset.cmd + "/", b.dataset.body ? JSON.parse(b.dataset.body) : {});
      const li = b.closest("li[data-uid]");
      if (li && b.dataset.move) {
        const other = b.dataset.move === "up" ? li.previousElementSibling : li.nextElementSibling;
        if (other) post("queue/move/", b.dataset.move === "up" ? {uid: li.dataset.uid, before_uid: other.dataset.uid} : {uid: li.dataset.uid, after_uid: other.dataset.uid});
      }
      if (li && b.dataset.remove !== undefined && window.confirm(`Remove ${li.dataset.procedure} from the queue?`)) post("queue/remove/", {uid: li.dataset.uid});
      const tr = b.closest("tr[data-uid]");
      // A flow queued again runs every step again (frames included): Recover is the way to finish one.
      if (tr && b.dataset.requeue !== undefined && (b.dataset.flow !== "true" || window.confirm(
        `Queue ${b.dataset.procedure} again from the start? Every step runs again, frames included (Recover runs only what did not succeed).`))) {
        post("queue/history/requeue/", {uid: tr.dataset.uid});
      }
      if (tr && b.dataset.recover !== undefined && window.confirm("Recover this flow? A new run is queued at the front: the steps that succeeded are not run again, the others run again.")) {
        post("queue/history/recover/", {uid: tr.dataset.uid});
      }
    });
    // Drag and drop: dropping an item on another puts it before that one (after it when dropped on its lower half).
    let dragged = null;
    const list = $("queue-items");
    list.addEventListener("dragstart", (ev) => { dragged = ev.target.closest("li[data-uid]"); ev.dataTransfer.effectAllowed = "move"; });
    list.addEventListener("dragover", (ev) => { ev.preventDefault(); });
    list.addEventListener("drop", (ev) => {
      ev.preventDefault();
      const target = ev.target.closest("li[data-uid]");
      if (!dragged || !target || target === dragged) return;
      const rect = target.getBoundingClientRect();
      const after = ev.clientY > rect.top + rect.height / 2;
      post("queue/move/", after ? {uid: dragged.dataset.uid, after_uid: target.dataset.uid} : {uid: dragged.dataset.uid, before_uid: target.dataset.uid});
      dragged = null;
    });
  }
  $("history-more-btn").addEventListener("click", () => { historyLimit += 50; version = null; refresh(); });
  refresh();
  setInterval(refresh, 1000);
})();
