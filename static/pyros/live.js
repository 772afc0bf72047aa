// Pages that update by themselves (issue #16), no inline script: an element with data-live-url names a cheap
// endpoint answering {"version": "..."}; while the tab is visible it is asked every data-live-every-s seconds
// (5). When the version differs from the page's (data-live-version), the page is fetched again and every
// element marked data-live (with an id) is replaced by its new version; data-live-mode="reload" reloads the
// whole page instead (pages whose charts are drawn by scripts), unless the user is typing in a field.
(() => {
  const marker = document.querySelector("[data-live-url]");
  if (!marker) return;
  const everyMs = 1000 * (parseFloat(marker.dataset.liveEveryS) || 5);
  const say = (text) => { const stamp = document.querySelector("[data-live-stamp]"); if (stamp) stamp.textContent = text; };
  let version = marker.dataset.liveVersion || "";
  let busy = false;
  const swap = async () => {
    const answer = await fetch(window.location.href, {credentials: "same-origin", headers: {"X-PyROS-Live": "1"}});
    if (!answer.ok) return false;
    const fresh = new DOMParser().parseFromString(await answer.text(), "text/html");
    for (const element of document.querySelectorAll("[data-live][id]")) {
      const replacement = fresh.getElementById(element.id);
      if (!replacement) return false; // the page's shape changed: reload it
      if (replacement.outerHTML !== element.outerHTML) element.replaceWith(document.importNode(replacement, true));
    }
    return true;
  };
  const typing = () => {
    const active = document.activeElement;
    return active && ["INPUT", "TEXTAREA", "SELECT"].includes(active.tagName);
  };
  const poll = async () => {
    if (busy || document.hidden) return;
    busy = true;
    try {
      const answer = await fetch(marker.dataset.liveUrl, {credentials: "same-origin", headers: {Accept: "application/json"}});
      if (!answer.ok) return;
      const latest = (await answer.json()).version;
      if (latest && latest !== version) {
        if (marker.dataset.liveMode === "reload") {
          if (!typing()) window.location.reload();
          return;
        }
        if (!(await swap())) { window.location.reload(); return; }
        version = latest;
        marker.dataset.liveVersion = latest;
      }
      say("updated " + window.pyrosFormat.utc(new Date(), "time"));
    } catch (error) {
      say("not updated (server unreachable)");
    } finally {
      busy = false;
    }
  };
  window.setInterval(poll, everyMs);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) poll(); });
})();
