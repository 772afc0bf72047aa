"""Reads of the procedures app (the API, the pages and the CLI show the same JSON)."""

from __future__ import annotations

from django.utils import timezone

from procedures.models import FlowRun, Procedure, ProcedureModule, QueueItem, StepRun
from procedures.services import queue_state

Status = QueueItem.Status
MANAGER_STALE_S = 5.0


def _iso(value):
    return value.isoformat().replace("+00:00", "Z") if value else None


def _recovered_by(items) -> dict[int, str]:
    """The latest recovery run of each of these items (pk -> its uid), in one query."""
    latest: dict[int, str] = {}
    pks = [i.pk for i in items if i is not None]
    for recovers_id, uid in QueueItem.objects.filter(recovers_id__in=pks).order_by("id").values_list("recovers_id",
                                                                                                      "uid"):
        latest[recovers_id] = str(uid)
    return latest


def item_json(item: QueueItem, *, log: bool = False, recovered_by: dict[int, str] | None = None) -> dict:
    """One item as the API, the pages and the CLI show it. ``recovered_by``: the latest recovery run of each
    item (``_recovered_by``), when the caller read it for many items at once."""
    if recovered_by is None:
        recovered_by = _recovered_by([item])
    duration = None
    if item.started_at:
        duration = round(((item.ended_at or timezone.now()) - item.started_at).total_seconds(), 3)
    out = {
        "uid": str(item.uid), "procedure": item.procedure, "params": item.params, "status": item.status,
        "position": item.position, "timeout_s": item.timeout_s, "sky": item.sky, "added_by": item.added_by,
        "added_at": _iso(item.added_at), "started_at": _iso(item.started_at), "ended_at": _iso(item.ended_at),
        "duration_s": duration,
        "progress": {"current": item.progress_current, "total": item.progress_total,
                     "message": item.progress_message,
                     "fraction": (round(item.progress_current / item.progress_total, 4)
                                  if item.progress_total and item.progress_current is not None else None)},
        "published": item.published, "message": item.message, "traceback": item.traceback,
        "abort_requested": item.abort_requested or None,
        "requeued_from": str(item.requeued_from.uid) if item.requeued_from_id and item.requeued_from else None,
        "recovers": str(item.recovers.uid) if item.recovers_id and item.recovers else None,
        "is_flow": _flow_of(item) is not None,
    }
    # A run already recovered is not recovered again: its recovery knows every step done since (recovering the
    # older run would redo them); the latest run of the chain is the one to recover.
    out["recovered_by"] = recovered_by.get(item.pk)
    out["recoverable"] = bool(out["is_flow"] and item.status in QueueItem.ENDED and item.status != Status.COMPLETED
                              and not out["recovered_by"])
    if log:
        out["log"] = item.log
    return out


def _flow_of(item: QueueItem) -> FlowRun | None:
    try:
        return item.flow
    except FlowRun.DoesNotExist:
        return None


def step_json(step: StepRun) -> dict:
    duration = None
    if step.started_at and step.ended_at:
        duration = round((step.ended_at - step.started_at).total_seconds(), 3)
    elif step.started_at and step.state == StepRun.State.RUNNING:
        duration = round((timezone.now() - step.started_at).total_seconds(), 3)
    return {"path": step.path, "name": step.name, "parent": step.parent_path or None, "kind": step.kind,
            "depth": step.depth, "title": step.title, "telescope": step.telescope, "requires": step.requires,
            "value": step.value, "state": step.state, "reused": step.reused, "data": step.data, "images": step.images,
            "message": step.message, "traceback": step.traceback, "started_at": _iso(step.started_at),
            "ended_at": _iso(step.ended_at), "duration_s": duration}


def flow_json(item: QueueItem) -> dict | None:
    """The steps of a flow item as a tree (depth-first order, each with its parent's path) and their counts."""
    run = _flow_of(item)
    if run is None:
        return None
    steps = [step_json(s) for s in StepRun.objects.filter(run=run).order_by("order")]
    leaves = [s for s in steps if s["kind"] == "step"]
    counts = {state: sum(1 for s in leaves if s["state"] == state) for state in StepRun.State.values}
    counts["reused"] = sum(1 for s in leaves if s["reused"])
    counts["steps"] = len(leaves)
    recoveries = list(QueueItem.objects.filter(recovers=item).order_by("id").values_list("uid", "status"))
    return {"started_at": _iso(run.started_at), "ended_at": _iso(run.ended_at), "max_concurrent": run.max_concurrent,
            "stop_on_failure": run.stop_on_failure,
            "recovered_from": str(run.recovered_from.item.uid) if run.recovered_from_id else None,
            "recoveries": [{"uid": str(u), "status": st} for u, st in recoveries],
            "counts": counts, "steps": steps}


def queue_status(*, history: int = 10, log: bool = True) -> dict:
    """The whole queue: switches, environment, the running item (with its live log), waiting items and the
    latest history."""
    state = queue_state()
    now = timezone.now()
    related = ("flow", "requeued_from", "recovers")
    running = QueueItem.objects.select_related(*related).filter(status=Status.RUNNING).first()
    items = QueueItem.objects.select_related(*related).filter(status=Status.QUEUED).order_by("position", "id")
    ended = QueueItem.objects.select_related(*related).filter(status__in=QueueItem.ENDED).order_by(
        "-ended_at", "-id")[:history]
    items, ended = list(items), list(ended)
    recovered_by = _recovered_by([running, *items, *ended])
    manager_alive = bool(state.manager_heartbeat and (now - state.manager_heartbeat).total_seconds() < MANAGER_STALE_S)
    return {
        "queue": {
            "running": state.running, "paused": state.paused, "pause_requested": state.pause_requested or None,
            "state": ("paused" if state.paused else "pausing" if state.pause_requested else
                      "started" if state.running else "stopped"),
            "block_until": _iso(state.block_until) if state.block_until and state.block_until > now else None,
            "waiting_reason": state.waiting_reason or None,
            "items_count": len(items),
        },
        "environment": {"status": state.env_status, "pid": state.env_pid, "command": state.env_command or None,
                        "manager_alive": manager_alive},
        "running_item": item_json(running, log=log, recovered_by=recovered_by) if running else None,
        "items": [item_json(i, recovered_by=recovered_by) for i in items],
        "history": [item_json(i, recovered_by=recovered_by) for i in ended],
        "version": state.version,
    }


def running_item_name() -> str | None:
    """The procedure of the running item, if one runs (for answers that say what a command does to it)."""
    return QueueItem.objects.filter(status=Status.RUNNING).values_list("procedure", flat=True).first()


def history_list(*, limit: int = 50, offset: int = 0, status: str = "", log: bool = True) -> dict:
    qs = QueueItem.objects.select_related("flow", "requeued_from", "recovers").filter(
        status__in=QueueItem.ENDED).order_by("-ended_at", "-id")
    if status:
        qs = qs.filter(status=status)
    total = qs.count()
    page = list(qs[offset:offset + limit])
    recovered_by = _recovered_by(page)
    return {"count": total, "items": [item_json(i, log=log, recovered_by=recovered_by) for i in page]}


def item_detail(uid) -> QueueItem | None:
    try:
        return QueueItem.objects.select_related("requeued_from", "recovers", "flow").filter(uid=uid).first()
    except Exception:  # a malformed uid
        return None


def procedure_json(proc: Procedure) -> dict:
    return {"name": proc.name, "title": proc.title, "description": proc.description, "module": proc.module.name,
            "timeout_s": proc.timeout_s, "sky": proc.sky, "tags": proc.tags, "schema": proc.schema}


def procedure_list() -> dict:
    modules = ProcedureModule.objects.prefetch_related("procedures")
    return {
        "procedures": [procedure_json(p) for p in Procedure.objects.select_related("module")],
        "modules": [{"name": m.name, "path": m.path, "sha256": m.sha256, "loaded_at": _iso(m.loaded_at),
                     "error": m.error or None, "procedures": [p.name for p in m.procedures.all()]} for m in modules],
    }


def procedure_get(name: str) -> Procedure | None:
    return Procedure.objects.select_related("module").filter(name=name).first()
