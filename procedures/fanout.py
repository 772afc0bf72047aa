"""Fan-out: a procedure sends registered analysis tasks to PyROS's Celery workers and gets their results.

    result = ctx.run("plate_solve", frame.image_id)                  # one task, waited for
    results = ctx.group("measure_focus", [f.path for f in frames])    # one task per value, in order
    handle = ctx.group("plate_solve", ids, wait=False)               # sent; the procedure goes on...
    results = handle.wait()                                          # ...and collects them later

Only the tasks of ``REGISTERED`` can be sent (by their short or full name; anything else is refused before
anything is sent): they are read-only measurements of the analyzer, routed to the ``analysis`` queue by
their name (pyros/celery.py), each with Celery time limits. Arguments and results are JSON.

A lost worker is a failed task, never a hang: a task seen running (``track_started``) for longer than its
``time_limit`` plus ``STARTED_GRACE_S`` has lost its worker (a live prefork worker kills it at
``time_limit`` and reports the failure); a call in which no task started or ended for ``time_limit`` plus
``QUEUE_ALLOWANCE_S`` is stalled (no worker serves the queue, or the one that had it died); ``timeout_s``
adds a deadline for the whole call. The error names the task, its argument, the worker that took it and
whether that worker still answers a ping.

Celery I/O happens in one thread of the process (``_Dispatcher``): the ``rpc://`` result backend (PyROS's
default with RabbitMQ) delivers a result to the thread that sent the task, and flow steps run in threads of
their own. The embedded default (``filesystem://`` broker) stores results as files (``file://``)."""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from procedures.sdk import ProcedureError

log = logging.getLogger("pyros.procedures")

# short name -> Celery task name. Read-only analysis tasks: a procedure may send them at any time.
REGISTERED: dict[str, str] = {
    "plate_solve": "pyros.analyzer.plate_solve",
    "measure_focus": "pyros.analyzer.measure_focus",
}
QUEUE_ALLOWANCE_S = 60.0  # a call with no task started or ended for time_limit + this is stalled
STARTED_GRACE_S = 10.0  # after its time_limit, a task still "started" has lost its worker
DEFAULT_TIME_LIMIT_S = 360.0
POLL_S = 0.05
PING_TIMEOUT_S = 1.0


def register(short_name: str, task_name: str) -> None:
    """Allow procedures to send another task (a site's own analysis): ``register("astrometry_net",
    "pyros.analyzer.blind_solve")``. The task must be a read-only computation: anything may call it."""
    if not short_name.isidentifier() or not task_name.startswith("pyros."):
        raise ValueError("register(short_name, 'pyros.<app>.<task>')")
    REGISTERED[short_name] = task_name


def task_name(task: str) -> str:
    """The Celery name of a registered task (short or full name); ProcedureError for anything else."""
    if isinstance(task, str):
        if task in REGISTERED:
            return REGISTERED[task]
        if task in REGISTERED.values():
            return task
    known = ", ".join(f"{short} ({full})" for short, full in sorted(REGISTERED.items()))
    raise ProcedureError(f"unknown task {task!r}: procedures may send only the registered tasks: {known}")


def short_name(name: str) -> str:
    return next((short for short, full in REGISTERED.items() if full == name), name.rsplit(".", 1)[-1])


def _app():
    from celery import current_app

    return current_app._get_current_object()


def task_time_limit_s(name: str) -> float:
    """The task's Celery hard time limit (its own, else the app's default)."""
    app = _app()
    task = app.tasks.get(name)
    limit = getattr(task, "time_limit", None) or app.conf.task_time_limit
    return float(limit or DEFAULT_TIME_LIMIT_S)


def task_queue(name: str, app=None) -> str:
    """The queue the app's routes send ``name`` to (for messages)."""
    app = app or _app()
    for route in app.conf.task_routes or ():
        if callable(route):
            answer = route(name, (), {}, {})
            if answer and answer.get("queue"):
                return str(answer["queue"])
    return app.conf.task_default_queue or "celery"


# --- Handles --------------------------------------------------------------------------------------------
@dataclass(eq=False)
class _Call:
    """What the tasks of one run/group call share: its deadline and when one of them last moved."""

    timeout_s: float | None
    deadline: float | None
    stall_s: float
    last_progress: float


@dataclass(eq=False)
class TaskHandle:
    """One task sent: ``state`` (PENDING, STARTED, SUCCESS, FAILURE, ...), ``result`` once done, ``error``
    (the reason in words) once failed. ``wait()`` returns the result or raises ProcedureError."""

    task: str
    args: tuple
    kwargs: dict
    call: _Call
    started_limit_s: float
    queue: str
    id: str = ""
    state: str = "PENDING"
    worker: str = ""
    sent_at: float = 0.0
    started_at: float | None = None
    result: object = None
    error: str = ""
    done: threading.Event = field(default_factory=threading.Event)
    _async: object = None

    def label(self) -> str:
        shown = ", ".join([json.dumps(a)[:80] for a in self.args] +
                          [f"{k}={json.dumps(v)[:80]}" for k, v in self.kwargs.items()])
        return f"{self.task}({shown})" + (f" [{self.id}]" if self.id else "")

    def ready(self) -> bool:
        return self.done.is_set()

    @property
    def failed(self) -> bool:
        return self.done.is_set() and bool(self.error)

    def wait(self, timeout_s: float | None = None, *, check: Callable[[], None] | None = None):
        _wait_all([self], timeout_s, check)
        if self.error:
            raise ProcedureError(self.error)
        return self.result


@dataclass(eq=False)
class GroupHandle:
    """The tasks of one ``group`` call, in the order of their values."""

    task: str
    handles: list[TaskHandle]

    def ready(self) -> bool:
        return all(h.ready() for h in self.handles)

    def counts(self) -> dict:
        states = [h.state for h in self.handles]
        return {"total": len(states), "done": sum(h.ready() and not h.error for h in self.handles),
                "failed": sum(h.failed for h in self.handles), "running": states.count("STARTED")}

    def wait(self, timeout_s: float | None = None, *, allow_failures: bool = False,
             check: Callable[[], None] | None = None) -> list:
        """The results in the order of the values. A failed task raises ProcedureError at once (the others
        go on on their workers), unless ``allow_failures``: then its result is None and ``errors`` says why."""
        pending = list(self.handles)
        while pending:
            _wait_any(pending, timeout_s, check)
            failed = [h for h in pending if h.failed]
            if failed and not allow_failures:
                raise ProcedureError(self._failure_message())
            pending = [h for h in pending if not h.ready()]
        return [None if h.error else h.result for h in self.handles]

    @property
    def errors(self) -> dict[int, str]:
        return {i: h.error for i, h in enumerate(self.handles) if h.error}

    def _failure_message(self) -> str:
        failed = [h for h in self.handles if h.failed]
        lost = [h for h in failed if h.started_at is not None] or failed
        first = lost[0]
        more = len(failed) - 1
        return (f"{len(failed)} of {len(self.handles)} {self.task} task(s) failed"
                f"{'' if not more else f' (first shown, {more} more)'}: {first.error}")


def _wait_any(handles: list[TaskHandle], timeout_s: float | None, check) -> None:
    """Until one of ``handles`` is done (or all are), honouring ``check`` (an abort) every 0.1 s."""
    limit = None if timeout_s is None else time.monotonic() + timeout_s
    while not any(h.done.is_set() for h in handles):
        if check is not None:
            check()
        if limit is not None and time.monotonic() >= limit:
            raise ProcedureError(f"{handles[0].task}: no result within {timeout_s:g} s of waiting")
        if len(handles) == 1:
            handles[0].done.wait(0.1)
        else:
            time.sleep(0.02)


def _wait_all(handles: list[TaskHandle], timeout_s: float | None, check) -> None:
    pending = list(handles)
    limit = None if timeout_s is None else time.monotonic() + timeout_s
    while pending:
        _wait_any(pending, None if limit is None else max(0.0, limit - time.monotonic()), check)
        pending = [h for h in pending if not h.ready()]


# --- The dispatcher: every send and result poll of this process ----------------------------------------------
class _Dispatcher(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="pyros-fanout", daemon=True)
        self.requests: queue.Queue = queue.Queue()
        self.pending: list[TaskHandle] = []

    def submit(self, handles: list[TaskHandle]) -> None:
        sent = threading.Event()
        box: list = []
        self.requests.put(("send", handles, sent, box))
        sent.wait()
        if box:
            raise box[0]

    def revoke(self, handles: Iterable[TaskHandle]) -> None:
        self.requests.put(("revoke", [h for h in handles if not h.ready()], None, None))

    def run(self) -> None:
        app = _app()
        while True:
            try:
                command, handles, sent, box = self.requests.get(timeout=POLL_S)
            except queue.Empty:
                command = None
            try:
                if command == "send":
                    self._send(app, handles, sent, box)
                elif command == "revoke":
                    self._revoke(app, handles)
                self._poll(app)
            except Exception:  # noqa: BLE001 - the dispatcher must outlive a broker hiccup
                log.exception("fan-out dispatcher")
                time.sleep(POLL_S)

    def _send(self, app, handles: list[TaskHandle], sent: threading.Event, box: list) -> None:
        try:
            for h in handles:
                h._async = app.send_task(h.task, args=list(h.args), kwargs=h.kwargs, queue=h.queue)
                h.id, h.sent_at = h._async.id, time.monotonic()
                self.pending.append(h)
        except Exception as exc:  # noqa: BLE001 - the broker refused: the caller's error
            for h in handles:
                if not h.id:
                    self._fail(h, f"{h.label()}: not sent, the broker refused it ({exc.__class__.__name__}: {exc})")
            box.append(ProcedureError(f"{handles[0].task}: the broker refused the task(s): {exc}"))
        finally:
            sent.set()

    def _revoke(self, app, handles: list[TaskHandle]) -> None:
        ids = [h.id for h in handles if h.id]
        if ids:
            try:
                app.control.revoke(ids)
            except Exception as exc:  # noqa: BLE001 - best effort: an unstarted task then runs for nothing
                log.warning("fan-out: revoke of %d task(s) failed: %s", len(ids), exc)

    def _poll(self, app) -> None:
        now = time.monotonic()
        for h in list(self.pending):
            # One backend read per task and round (the rpc:// backend consumes the state messages it reads).
            meta = h._async.backend.get_task_meta(h.id)
            state, value = meta.get("status", "PENDING"), meta.get("result")
            if state != h.state:
                h.call.last_progress = now
            if state == "STARTED" and h.started_at is None:
                h.started_at = now
                h.worker = str((value or {}).get("hostname") or "") if isinstance(value, dict) else ""
            if state == "SUCCESS":
                h.result, h.state = value, state
                self._finish(h)
            elif state in ("FAILURE", "REVOKED"):
                h.state = state
                exc = value
                what = f"{exc.__class__.__name__}: {exc}" if isinstance(exc, BaseException) else str(exc)
                self._fail(h, f"{h.label()} failed on {h.worker or 'its worker'}: {what}")
            else:
                h.state = state
                call = h.call
                if h.started_at is not None and now - h.started_at > h.started_limit_s:
                    self._lost(app, h, f"still running {now - h.started_at:.0f} s after it started, past its "
                                       f"time limit")
                elif call.deadline is not None and now >= call.deadline:
                    self._lost(app, h, f"no result within {call.timeout_s:g} s")
                elif now - call.last_progress > call.stall_s:
                    self._lost(app, h, f"no task of the call started or ended for {call.stall_s:.0f} s")

    def _lost(self, app, h: TaskHandle, what: str) -> None:
        if h.started_at is None:
            reason = (f"{h.label()}: {what}: no worker took it (is a Celery worker consuming the {h.queue!r} "
                      "queue running?)")
        else:
            answers = False
            if h.worker:
                try:
                    answers = bool(app.control.ping(destination=[h.worker], timeout=PING_TIMEOUT_S))
                except Exception:  # noqa: BLE001 - no answer is the answer
                    answers = False
            verdict = ("its worker still answers: the task is too slow for the time allowed" if answers else
                       "its worker does not answer: the worker was lost (killed or stopped)")
            reason = (f"{h.label()}: started on {h.worker or 'a worker'} {time.monotonic() - h.started_at:.1f} s "
                      f"ago, {what}; {verdict}")
        try:
            app.control.revoke(h.id)
        except Exception:  # noqa: BLE001 - best effort
            pass
        h.state = "LOST"
        self._fail(h, reason)

    def _fail(self, h: TaskHandle, reason: str) -> None:
        h.error = reason
        log.warning("fan-out: %s", reason)
        self._finish(h)

    def _finish(self, h: TaskHandle) -> None:
        if h in self.pending:
            self.pending.remove(h)
        try:
            if h._async is not None:
                h._async.forget()  # the value is in the handle: the backend need not keep it (file:// files)
        except Exception:  # noqa: BLE001 - forgetting is housekeeping
            pass
        h.done.set()


_dispatcher: _Dispatcher | None = None
_dispatcher_lock = threading.Lock()


def _get_dispatcher() -> _Dispatcher:
    global _dispatcher
    with _dispatcher_lock:
        if _dispatcher is None or not _dispatcher.is_alive():
            _dispatcher = _Dispatcher()
            _dispatcher.start()
        return _dispatcher


# --- Sending ------------------------------------------------------------------------------------------------
def _handles(name: str, calls: list[tuple[tuple, dict]], timeout_s: float | None, queue_name: str | None
             ) -> list[TaskHandle]:
    try:
        json.dumps([list(args) + [kwargs] for args, kwargs in calls], allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ProcedureError(f"{name}: arguments must be JSON values ({exc})") from exc
    limit = task_time_limit_s(name)
    if timeout_s is not None and not (isinstance(timeout_s, (int, float)) and timeout_s > 0):
        raise ProcedureError(f"{name}: timeout_s must be a positive number of seconds")
    now = time.monotonic()
    call = _Call(timeout_s=timeout_s, deadline=None if timeout_s is None else now + timeout_s,
                 stall_s=limit + QUEUE_ALLOWANCE_S, last_progress=now)
    target = queue_name or task_queue(name)
    return [TaskHandle(task=name, args=tuple(args), kwargs=dict(kwargs), call=call,
                       started_limit_s=limit + STARTED_GRACE_S, queue=target) for args, kwargs in calls]


def run(task: str, *args, wait: bool = True, timeout_s: float | None = None, queue: str | None = None,
        check: Callable[[], None] | None = None, **kwargs):
    """Send one registered task; its result (``wait``) or its ``TaskHandle``."""
    name = task_name(task)
    handles = _handles(name, [(args, kwargs)], timeout_s, queue)
    _get_dispatcher().submit(handles)
    return handles[0].wait(check=check) if wait else handles[0]


def group(task: str, values: Iterable, *args, wait: bool = True, timeout_s: float | None = None,
          queue: str | None = None, allow_failures: bool = False, check: Callable[[], None] | None = None,
          **kwargs):
    """Send one task per value (``task(value, *args, **kwargs)``), all at once, to be run in parallel by the
    workers; the results in the order of the values (``wait``) or a ``GroupHandle``."""
    name = task_name(task)
    values = list(values)
    if not values:
        return [] if wait else GroupHandle(task=name, handles=[])
    handles = _handles(name, [((value, *args), kwargs) for value in values], timeout_s, queue)
    _get_dispatcher().submit(handles)
    handle = GroupHandle(task=name, handles=handles)
    return handle.wait(allow_failures=allow_failures, check=check) if wait else handle


# --- For a running procedure (ctx.run / ctx.group) ----------------------------------------------------------
class ContextFanout:
    """What ``ctx.run(..., wait=False)`` / ``ctx.group(..., wait=False)`` return: ``wait()`` gives the
    result(s), publishes them as the caller's data (``publish_as``) and stops the tasks on an abort."""

    def __init__(self, ctx, handle: TaskHandle | GroupHandle, *, publish_as: str) -> None:
        self.ctx, self.handle, self.publish_as = ctx, handle, publish_as

    def ready(self) -> bool:
        return self.handle.ready()

    def status(self) -> dict:
        if isinstance(self.handle, GroupHandle):
            return {"task": self.handle.task, **self.handle.counts()}
        h = self.handle
        return {"task": h.task, "state": h.state, "worker": h.worker, "error": h.error or None}

    def wait(self, *, allow_failures: bool = False):
        group_handle = isinstance(self.handle, GroupHandle)
        handles = self.handle.handles if group_handle else [self.handle]
        last_report = [0.0]

        def check() -> None:
            self.ctx.check()
            now = time.monotonic()
            if group_handle and now - last_report[0] > 0.5:
                last_report[0] = now
                c = self.handle.counts()
                self.ctx.set_progress(c["done"], c["total"], f"{short_name(self.handle.task)}: {c['done']} of "
                                      f"{c['total']} done, {c['running']} running")

        try:
            if group_handle:
                value = self.handle.wait(allow_failures=allow_failures, check=check)
            else:
                value = self.handle.wait(check=check)
        except BaseException:
            _get_dispatcher().revoke(handles)  # an abort (or a failure): what has not run never will
            raise
        if group_handle:
            c = self.handle.counts()
            self.ctx.set_progress(c["done"], c["total"], f"{short_name(self.handle.task)}: {c['done']} of "
                                  f"{c['total']} done" + (f", {c['failed']} failed" if c["failed"] else ""))
        if self.publish_as:
            self.ctx.publish(**{self.publish_as: value})
            if group_handle and self.handle.errors:
                self.ctx.publish(**{f"{self.publish_as}_errors": {str(i): e for i, e in self.handle.errors.items()}})
        return value


def context_run(ctx, task: str, *args, wait: bool = True, timeout_s: float | None = None, queue: str | None = None,
                publish_as: str | None = None, **kwargs):
    """``ctx.run``: like :func:`run`; the result joins the caller's published data under ``publish_as``
    (default: the task's short name; "" publishes nothing), an abort stops waiting and revokes it."""
    ctx.check()
    name = task_name(task)
    handle = run(name, *args, wait=False, timeout_s=timeout_s, queue=queue, **kwargs)
    fanout = ContextFanout(ctx, handle, publish_as=short_name(name) if publish_as is None else publish_as)
    return fanout.wait() if wait else fanout


def context_group(ctx, task: str, values: Iterable, *args, wait: bool = True, timeout_s: float | None = None,
                  queue: str | None = None, allow_failures: bool = False, publish_as: str | None = None, **kwargs):
    """``ctx.group``: like :func:`group`; progress shows the tasks done, the results (a list in the order of
    the values) join the caller's published data under ``publish_as`` (default: the task's short name)."""
    ctx.check()
    name = task_name(task)
    handle = group(name, values, *args, wait=False, timeout_s=timeout_s, queue=queue, **kwargs)
    fanout = ContextFanout(ctx, handle, publish_as=short_name(name) if publish_as is None else publish_as)
    return fanout.wait(allow_failures=allow_failures) if wait else fanout
