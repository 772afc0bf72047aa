"""Operator controls and pre-emption: what people and alerts ask of the observatory.

Requests to stop the running sequence are flags in the observatory state (see ``majordome.state``);
the executor's watcher sees them within a fraction of a second and aborts its devices. Processes that
hold an INDI connection (the alerts worker) also act on the devices directly, for speed.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

from django.db.models import F
from django.utils import timezone

from common.messages import send_after_commit
from majordome import selectors
from majordome import state_machine as sm
from majordome.device_link import get_observatory
from majordome.dispatch import calibrations_dispatch, majordome_wake
from majordome.state import StopKind, request_stop_current, request_stop_of, request_stop_procedure, state_update
from pyrosapp.models import ObservatoryState, Sequence
from routine_manager.services import sequence_mark_planned
from scheduler.services import schedule_request_replan

log = logging.getLogger("pyros.majordome")


def observatory_set_mode(*, mode: str, reason: str, by=None) -> ObservatoryState:
    state = selectors.observatory_state()
    sm.check_mode_change(state.mode, mode)
    who = f" by {by}" if by else ""
    if state.mode != mode and not state_update(state, reason=f"{reason}{who}", only_if={"mode": state.mode},
                                               mode=mode):
        raise sm.InvalidStateChange("the observatory mode changed meanwhile; try again")
    return state


# --- Operator controls --------------------------------------------------------------------------
def observatory_pause(*, when: str, by=None) -> ObservatoryState:
    """`deferred`: finish the current plan, then pause; `immediate`: abort the exposure now."""
    if when not in ("deferred", "immediate"):
        raise ValueError('"when" must be "deferred" or "immediate"')
    state = selectors.observatory_state()
    running = selectors.executing_sequence()
    if when == "deferred" and running is not None:
        sm.check_mode_change(state.mode, sm.PAUSED)
        state_update(state, reason=f"pause after the current plan requested by {by}", pause_requested="deferred")
        return state
    observatory_set_mode(mode=sm.PAUSED, reason=f"paused ({when})", by=by)
    state_update(state, reason="pause applied", pause_requested="")
    if running is not None:
        request_stop_current(reason=f"paused immediately by {by}", kind=StopKind.INTERRUPT, state=state)
    return state


def observatory_resume(*, by=None) -> ObservatoryState:
    state = selectors.observatory_state()
    if state.mode != sm.AUTOMATIC:
        observatory_set_mode(mode=sm.AUTOMATIC, reason="resumed", by=by)
    state_update(state, reason=f"resume by {by}", pause_requested="")
    # The plan was made before the pause: sequences interrupted meanwhile and windows that moved.
    schedule_request_replan(reason=f"resumed by {by}", delay_s=0.5)
    majordome_wake(reason="resumed")
    return state


def observatory_stop(*, by=None) -> ObservatoryState:
    """Finish nothing more: stop the running sequence (planned again later), park the mount and close the dome."""
    state = selectors.observatory_state()
    observatory_set_mode(mode=sm.STOPPED, reason="stopped", by=by)
    state_update(state, reason="stop", pause_requested="")
    request_stop_current(reason=f"observatory stopped by {by}", kind=StopKind.INTERRUPT, state=state)
    _close_and_park_async(reason=f"stopped by {by}")
    return state


def observatory_abort(*, by=None) -> int | None:
    """Abort the current sequence (it ends as failed / partially completed); the night goes on."""
    return request_stop_current(reason=f"aborted by {by}", kind=StopKind.END)


def observatory_close(*, by=None) -> ObservatoryState:
    """Close the dome and park now; the observatory stays stopped until resumed."""
    state = selectors.observatory_state()
    if state.mode != sm.STOPPED:
        observatory_set_mode(mode=sm.STOPPED, reason="dome closed by operator", by=by)
    request_stop_current(reason=f"dome closed by {by}", kind=StopKind.INTERRUPT, state=state)
    _close_and_park_async(reason=f"closed by {by}")
    return state


def _close_and_park_async(*, reason: str) -> None:
    """Close and park from the monitoring worker, which holds a device connection (a long motion)."""
    send_after_commit("pyros.majordome.close_and_park", reason=reason)


def observatory_calibrate(*, by=None, now: datetime | None = None) -> None:
    """Operator demand: take the calibration series now (bias, darks, flats of each detector)."""
    now = now or timezone.now()
    state = selectors.observatory_state()
    if selectors.executor_busy(state, now):
        raise sm.InvalidStateChange("the telescope is busy: pause or abort first, then calibrate")
    log.info("calibrations requested by %s", by)
    calibrations_dispatch(state, when="manual", now=now)


# --- Pre-emption --------------------------------------------------------------------------------
def observatory_point_now(*, ra_deg: float, dec_deg: float, reason: str) -> bool:
    """Point the telescope at (ra, dec) NOW, before any bookkeeping: the alert latency path.

    Only when the observatory may observe (night, safe, automatic). The running sequence is
    flagged as pre-empted first (one UPDATE), so its executor knows why its exposure stops; then
    the camera is aborted, the mount unparked if needed and the slew command sent. Returns whether
    the slew was commanded."""
    t0 = time.perf_counter()
    state = selectors.observatory_state()
    if not (state.mode == sm.AUTOMATIC and state.safety == sm.SAFE and state.phase == sm.NIGHT):
        return False
    if state.current_sequence_id:
        ObservatoryState.objects.filter(pk=state.pk).update(
            abort_sequence_id=state.current_sequence_id, abort_reason=f"pre-empted: {reason}"[:300],
            abort_kind=StopKind.INTERRUPT, version=F("version") + 1)
    elif (state.progress or {}).get("kind") == "procedure":  # a procedure block: the alert comes first
        request_stop_procedure(state, reason=f"pre-empted: {reason}", kind=StopKind.INTERRUPT)
    try:
        obs = get_observatory()
        obs.camera.abort()
        if obs.mount.state().parked:
            obs.mount.unpark()
        obs.mount.start_slew(ra_deg=ra_deg, dec_deg=dec_deg)
    except Exception as exc:  # devices unreachable: the executor slews when it starts
        log.warning("could not point the mount directly (%s); the executor will", exc)
        return False
    log.info("pointing at RA %.4f Dec %.4f commanded in %.1f ms (%s)", ra_deg, dec_deg,
             (time.perf_counter() - t0) * 1000.0, reason)
    return True


def observatory_preempt(*, sequence_id: int, ra_deg: float, dec_deg: float, reason: str, slew: bool = True) -> bool:
    """Abort what runs and run `sequence_id` next, before the plan, without waiting for a reschedule.

    With `slew=True` the telescope is pointed first (see `observatory_point_now`); a caller that
    already pointed it (the alert manager does, before building the request) passes `slew=False`.
    Returns whether the telescope was commanded; otherwise the sequence still runs first when
    observing resumes."""
    slewed = observatory_point_now(ra_deg=ra_deg, dec_deg=dec_deg, reason=reason) if slew else False
    state = selectors.observatory_state()
    running = selectors.executing_sequence()
    changes = {"preempt_sequence_id": sequence_id}
    if running is not None:
        changes.update(abort_sequence_id=running.pk, abort_reason=f"pre-empted: {reason}"[:300],
                       abort_kind=StopKind.INTERRUPT)
    if running is None and state.mode == sm.AUTOMATIC:  # a procedure of a block gives the telescope back
        request_stop_procedure(state, reason=f"pre-empted: {reason}", kind=StopKind.INTERRUPT)
    state_update(state, reason=f"pre-emption by sequence {sequence_id}: {reason}", **changes)
    sequence_mark_planned(sequence_id=sequence_id)
    if running is None:
        majordome_wake(reason="pre-emption")
    return slewed


def observatory_repoint(*, sequence_id: int, ra_deg: float, dec_deg: float, reason: str) -> bool:
    """A better position for a sequence (alert update): store it and, if it is running or waiting,
    restart it there (completed plans are kept)."""
    Sequence.objects.filter(pk=sequence_id).update(ra_deg=ra_deg % 360.0, dec_deg=dec_deg)
    return observatory_preempt(sequence_id=sequence_id, ra_deg=ra_deg, dec_deg=dec_deg, reason=f"re-point: {reason}")


def sequence_withdrawn(*, sequence_id: int, reason: str) -> bool:
    """A sequence that may not run any more (its request was cancelled): stop it if it runs, forget it if it
    was to pre-empt. Returns whether it was running."""
    state = selectors.observatory_state()
    if state.current_sequence_id == sequence_id or Sequence.objects.filter(
            pk=sequence_id, status=Sequence.Status.EXECUTING).exists():
        request_stop_of(state, sequence_id=sequence_id, reason=reason, kind=StopKind.END)
        return True
    if state.preempt_sequence_id == sequence_id:
        state_update(state, reason=f"sequence {sequence_id} withdrawn: {reason}", preempt_sequence=None)
    return False
