"""The queue manager (``python -m procedures.manager``, the ``procedures`` process of the Procfile).

A loop every ``PYROS_QUEUE_POLL_S`` (0.1 s): it carries out the environment commands (open, close, restart
the worker process), watches the running item (a worker that dies, an item past its declared timeout, an
abort not honoured within ``PYROS_QUEUE_ABORT_GRACE_S``: the worker is killed, the item failed or aborted,
the environment restarted, and the queue goes on), and when the queue is started and nothing runs, asks the
majordome for the telescope and hands the first waiting item to the worker. One item at a time: one worker,
one lease. Everything it knows is in the database, so a restart loses nothing; an item found running at
start-up was cut short by the restart and is recorded as failed."""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("pyros.procedures")

REPO = Path(__file__).resolve().parent.parent
OPEN_TIMEOUT_S = 60.0
HEARTBEAT_EVERY_S = 1.0


def _exit_how(code: int | None) -> str:
    """A process's end as an operator reads it: 'killed by SIGKILL' rather than 'exit code -9'."""
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            pass
    return f"exit code {code}"

class WorkerProcess:
    """The worker environment: a ``python -m procedures.worker`` child and its JSON-lines channel."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.events: queue.Queue = queue.Queue()
        self.ready = False

    def start(self) -> None:
        self.events = queue.Queue()
        self.ready = False
        self.proc = subprocess.Popen([sys.executable, "-m", "procedures.worker"], cwd=REPO, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1, env=os.environ.copy())
        threading.Thread(target=self._read, args=(self.proc, self.events), daemon=True,
                         name="pyros-procedures-worker-reader").start()

    @staticmethod
    def _read(proc: subprocess.Popen, events: queue.Queue) -> None:
        for line in proc.stdout:
            try:
                events.put(json.loads(line))
            except ValueError:
                continue
        events.put({"event": "eof"})

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send(self, **command) -> None:
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def poll_event(self) -> dict | None:
        try:
            event = self.events.get_nowait()
        except queue.Empty:
            return None
        if event.get("event") == "ready":
            self.ready = True
        return event

    def kill(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            log.error("procedures worker %s did not die", self.proc.pid)
        self.proc = None
        self.ready = False

    def close(self, timeout_s: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.send(close=True)
                self.proc.stdin.close()
                self.proc.wait(timeout=timeout_s)
            except (OSError, subprocess.TimeoutExpired, ValueError):
                pass
        self.kill()


@dataclass
class Running:
    item_id: int
    name: str
    token: str
    started: float
    timeout_s: float
    stop_seen_at: float | None = None


class QueueManager:
    def __init__(self, *, poll_s: float | None = None) -> None:
        from django.conf import settings

        self.poll_s = poll_s if poll_s is not None else settings.PYROS_QUEUE_POLL_S
        self.abort_grace_s = settings.PYROS_QUEUE_ABORT_GRACE_S
        self.worker = WorkerProcess()
        self.running: Running | None = None
        self.opening_since: float | None = None
        self.last_heartbeat = 0.0
        self.stopping = False

    # --- state -----------------------------------------------------------------------------------
    def _set(self, **changes) -> None:
        from django.db.models import F
        from django.utils import timezone

        from procedures.models import QueueState
        from procedures.services import queue_state

        QueueState.objects.filter(pk=queue_state().pk).update(**changes, version=F("version") + 1,
                                                              updated=timezone.now())

    def recover(self) -> None:
        """At start-up: items left running by a previous manager failed with it; their lease is given back."""
        from majordome import selectors as majordome_selectors
        from majordome.procedures import procedure_lease_release
        from procedures.models import QueueItem, QueueState
        from procedures.services import procedures_ensure_loaded, queue_item_finish

        for item in QueueItem.objects.filter(status=QueueItem.Status.RUNNING):
            queue_item_finish(item_id=item.pk, status=QueueItem.Status.FAILED,
                              message="the procedures manager restarted during the run (the worker was lost)")
        try:
            progress = majordome_selectors.observatory_state().progress or {}
            if progress.get("kind") == "procedure":
                procedure_lease_release(token=progress.get("token", ""), reason="procedures manager restarted")
        except Exception as exc:  # noqa: BLE001 - no observatory configured yet
            log.warning("procedures manager: %s", exc)
        try:
            procedures_ensure_loaded()
        except Exception as exc:  # noqa: BLE001 - the folder may be fixed later; Reload tries again
            log.error("procedures could not be loaded: %s", exc)
        state = QueueState.objects.order_by("pk").first()
        # The environment reopens as it was: a started queue (or an open environment) opens it again.
        want_open = state is not None and (state.running or state.env_status in ("idle", "busy", "opening"))
        self._set(env_status="closed", env_pid=None, env_command="open" if want_open else "")

    # --- the loop --------------------------------------------------------------------------------
    def step(self) -> None:
        from django.utils import timezone

        from procedures.services import queue_state

        now = time.monotonic()
        if now - self.last_heartbeat >= HEARTBEAT_EVERY_S:
            self._set(manager_heartbeat=timezone.now())
            self.last_heartbeat = now
        state = queue_state()
        if state.env_command:
            self._environment(state.env_command)
            state = queue_state()
        self._watch_worker()
        if self.running is not None:
            self._watch_running()
        elif state.running and not state.paused and self.worker.ready:
            self._start_next(state)

    def _environment(self, command: str) -> None:
        if command in ("close", "restart") and self.running is None:
            self._set(env_status="closing", env_command="" if command == "close" else "restart")
            self.worker.close()
            self._set(env_status="closed", env_pid=None)
            log.info("procedures worker environment closed")
            if command == "restart":
                command = "open"
        elif command in ("close", "restart"):
            return  # after the running item
        if command == "open":
            if not self.worker.alive():
                self.worker.start()
                self.opening_since = time.monotonic()
                log.info("procedures worker environment opening (pid %s)", self.worker.pid)
            self._set(env_status="opening", env_pid=self.worker.pid, env_command="")

    def _watch_worker(self) -> None:
        while True:
            event = self.worker.poll_event()
            if event is None:
                break
            if event.get("event") == "ready":
                self.opening_since = None
                self._set(env_status="busy" if self.running else "idle", env_pid=event.get("pid"))
                log.info("procedures worker environment open (pid %s)", event.get("pid"))
            elif event.get("event") == "done" and self.running and event.get("item") == self.running.item_id:
                if str(event.get("status", "")).startswith("error"):  # the worker could not record the end
                    from majordome.procedures import procedure_lease_release
                    from procedures.services import queue_item_finish

                    queue_item_finish(item_id=self.running.item_id, status="failed", message=event["status"])
                    procedure_lease_release(token=self.running.token, reason="worker error")
                self.running = None
                self._set(env_status="idle", waiting_reason="")
        if self.opening_since and time.monotonic() - self.opening_since > OPEN_TIMEOUT_S:
            log.error("procedures worker did not open within %.0f s", OPEN_TIMEOUT_S)
            self.worker.kill()
            self.opening_since = None
            self._set(env_status="failed", env_pid=None)
        if self.worker.proc is not None and not self.worker.alive() and self.running is None:
            code = self.worker.proc.returncode
            self.worker.kill()
            self._set(env_status="failed" if code else "closed", env_pid=None)
            log.error("procedures worker exited (code %s)", code)

    def _watch_running(self) -> None:
        from majordome.procedures import procedure_lease_check
        from procedures.models import QueueItem

        run = self.running
        now = time.monotonic()
        if not self.worker.alive():
            code = self.worker.proc.returncode if self.worker.proc else None
            self._kill_and_finish(QueueItem.Status.FAILED, f"the worker process died ({_exit_how(code)})")
            return
        if now - run.started > run.timeout_s:
            self._kill_and_finish(QueueItem.Status.FAILED, f"killed after its timeout of {run.timeout_s:g} s")
            return
        requested = QueueItem.objects.filter(pk=run.item_id).values_list("abort_requested", flat=True).first()
        stop = None if requested else procedure_lease_check(token=run.token)
        if requested or stop:
            run.stop_seen_at = run.stop_seen_at or now
            if now - run.stop_seen_at > self.abort_grace_s:
                status = QueueItem.Status.ABORTED if requested == "abort" else QueueItem.Status.STOPPED
                self._kill_and_finish(status, f"did not stop within {self.abort_grace_s:g} s: worker killed")

    def _kill_and_finish(self, status: str, message: str) -> None:
        from majordome.procedures import procedure_lease_release
        from procedures.services import queue_item_finish

        run = self.running
        log.error("procedure %s: %s", run.name, message)
        self.worker.kill()
        queue_item_finish(item_id=run.item_id, status=status, message=message)
        procedure_lease_release(token=run.token, reason=f"{run.name} {status}")
        self.running = None
        # The queue goes on: a fresh environment for the next item.
        self._set(env_status="closed", env_pid=None, env_command="open")

    def _start_next(self, state) -> None:
        from django.utils import timezone

        from majordome.procedures import procedure_lease_acquire, procedure_lease_release
        from majordome.selectors import ObservatoryNotConfigured
        from procedures.models import QueueItem
        from procedures.services import queue_item_begin

        item = QueueItem.objects.filter(status=QueueItem.Status.QUEUED).order_by("position", "id").first()
        if item is None:
            if state.waiting_reason:
                self._set(waiting_reason="")
            return
        in_block = bool(state.block_until and state.block_until > timezone.now())
        try:
            token, why = procedure_lease_acquire(item_id=item.pk, name=item.procedure, sky=item.sky,
                                                 in_block=in_block)
        except ObservatoryNotConfigured as exc:
            token, why = None, str(exc)
        if token is None:
            why = f"{item.procedure} waits: {why}"[:300]
            if state.waiting_reason != why:
                self._set(waiting_reason=why)
            return
        if not queue_item_begin(item_id=item.pk):
            procedure_lease_release(token=token, reason="the item left the queue meanwhile")
            return
        self.running = Running(item_id=item.pk, name=item.procedure, token=token, started=time.monotonic(),
                               timeout_s=item.timeout_s)
        self._set(env_status="busy", waiting_reason="")
        self.worker.send(run=item.pk, token=token)
        log.info("procedure %s started (item %s)", item.procedure, item.uid)

    def shutdown(self) -> None:
        if self.running is not None:
            self._kill_and_finish("stopped", "the procedures manager was stopped")
        self.worker.close()
        self._set(env_status="closed", env_pid=None)

    def run_forever(self) -> None:
        from django.db import close_old_connections

        self.recover()
        while not self.stopping:
            t0 = time.monotonic()
            try:
                self.step()
            except Exception:  # noqa: BLE001 - a database restart: go on at the next round
                log.exception("procedures manager step failed")
                close_old_connections()
                time.sleep(1.0)
            time.sleep(max(0.0, self.poll_s - (time.monotonic() - t0)))
        self.shutdown()


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pyros.settings")
    import django

    django.setup()
    manager = QueueManager()

    def stop(signum, frame) -> None:  # noqa: ARG001
        manager.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("procedures manager started (pid %s)", os.getpid())
    manager.run_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
