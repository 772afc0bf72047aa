"""The worker environment: the process that runs procedures, one at a time (``python -m procedures.worker``,
started, closed and restarted by the queue manager, which kills it when an item passes its timeout).

It holds the observatory's device connection (the same device layer as the executor, with images), runs
each item's procedure in its main thread from the module source stored at the last reload, and beside it a
watcher thread that writes progress, log and published data to the item, keeps the majordome's lease alive,
and stops the run (aborting the devices) when the operator or the majordome says so.

Protocol with the manager: JSON lines. In (stdin): ``{"run": item_id, "token": lease}``, ``{"close": true}``.
Out (a private copy of stdout; the procedures' own prints go to stderr): ``{"event": "ready", "pid": ...}``,
``{"event": "done", "item": id, "status": ...}``."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import traceback

log = logging.getLogger("pyros.procedures")

WATCH_EVERY_S = 0.1
FLUSH_EVERY_S = 0.25
LEASE_BEAT_EVERY_S = 2.0


class Watcher(threading.Thread):
    """Progress to the database and stop detection of one run, in its own thread (and connection)."""

    def __init__(self, control, *, item_id: int, token: str, observatory) -> None:
        super().__init__(name=f"pyros-procedure-watch-{item_id}", daemon=True)
        self.control, self.item_id, self.token, self.observatory = control, item_id, token, observatory
        self._check_lock = threading.Lock()

    def check_now(self) -> None:
        """Look for a stop request at once (also from the procedure's thread, through ``control.refresh``)."""
        from majordome.procedures import procedure_lease_check
        from procedures.models import QueueItem

        with self._check_lock:
            if not self.control.aborted.is_set():
                self._check_stop(QueueItem, procedure_lease_check)

    def run(self) -> None:
        from django.db import connection
        from django.db.models import F
        from django.utils import timezone

        from majordome.procedures import procedure_lease_heartbeat
        from procedures.models import QueueItem, QueueState

        ctl = self.control
        last_flush = last_beat = 0.0
        try:
            while not ctl.finished.wait(WATCH_EVERY_S):
                try:
                    self.check_now()
                    now = time.monotonic()
                    if (ctl.dirty.is_set() and now - last_flush >= FLUSH_EVERY_S) or now - last_flush >= 1.0:
                        ctl.dirty.clear()
                        snap = ctl.snapshot()
                        QueueItem.objects.filter(pk=self.item_id, status="running").update(
                            heartbeat=timezone.now(), progress_current=snap["current"], progress_total=snap["total"],
                            progress_message=snap["message"][:300], published=snap["published"], log=snap["log"])
                        QueueState.objects.update(version=F("version") + 1)
                        last_flush = now
                    if now - last_beat >= LEASE_BEAT_EVERY_S:
                        snap = ctl.snapshot()
                        if not procedure_lease_heartbeat(token=self.token, current=snap["current"],
                                                         total=snap["total"], message=snap["message"]):
                            self._stop_run("the majordome took the telescope back", "stop")
                        last_beat = now
                except Exception as exc:  # noqa: BLE001 - a database hiccup: try again at the next round
                    log.warning("procedure watcher: %s", exc)
                    connection.close()
        finally:
            connection.close()

    def _check_stop(self, QueueItem, procedure_lease_check) -> None:  # noqa: N803
        requested = QueueItem.objects.filter(pk=self.item_id).values_list("abort_requested", flat=True).first()
        if requested == "abort":
            self._stop_run("aborted by the operator", "abort")
            return
        if requested == "pause":
            self._stop_run("queue paused now by the operator", "stop")
            return
        stop = procedure_lease_check(token=self.token)
        if stop is not None:
            self._stop_run(stop.reason, "abort" if stop.kind == "end" else "stop")

    def _stop_run(self, reason: str, kind: str) -> None:
        if not self.control.request_stop(reason=reason, kind=kind):
            return
        log.info("procedure item %s: stopping (%s)", self.item_id, reason)
        # The mount only on an operator's abort: whoever interrupts commands it itself (an alert slews it).
        devices = ["camera", "focuser"] + (["mount"] if kind == "abort" else [])
        if isinstance(self.observatory, _LazyObservatory) and self.observatory._observatory is None:
            devices = []  # never connected: no device to stop
        for kind_name in devices:
            device = getattr(self.observatory, kind_name, None)
            if not device:
                continue
            try:
                device.abort()
            except Exception as exc:  # noqa: BLE001 - a failing abort must not kill the watcher
                log.warning("abort of the %s failed: %s", kind_name, exc)


class _LazyObservatory:
    """The observatory, connected on first use: a procedure that needs no device runs without one."""

    def __init__(self, factory) -> None:
        self._factory, self._observatory = factory, None

    def __getattr__(self, name: str):
        if self._observatory is None:
            self._observatory = self._factory()
        return getattr(self._observatory, name)


class _Modules:
    """Modules built from their stored source, cached by SHA-256 (a reload gives a new version)."""

    def __init__(self) -> None:
        self.cache: dict[str, object] = {}

    def function(self, procedure):
        from procedures.loader import module_from_source

        module_row = procedure.module
        module = self.cache.get(module_row.sha256)
        if module is None:
            module = module_from_source(module_row.name, module_row.path, module_row.source)
            self.cache[module_row.sha256] = module
        return getattr(module, procedure.function), module_row.sha256

    def resolver(self):
        """``name -> (function, schema)`` for the steps of a flow that run another procedure."""
        from procedures.models import Procedure
        from procedures.sdk import FlowError

        def resolve(name: str):
            procedure = Procedure.objects.select_related("module").filter(name=name).first()
            if procedure is None:
                raise FlowError(f"procedure {name!r} (a step of the flow) is not loaded")
            return self.function(procedure)[0], procedure.schema

        return resolve


def run_item(*, item_id: int, token: str, observatory_factory, modules: _Modules) -> str:
    """Run one item to its end and record it. Returns its status."""
    from devices.errors import DeviceError
    from majordome.procedures import procedure_lease_release
    from procedures.context import ProcedureContext, RunControl, _ItemLogHandler
    from procedures.flows import FlowFailed, run_flow
    from procedures.models import Procedure, QueueItem
    from procedures.sdk import Flow, ProcedureAborted, failure_message
    from procedures.services import queue_item_finish

    Status = QueueItem.Status
    item = QueueItem.objects.get(pk=item_id)
    control = RunControl(item_id=item_id)
    logger = logging.getLogger(f"pyros.procedures.{item.procedure}")
    handler = _ItemLogHandler(control)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    watcher = ctx = None
    status, message, tb = Status.FAILED, "", ""
    try:
        procedure = Procedure.objects.select_related("module").filter(name=item.procedure).first()
        if procedure is None:
            raise RuntimeError(f"procedure {item.procedure!r} is not loaded any more (reload the procedures)")
        func, sha = modules.function(procedure)
        QueueItem.objects.filter(pk=item_id).update(module_sha256=sha)
        observatory = _LazyObservatory(observatory_factory)
        watcher = Watcher(control, item_id=item_id, token=token, observatory=observatory)
        control.refresh = watcher.check_now
        watcher.start()
        ctx = ProcedureContext(control=control, observatory=observatory, item_uid=str(item.uid),
                               procedure=item.procedure, logger=logger)
        logger.info("%s starts with %s", item.procedure, json.dumps(item.params))
        try:
            result = func(ctx, **item.params)
            if isinstance(result, Flow):  # a flow: its steps run now, each recorded (procedures/flows.py)
                run_flow(result, ctx=ctx, item=item, resolve_procedure=modules.resolver())
                result = None  # the counts of its steps are published as "flow"
        finally:
            ctx.wait_saves()
        if result is not None:
            try:
                ctx.publish(result=result)
            except (TypeError, ValueError):
                ctx.publish(result=repr(result)[:2000])
        ctx.check()  # an abort that came at the very end still counts
        status, message = Status.COMPLETED, "completed"
    except (ProcedureAborted, DeviceError) as exc:
        # A device that failed may have been aborted by whoever stops us (another process): ask first.
        control.refresh()
        if control.aborted.is_set():
            status = Status.ABORTED if control.stop_kind == "abort" else Status.STOPPED
            message = control.stop_reason
        else:  # a device aborted by someone else (another process): a failure of this run
            status, message, tb = Status.FAILED, failure_message(exc), traceback.format_exc()
    except FlowFailed as exc:  # a step failed: its message and traceback
        status, message, tb = Status.FAILED, str(exc), exc.traceback
        logger.error("%s failed: %s", item.procedure, message)
    except BaseException as exc:  # the procedure's own error: failed with its traceback, the queue goes on
        status, message, tb = Status.FAILED, failure_message(exc), traceback.format_exc()
        logger.error("%s failed: %s", item.procedure, message)
    finally:
        control.finished.set()
        if watcher is not None:
            watcher.join(2.0)
        logger.removeHandler(handler)
    if status != Status.COMPLETED and status != Status.FAILED:
        logger.warning("%s %s: %s", item.procedure, status, message)
        control.log.append([time.strftime("%Y-%m-%dT%H:%M:%S"), "WARNING", f"{status}: {message}"])
    queue_item_finish(item_id=item_id, status=status, message=message, traceback=tb, snapshot=control.snapshot())
    procedure_lease_release(token=token, reason=f"{item.procedure} {status}")
    return status


def main() -> int:
    # The protocol channel is a private copy of stdout; whatever a procedure prints goes to stderr.
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pyros.settings")
    import django

    django.setup()
    from majordome.device_link import get_observatory

    def send(**event) -> None:
        channel.write(json.dumps(event) + "\n")
        channel.flush()

    modules = _Modules()
    try:
        get_observatory(blobs=True)  # connect now, so the first item starts at once
    except Exception as exc:  # noqa: BLE001 - devices may come later; each item connects again if needed
        log.warning("procedures worker: devices not reachable yet: %s", exc)
    send(event="ready", pid=os.getpid())
    for line in sys.stdin:
        try:
            command = json.loads(line)
        except ValueError:
            continue
        if command.get("close"):
            break
        if "run" in command:
            try:
                status = run_item(item_id=int(command["run"]), token=str(command["token"]),
                                  observatory_factory=lambda: get_observatory(blobs=True), modules=modules)
            except Exception as exc:  # noqa: BLE001 - the manager records it as failed
                log.exception("procedures worker: item %s could not be recorded", command.get("run"))
                status = f"error: {exc}"
            send(event="done", item=command["run"], status=status)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
