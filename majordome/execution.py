"""The majordome runs sequences and calibrations: it supervises the executor (observation_manager) and
decides what its outcome means for the sequence, the request and the night.

Stopping: a watcher thread reads the observatory state 4 times a second; when the running sequence is
flagged (operator, pause, pre-emption, unsafe weather, cancellation) it tells the executor's control
and aborts the camera and the mount itself, so a blocked exposure or slew ends within a second. The
flag's kind (interrupt / end) says whether the sequence is planned again: a value, not a wording.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from django.db import InterfaceError, OperationalError, close_old_connections, connection
from django.db.models import F
from django.utils import timezone

from majordome import selectors
from majordome import state_machine as sm
from majordome.device_link import get_observatory
from majordome.dispatch import majordome_wake
from majordome.state import StopKind, state_update
from observation_manager.services import (
    ExecutionControl,
    OutcomeKind,
    SequenceOutcome,
    calibrations_run,
    outcome_from_plans,
    sequence_plans,
    sequence_run,
)
from pyrosapp.models import ObservatoryState, Sequence
from routine_manager import lifecycle
from routine_manager.services import sequence_end_execution, sequence_release
from scheduler.services import schedule_request_replan

log = logging.getLogger("pyros.majordome")

HEARTBEAT_EVERY_S = 2.0
WATCH_EVERY_S = 0.25
# A database outage the watcher rides out (reconnecting) before it stops the sequence it cannot watch.
WATCHER_DB_OUTAGE_S = 15.0
# How long the end of an execution is retried while the database is unreachable.
FINISH_RETRY_S = 60.0

# What an outcome means for the sequence.
_STATUS_OF_OUTCOME = {
    OutcomeKind.COMPLETED: lifecycle.COMPLETED,
    OutcomeKind.PARTIAL: lifecycle.PARTIALLY_COMPLETED,
    OutcomeKind.FAILED: lifecycle.FAILED,
    OutcomeKind.INTERRUPTED: lifecycle.PENDING,
    OutcomeKind.RETRYABLE: lifecycle.PENDING,
}


class Watcher(threading.Thread):
    """Heartbeat, progress and stop detection of one execution, in its own thread (and connection)."""

    def __init__(self, control: ExecutionControl, *, token: str, state_id: int, observatory) -> None:
        super().__init__(name=f"pyros-watch-{control.sequence_id}", daemon=True)
        self.control = control
        self.token = token
        self.state_id = state_id
        self.observatory = observatory
        self._check_lock = threading.Lock()

    def check_flags(self) -> None:
        """Look for a stop request now (also called from the executor's thread through ``control.refresh``)."""
        ctl = self.control
        with self._check_lock:
            if ctl.aborted.is_set():
                return
            row = ObservatoryState.objects.filter(pk=self.state_id).values(
                "abort_sequence_id", "abort_reason", "abort_kind").first() or {}
            if row.get("abort_sequence_id") == ctl.sequence_id:
                self._stop(row.get("abort_reason") or "aborted", interrupts=row.get("abort_kind") != StopKind.END)
                return
            status = Sequence.objects.filter(pk=ctl.sequence_id).values_list("status", flat=True).first()
            if status in (lifecycle.CANCELLED, lifecycle.EXPIRED):
                self._stop(f"request {status}", interrupts=False)

    def _stop(self, reason: str, *, interrupts: bool) -> None:
        # The exposure always stops. The mount only when this execution's own slew must end (an operator's
        # abort, a cancellation): whoever interrupts commands the mount itself (a pre-emption slews it to the
        # burst, unsafe weather and an operator's stop park it), and aborting it here would cancel that.
        mount = not interrupts and self.control.snapshot().get("step") in ("slewing", "settling")
        if not self.control.request_stop(reason=reason, interrupts=interrupts):
            return
        log.info("sequence %s: stopping (%s)", self.control.sequence_id, reason)
        for device in (self.observatory.camera, self.observatory.mount if mount else None):
            if device is None:
                continue
            try:
                device.abort()
            except Exception as exc:  # noqa: BLE001 - a failing abort must not kill the watcher
                log.warning("abort of %s failed: %s", getattr(device, "name", device), exc)

    def run(self) -> None:
        ctl = self.control
        last_beat = 0.0
        db_down_since: float | None = None
        try:
            while not ctl.finished.wait(WATCH_EVERY_S):
                try:
                    self.check_flags()
                    now = time.monotonic()
                    if ctl.dirty.is_set() or now - last_beat >= HEARTBEAT_EVERY_S:
                        ctl.dirty.clear()
                        self._write_progress()
                        last_beat = now
                    if db_down_since is not None:
                        log.warning("watcher of sequence %s: database back after %.1f s", ctl.sequence_id,
                                    time.monotonic() - db_down_since)
                        db_down_since = None
                except (OperationalError, InterfaceError) as exc:
                    # A database restart: reconnect at the next round. Stop flags cannot be read meanwhile; an
                    # outage longer than the executor's staleness limit stops the sequence (planned again).
                    connection.close()
                    now = time.monotonic()
                    if db_down_since is None:
                        db_down_since = now
                        log.warning("watcher of sequence %s: database unreachable (%s); reconnecting",
                                    ctl.sequence_id, exc)
                    elif now - db_down_since > WATCHER_DB_OUTAGE_S:
                        raise
        except Exception:  # the executor must learn that its watcher died: stop rather than run blind
            log.exception("watcher of sequence %s failed", ctl.sequence_id)
            ctl.request_stop(reason="watcher failed", interrupts=True)
        finally:
            connection.close()

    def _write_progress(self) -> None:
        """Persist progress + heartbeat, only while this execution still owns the observatory."""
        heartbeat = timezone.now()
        self.control.update(heartbeat=heartbeat.isoformat(), token=self.token)
        ObservatoryState.objects.filter(pk=self.state_id, current_sequence_id=self.control.sequence_id).update(
            progress=self.control.snapshot(), version=F("version") + 1)
        Sequence.objects.filter(pk=self.control.sequence_id, execution_token=self.token).update(
            execution_heartbeat=heartbeat)


def sequence_execute(*, sequence_id: int, token: str, observatory=None) -> str:
    """Run a claimed sequence to its end (the execution worker's task). Returns its status."""
    seq = Sequence.objects.select_related("request__program", "request__owner").filter(pk=sequence_id).first()
    if seq is None or seq.status != lifecycle.EXECUTING or seq.execution_token != token:
        log.warning("sequence %s: not executing under this claim any more; nothing to do", sequence_id)
        return "stale"
    state = selectors.observatory_state()
    control = ExecutionControl(
        sequence_id=seq.pk,
        may_open_dome=lambda: selectors.observatory_state().safety == sm.SAFE,
        pause_after_plan=lambda: ObservatoryState.objects.filter(pk=state.pk, pause_requested="deferred").exists(),
    )
    watcher = None
    try:
        if observatory is None:
            observatory = get_observatory(blobs=True)
        watcher = Watcher(control, token=token, state_id=state.pk, observatory=observatory)
        control.refresh = watcher.check_flags
        watcher.start()
        outcome = sequence_run(sequence=seq, control=control, observatory=observatory)
    except Exception as exc:  # devices unreachable before the run started
        log.exception("sequence %s could not start", seq.pk)
        outcome = outcome_from_plans(sequence_plans(seq.pk), reason=f"internal error: {exc}")
    finally:
        control.finished.set()
    return _finish_despite_database_faults(state.pk, seq.pk, token, outcome)


def _finish_despite_database_faults(state_id: int, sequence_id: int, token: str, outcome: SequenceOutcome) -> str:
    """Record the end, retrying while the database is unreachable (a restart takes seconds): otherwise the
    sequence would wait, executing, for the stale-execution recovery."""
    deadline = time.monotonic() + FINISH_RETRY_S
    while True:
        try:
            _apply_deferred_pause(state_id)
            return execution_finish(sequence_id=sequence_id, token=token, outcome=outcome)
        except (OperationalError, InterfaceError) as exc:
            connection.close()
            if time.monotonic() > deadline:
                raise
            log.warning("sequence %s: cannot record its end yet (%s); retrying", sequence_id, exc)
            time.sleep(1.0)


def _apply_deferred_pause(state_id: int) -> None:
    n = ObservatoryState.objects.filter(pk=state_id, pause_requested="deferred").update(
        mode=sm.PAUSED, pause_requested="", version=F("version") + 1)
    if n:
        log.info("observatory paused after the current plan, as requested")


def execution_finish(*, sequence_id: int, token: str, outcome: SequenceOutcome) -> str:
    """The sequence's status from the outcome, the observatory freed, and the next sequence asked for."""
    close_old_connections()
    status = sequence_end_execution(sequence_id=sequence_id, token=token, status=_STATUS_OF_OUTCOME[outcome.kind],
                                    reason=outcome.reason, device_retry=outcome.kind == OutcomeKind.RETRYABLE)
    ObservatoryState.objects.filter(current_sequence_id=sequence_id).update(
        current_sequence=None, progress={}, version=F("version") + 1)
    ObservatoryState.objects.filter(abort_sequence_id=sequence_id).update(abort_sequence_id=None, abort_reason="",
                                                                          abort_kind="")
    log.info("sequence %s %s%s (%s, %d image(s))", sequence_id, status, f": {outcome.reason}" if outcome.reason else "",
             outcome.kind, outcome.images_done)
    replan_why = replan_reason_after(sequence_id=sequence_id, status=status)
    if replan_why:
        schedule_request_replan(reason=replan_why)
    majordome_wake(reason=f"sequence {sequence_id} ended")
    return status


def replan_reason_after(*, sequence_id: int, status: str) -> str | None:
    """Why the plan must be made again after this sequence ended (None: the plan still holds). Interrupted
    (planned again), ended early by an operator's abort or a failure, or run longer or shorter than planned
    by more than ``PYROS_REPLAN_DRIFT_S``: every later entry of the plan has moved."""
    from django.conf import settings

    if status == lifecycle.PENDING:
        return f"sequence {sequence_id} interrupted"
    if status != lifecycle.COMPLETED:
        return f"sequence {sequence_id} ended {status}"
    seq = Sequence.objects.filter(pk=sequence_id).values("started_at", "ended_at", "planned_start", "planned_end",
                                                          "estimated_duration_s").first()
    if not seq or not seq["started_at"] or not seq["ended_at"]:
        return None
    if seq["planned_start"] and seq["planned_end"]:
        planned_s = (seq["planned_end"] - seq["planned_start"]).total_seconds()
    else:
        planned_s = seq["estimated_duration_s"] or 0.0
    if planned_s <= 0:
        return None
    ran_s = (seq["ended_at"] - seq["started_at"]).total_seconds()
    if abs(ran_s - planned_s) > settings.PYROS_REPLAN_DRIFT_S:
        return f"sequence {sequence_id} ran {ran_s:.0f} s instead of {planned_s:.0f} s"
    return None


def recover_stale_executions(now=None) -> int:
    """A sequence left `executing` by a dead executor resumes next (its completed plans and images are
    kept); if its window has closed it ends with what it has done."""
    now = now or timezone.now()
    count = 0
    state = selectors.observatory_state()
    for seq in selectors.stale_executions(now):
        if seq.window_end > now + timedelta(seconds=60):
            if sequence_release(sequence_id=seq.pk, token=seq.execution_token,
                                reason="resuming after the executor was lost"):
                state_update(state, reason=f"executor lost during sequence {seq.pk}: it resumes next",
                             preempt_sequence_id=seq.pk, current_sequence=None, progress={})
                count += 1
        else:
            execution_finish(sequence_id=seq.pk, token=seq.execution_token, outcome=outcome_from_plans(
                sequence_plans(seq.pk), reason="executor lost and the window closed"))
            count += 1
    return count


def calibrations_execute(*, when: str, token: str, observatory=None) -> int:
    """Take the calibration series (the execution worker's task), showing each step as progress."""
    state = selectors.observatory_state()

    def beat(step: str) -> None:
        ObservatoryState.objects.filter(pk=state.pk).update(progress={
            "kind": "calibration", "token": token, "heartbeat": timezone.now().isoformat(), "step": step,
            "when": when}, version=F("version") + 1)

    try:
        if observatory is None:
            observatory = get_observatory(blobs=True)
        return calibrations_run(when=when, site=state.site, observatory=observatory, beat=beat)
    finally:
        ObservatoryState.objects.filter(pk=state.pk, progress__token=token).update(progress={},
                                                                                 version=F("version") + 1)
