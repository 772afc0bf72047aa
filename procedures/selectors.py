"""Reads of the procedures app (the API, the pages and the CLI show the same JSON)."""

from __future__ import annotations

from django.utils import timezone

from procedures.models import Procedure, ProcedureModule, QueueItem
from procedures.services import queue_state

Status = QueueItem.Status
MANAGER_STALE_S = 5.0


def _iso(value):
    return value.isoformat().replace("+00:00", "Z") if value else None


def item_json(item: QueueItem, *, log: bool = False) -> dict:
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
    }
    if log:
        out["log"] = item.log
    return out


def queue_status(*, history: int = 10, log: bool = True) -> dict:
    """The whole queue: switches, environment, the running item (with its live log), waiting items and the
    latest history."""
    state = queue_state()
    now = timezone.now()
    running = QueueItem.objects.filter(status=Status.RUNNING).first()
    items = QueueItem.objects.filter(status=Status.QUEUED).order_by("position", "id")
    ended = QueueItem.objects.filter(status__in=QueueItem.ENDED).order_by("-ended_at", "-id")[:history]
    manager_alive = bool(state.manager_heartbeat and (now - state.manager_heartbeat).total_seconds() < MANAGER_STALE_S)
    return {
        "queue": {
            "running": state.running, "paused": state.paused, "pause_requested": state.pause_requested or None,
            "state": ("paused" if state.paused else "pausing" if state.pause_requested else
                      "started" if state.running else "stopped"),
            "block_until": _iso(state.block_until) if state.block_until and state.block_until > now else None,
            "waiting_reason": state.waiting_reason or None,
            "items_count": items.count(),
        },
        "environment": {"status": state.env_status, "pid": state.env_pid, "command": state.env_command or None,
                        "manager_alive": manager_alive},
        "running_item": item_json(running, log=log) if running else None,
        "items": [item_json(i) for i in items],
        "history": [item_json(i) for i in ended],
        "version": state.version,
    }


def history_list(*, limit: int = 50, offset: int = 0, status: str = "") -> dict:
    qs = QueueItem.objects.filter(status__in=QueueItem.ENDED).order_by("-ended_at", "-id")
    if status:
        qs = qs.filter(status=status)
    total = qs.count()
    return {"count": total, "items": [item_json(i, log=True) for i in qs[offset:offset + limit]]}


def item_detail(uid) -> QueueItem | None:
    try:
        return QueueItem.objects.select_related("requeued_from").filter(uid=uid).first()
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
