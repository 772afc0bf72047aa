"""Writes of the procedures app: reload the procedures, and every queue command.

Every command validates first and changes nothing on a refusal (``QueueError`` with the message the
operator sees, and the HTTP status the API answers). Item moves renumber the queued items in one
transaction; items not started are edited with conditional updates (``status="queued"``), so an item the
manager has just started cannot be changed under it."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import F, Max
from django.utils import timezone

from procedures.flows import flow_run_close
from procedures.loader import file_sha256, module_files
from procedures.models import FlowRun, Procedure, ProcedureModule, QueueItem, QueueState, StepRun
from procedures.schema import validate_params

log = logging.getLogger("pyros.procedures")

Status = QueueItem.Status
LOADER_TIMEOUT_S = 60.0


class QueueError(Exception):
    def __init__(self, message: str, *, status: int = 400, errors: list | dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.errors = errors or []


def queue_state() -> QueueState:
    state = QueueState.objects.order_by("pk").first()
    if state is None:
        state, _ = QueueState.objects.get_or_create(pk=1)
    return state


def _bump(**changes) -> QueueState:
    state = queue_state()
    QueueState.objects.filter(pk=state.pk).update(**changes, version=F("version") + 1, updated=timezone.now())
    state.refresh_from_db()
    return state


def _bump_version() -> None:
    QueueState.objects.filter(pk=queue_state().pk).update(version=F("version") + 1)


# --- Procedures: detect changes, reload -----------------------------------------------------------
def procedures_detect_changes(*, directory: Path | None = None) -> dict:
    """Which modules of the folder differ from the last reload: ``added``, ``modified``, ``removed``,
    ``unchanged`` (module names). Reads the files only (their SHA-256), runs nothing."""
    files = module_files(directory or settings.PYROS_PROCEDURES_DIR)
    loaded = dict(ProcedureModule.objects.values_list("name", "sha256"))
    on_disk = {name: file_sha256(path) for name, path in files.items()}
    return {
        "added": sorted(set(on_disk) - set(loaded)),
        "modified": sorted(n for n in on_disk if n in loaded and loaded[n] != on_disk[n]),
        "removed": sorted(set(loaded) - set(on_disk)),
        "unchanged": sorted(n for n in on_disk if loaded.get(n) == on_disk[n]),
    }


def _describe_in_subprocess(directory: Path) -> list[dict]:
    """The loader in a short-lived process: operator code never runs in the web process, and a module that
    hangs or exits while loading cannot take it down."""
    try:
        out = subprocess.run([sys.executable, "-m", "procedures.loader", str(directory)], capture_output=True,
                             timeout=LOADER_TIMEOUT_S, cwd=Path(__file__).resolve().parent.parent, check=False)
    except subprocess.TimeoutExpired as exc:
        raise QueueError(f"loading the procedures took more than {LOADER_TIMEOUT_S:.0f} s (a module hangs "
                         "while it is imported?)", status=500) from exc
    if out.returncode != 0:
        raise QueueError(f"the procedure loader failed: {out.stderr.decode(errors='replace')[-2000:]}", status=500)
    return json.loads(out.stdout)


@transaction.atomic
def procedures_reload(*, directory: Path | None = None, by: str = "") -> dict:
    """Load every module of the folder again (new, changed and removed ones). A module with an error is
    kept with its traceback and no procedure; the others are unaffected. Returns what changed."""
    directory = Path(directory or settings.PYROS_PROCEDURES_DIR)
    changes = procedures_detect_changes(directory=directory)
    specs = _describe_in_subprocess(directory)
    now = timezone.now()
    names = {s["name"] for s in specs}
    ProcedureModule.objects.exclude(name__in=names).delete()
    errors = {}
    for spec in specs:
        module, _ = ProcedureModule.objects.update_or_create(name=spec["name"], defaults=dict(
            path=spec["path"], sha256=spec["sha256"], source=spec["source"], error=spec["error"], loaded_at=now))
        keep = [p["name"] for p in spec["procedures"]]
        Procedure.objects.filter(module=module).exclude(name__in=keep).delete()
        Procedure.objects.filter(name__in=keep).exclude(module=module).delete()
        for p in spec["procedures"]:
            Procedure.objects.update_or_create(name=p["name"], defaults=dict(
                module=module, function=p["function"], title=p["title"][:200], description=p["description"],
                schema=p["schema"], timeout_s=p["timeout_s"], sky=p["sky"], tags=p["tags"]))
        if spec["error"]:
            errors[spec["name"]] = spec["error"]
    _bump_version()
    log.info("procedures reloaded%s: %d module(s), %d procedure(s)%s", f" by {by}" if by else "", len(specs),
             Procedure.objects.count(), f"; errors in {', '.join(sorted(errors))}" if errors else "")
    return {**changes, "errors": errors, "procedures": list(Procedure.objects.values_list("name", flat=True))}


def procedures_ensure_loaded() -> None:
    """The first time (empty tables), load the folder."""
    if not ProcedureModule.objects.exists():
        procedures_reload(by="first use")


# --- Queue items ----------------------------------------------------------------------------------
def _validated(procedure: str, params: dict | None) -> tuple[Procedure, dict]:
    proc = Procedure.objects.filter(name=procedure).first() if isinstance(procedure, str) else None
    if proc is None:
        raise QueueError(f"unknown procedure {procedure!r}" + ("" if Procedure.objects.exists() else
                                                              " (no procedure is loaded: reload them)"),
                         status=400)
    clean, errors = validate_params(proc.schema, params)
    if errors:
        raise QueueError(f"{proc.name}: invalid parameters: " + "; ".join(errors), errors=errors)
    return proc, clean


def _next_position() -> int:
    top = QueueItem.objects.filter(status=Status.QUEUED).aggregate(m=Max("position"))["m"]
    return 0 if top is None else top + 1


def _timeout(proc: Procedure, timeout_s) -> float:
    if timeout_s in (None, ""):
        return proc.timeout_s
    try:
        value = float(timeout_s)
    except (TypeError, ValueError) as exc:
        raise QueueError("timeout_s must be a number of seconds") from exc
    if not 0 < value <= 24 * 3600:
        raise QueueError("timeout_s must be between 0 and 86400 s")
    return value


def _positions(uids: list) -> None:
    for i, uid in enumerate(uids):
        QueueItem.objects.filter(uid=uid, status=Status.QUEUED).update(position=i)


def _queued_uids() -> list:
    return list(QueueItem.objects.filter(status=Status.QUEUED).order_by("position", "id").values_list("uid", flat=True))


@transaction.atomic
def queue_item_add(*, procedure: str, params: dict | None = None, by: str = "", timeout_s=None,
                   pos: str | int | None = None, before_uid=None, after_uid=None) -> QueueItem:
    """Validate and queue one item (at the back, or at ``pos`` / ``before_uid`` / ``after_uid``)."""
    proc, clean = _validated(procedure, params)
    item = QueueItem.objects.create(procedure=proc.name, params=clean, position=_next_position(),
                                    timeout_s=_timeout(proc, timeout_s), sky=proc.sky, added_by=by)
    if pos not in (None, "", "back") or before_uid or after_uid:
        queue_item_move(uid=item.uid, pos=pos, before_uid=before_uid, after_uid=after_uid)
    _bump_version()
    log.info("queued %s %s by %s", proc.name, json.dumps(clean), by or "?")
    return item


@transaction.atomic
def queue_batch_add(*, items: list[dict], by: str = "") -> list[QueueItem]:
    """Validate every item first; queue all of them or none. Errors name the item (1-based)."""
    if not isinstance(items, list) or not items:
        raise QueueError("a batch is a non-empty list of items")
    checked, errors = [], []
    for n, entry in enumerate(items, start=1):
        if not isinstance(entry, dict):
            errors.append(f"item {n}: must be an object with 'procedure' and 'params'")
            continue
        try:
            proc, clean = _validated(entry.get("procedure") or entry.get("name"), entry.get("params"))
            checked.append((proc, clean, _timeout(proc, entry.get("timeout_s"))))
        except QueueError as exc:
            errors.append(f"item {n}: {exc.message}")
    if errors:
        raise QueueError("nothing queued: " + "; ".join(errors), errors=errors)
    start = _next_position()
    created = [QueueItem.objects.create(procedure=proc.name, params=clean, position=start + i, timeout_s=timeout,
                                        sky=proc.sky, added_by=by) for i, (proc, clean, timeout) in enumerate(checked)]
    _bump_version()
    log.info("queued a batch of %d item(s) by %s", len(created), by or "?")
    return created


def _queued_item(uid) -> QueueItem:
    try:
        item = QueueItem.objects.filter(uid=uid).first()
    except Exception as exc:  # a malformed uid
        raise QueueError(f"no queue item {uid}", status=404) from exc
    if item is None:
        raise QueueError(f"no queue item {uid}", status=404)
    if item.status != Status.QUEUED:
        raise QueueError(f"item {uid} is {item.status}, not waiting in the queue", status=409)
    return item


@transaction.atomic
def queue_item_move(*, uid, pos: str | int | None = None, before_uid=None, after_uid=None) -> QueueItem:
    """Move a waiting item: to ``pos`` ("front", "back" or an index from 0; negative from the back), or
    just before / after another waiting item."""
    item = _queued_item(uid)
    order = [u for u in _queued_uids() if u != item.uid]
    if before_uid or after_uid:
        other = _queued_item(before_uid or after_uid)
        if other.uid == item.uid:
            raise QueueError("an item cannot be moved relative to itself")
        index = order.index(other.uid) + (0 if before_uid else 1)
    elif pos in ("front", "top"):
        index = 0
    elif pos in ("back", "bottom", None, ""):
        index = len(order)
    else:
        try:
            index = int(pos)
        except (TypeError, ValueError) as exc:
            raise QueueError("pos must be 'front', 'back' or an integer index") from exc
        if index < 0:
            index = len(order) + 1 + index
        index = max(0, min(len(order), index))
    order.insert(index, item.uid)
    _positions(order)
    _bump_version()
    item.refresh_from_db()
    return item


@transaction.atomic
def queue_item_remove(*, uid) -> QueueItem:
    item = _queued_item(uid)
    if not QueueItem.objects.filter(pk=item.pk, status=Status.QUEUED).delete()[0]:
        raise QueueError(f"item {uid} has just started", status=409)
    _bump_version()
    return item


@transaction.atomic
def queue_clear() -> int:
    """Remove every waiting item (the running one and the history stay)."""
    n = QueueItem.objects.filter(status=Status.QUEUED).delete()[0]
    _bump_version()
    return n


@transaction.atomic
def queue_item_edit(*, uid, params: dict | None = None, procedure: str | None = None, timeout_s=None) -> QueueItem:
    """Change the parameters (and/or the procedure) of an item that has not started; validated again."""
    item = _queued_item(uid)
    merged = params if params is not None else item.params
    proc, clean = _validated(procedure or item.procedure, merged)
    n = QueueItem.objects.filter(pk=item.pk, status=Status.QUEUED).update(
        procedure=proc.name, params=clean, sky=proc.sky,
        timeout_s=_timeout(proc, timeout_s) if (timeout_s or procedure) else item.timeout_s)
    if not n:
        raise QueueError(f"item {uid} has just started", status=409)
    _bump_version()
    item.refresh_from_db()
    return item


@transaction.atomic
def history_requeue(*, uid, by: str = "") -> QueueItem:
    """Queue an ended item again (same procedure and parameters, validated against today's schema)."""
    old = QueueItem.objects.filter(uid=uid).first() if uid else None
    if old is None:
        raise QueueError(f"no history item {uid}", status=404)
    if old.status not in QueueItem.ENDED:
        raise QueueError(f"item {uid} is {old.status}: only ended items are queued again", status=409)
    item = queue_item_add(procedure=old.procedure, params=old.params, by=by)
    QueueItem.objects.filter(pk=item.pk).update(requeued_from=old)
    item.requeued_from = old
    return item


@transaction.atomic
def queue_item_recover(*, uid, by: str = "") -> QueueItem:
    """Queue a recovery run of an ended flow that did not complete (failed, aborted, stopped, or cut short by
    a killed worker), at the front of the queue: it skips the steps that succeeded (their data available to
    the later steps) and runs the rest. Same procedure and parameters (validated against today's schema)."""
    try:
        old = QueueItem.objects.filter(uid=uid).first() if uid else None
    except Exception as exc:  # a malformed uid
        raise QueueError(f"no queue item {uid}", status=404) from exc
    if old is None:
        raise QueueError(f"no queue item {uid}", status=404)
    if old.status not in QueueItem.ENDED:
        raise QueueError(f"item {uid} is {old.status}: only an ended flow is recovered", status=409)
    run = FlowRun.objects.filter(item=old).first()
    if run is None:
        raise QueueError(f"{old.procedure} ({uid}) ran no flow: there are no steps to recover (queue it again)",
                         status=409)
    if old.status == Status.COMPLETED:
        raise QueueError(f"{old.procedure} ({uid}) completed: every step succeeded, nothing to recover", status=409)
    waiting = QueueItem.objects.filter(recovers=old, status__in=(Status.QUEUED, Status.RUNNING)).first()
    if waiting is not None:
        raise QueueError(f"a recovery of this item is already {waiting.status} ({waiting.uid})", status=409)
    later = QueueItem.objects.filter(recovers=old).order_by("-id").first()
    if later is not None:  # recovering this older run would redo what its recovery did since
        then = ("nothing is left to recover" if later.status == Status.COMPLETED else
                f"recover {later.uid} instead (it knows every step done since)")
        raise QueueError(f"{old.procedure} ({uid}) was already recovered by {later.uid}, which {later.status}: {then}",
                         status=409)
    item = queue_item_add(procedure=old.procedure, params=old.params, by=by, timeout_s=old.timeout_s, pos="front")
    QueueItem.objects.filter(pk=item.pk).update(recovers=old, requeued_from=old)
    item.recovers, item.requeued_from = old, old
    done = StepRun.objects.filter(run=run, kind="step", state=StepRun.State.SUCCEEDED).count()
    total = StepRun.objects.filter(run=run, kind="step").count()
    log.info("recovery of %s %s queued by %s (%d of %d steps succeeded)", old.procedure, old.uid, by or "?", done,
             total)
    return item


@transaction.atomic
def history_clear() -> int:
    n = QueueItem.objects.filter(status__in=QueueItem.ENDED).delete()[0]
    _bump_version()
    return n


# --- Queue switches -------------------------------------------------------------------------------
def queue_start(*, by: str = "") -> QueueState:
    """Start the queue (opens the worker environment if it is closed); resumes a paused queue too."""
    state = queue_state()
    changes = {"running": True, "paused": False, "pause_requested": ""}
    if state.env_status in (QueueState.Env.CLOSED, QueueState.Env.FAILED, QueueState.Env.CLOSING) \
            and state.env_command != "open":
        changes["env_command"] = "open"
    log.info("queue started by %s", by or "?")
    return _bump(**changes)


def queue_stop(*, by: str = "") -> QueueState:
    """Stop the queue: the running item finishes, no other starts (abort it to stop it now)."""
    state = queue_state()
    if not state.running:
        raise QueueError("the queue is not started", status=409)
    log.info("queue stopped by %s", by or "?")
    return _bump(running=False, pause_requested="")


def queue_pause(*, when: str = "deferred", by: str = "") -> QueueState:
    """``deferred``: pause after the running item; ``immediate``: stop the running item now (it ends
    stopped and is queued again at the front) and pause."""
    if when not in ("deferred", "immediate"):
        raise QueueError('"when" must be "deferred" or "immediate"')
    state = queue_state()
    if not state.running:
        raise QueueError("the queue is not started", status=409)
    if state.paused:
        raise QueueError("the queue is already paused", status=409)
    running = QueueItem.objects.filter(status=Status.RUNNING).first()
    log.info("queue pause (%s) by %s", when, by or "?")
    if running is None:
        return _bump(paused=True, pause_requested="")
    if when == "deferred":
        return _bump(pause_requested="deferred")
    QueueItem.objects.filter(pk=running.pk, status=Status.RUNNING).update(abort_requested="pause")
    return _bump(paused=True, pause_requested="")


def queue_resume(*, by: str = "") -> QueueState:
    state = queue_state()
    if not (state.paused or state.pause_requested):
        raise QueueError("the queue is not paused", status=409)
    log.info("queue resumed by %s", by or "?")
    return _bump(paused=False, pause_requested="", running=True)


def queue_abort(*, by: str = "") -> QueueItem:
    """Abort the running item now (its exposure and motions stop; it ends aborted); the queue goes on."""
    running = QueueItem.objects.filter(status=Status.RUNNING).first()
    if running is None or not QueueItem.objects.filter(pk=running.pk, status=Status.RUNNING).update(
            abort_requested="abort"):
        raise QueueError("no item is running", status=409)
    log.info("abort of %s requested by %s", running.procedure, by or "?")
    _bump_version()
    return running


def queue_environment(*, action: str, by: str = "") -> QueueState:
    """Open, close or restart the worker environment (the process that runs procedures)."""
    if action not in ("open", "close", "restart"):
        raise QueueError("action must be open, close or restart")
    state = queue_state()
    if action == "close" and QueueItem.objects.filter(status=Status.RUNNING).exists():
        raise QueueError("an item is running: abort it or wait before closing the environment", status=409)
    if action == "open" and state.env_status in (QueueState.Env.IDLE, QueueState.Env.BUSY):
        raise QueueError("the environment is already open", status=409)
    log.info("worker environment %s requested by %s", action, by or "?")
    return _bump(env_command=action)


def queue_block(*, minutes: float, by: str = "") -> QueueState:
    """Open a procedure block (automatic mode hands the telescope to the queue for ``minutes``; alerts
    still pre-empt); ``minutes=0`` closes it."""
    try:
        minutes = float(minutes)
    except (TypeError, ValueError) as exc:
        raise QueueError("minutes must be a number") from exc
    if not 0 <= minutes <= 24 * 60:
        raise QueueError("minutes must be between 0 and 1440")
    until: datetime | None = timezone.now() + timedelta(minutes=minutes) if minutes else None
    log.info("procedure block %s by %s", f"open until {until:%H:%M:%S} UTC" if until else "closed", by or "?")
    return _bump(block_until=until)


# --- The end of an item (the worker, or the manager when it had to kill the worker) -----------------
@transaction.atomic
def queue_item_finish(*, item_id: int, status: str, message: str = "", traceback: str = "",
                      snapshot: dict | None = None) -> bool:
    """Record the outcome of the running item (only if it is still running: the first to finish it wins).
    An item stopped by a pause-now is queued again at the front; a deferred pause takes effect now."""
    snapshot = snapshot or {}
    changes = dict(status=status, ended_at=timezone.now(), message=message[:5000], traceback=traceback[-20000:])
    for key, column in (("current", "progress_current"), ("total", "progress_total"), ("message", "progress_message"),
                        ("published", "published"), ("log", "log")):
        if key in snapshot:
            value = snapshot[key]
            changes[column] = value[:300] if column == "progress_message" else value
    n = QueueItem.objects.filter(pk=item_id, status=Status.RUNNING).update(**changes)
    if not n:
        return False
    flow_run_close(item_id=item_id, status=status, message=message)
    item = QueueItem.objects.get(pk=item_id)
    if item.abort_requested == "pause" and status == Status.STOPPED:
        # A flow queued again goes on where it stopped (a recovery run).
        again = QueueItem.objects.create(procedure=item.procedure, params=item.params, position=0,
                                         timeout_s=item.timeout_s, sky=item.sky, added_by=item.added_by,
                                         requeued_from=item,
                                         recovers=item if FlowRun.objects.filter(item=item).exists() else None)
        _positions([again.uid] + [u for u in _queued_uids() if u != again.uid])
    state = queue_state()
    if state.pause_requested == "deferred":
        _bump(paused=True, pause_requested="")
    else:
        _bump_version()
    level = logging.INFO if status == Status.COMPLETED else logging.WARNING
    log.log(level, "procedure %s %s%s", item.procedure, status, f": {message}" if message else "")
    return True


def queue_item_begin(*, item_id: int) -> bool:
    """Mark a waiting item running (the manager, once the majordome gave it the telescope)."""
    now = timezone.now()
    n = QueueItem.objects.filter(pk=item_id, status=Status.QUEUED).update(
        status=Status.RUNNING, started_at=now, heartbeat=now, abort_requested="", message="", traceback="")
    if n:
        _bump_version()
    return bool(n)
