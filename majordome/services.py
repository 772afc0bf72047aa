"""The majordome: what the telescope does next, operator controls, pre-emption, safety actions.

Every write to the observatory state goes through `_state_update`, which bumps `version` (so live
clients can skip unchanged data) and logs the change with its reason. Requests to stop the running
sequence are flags in the database (`abort_sequence_id`); the executor's watcher thread sees them
within a fraction of a second and aborts its devices. Processes that hold an INDI connection (the
alerts and monitoring workers) also act on the devices directly, for speed.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone

from majordome import selectors
from majordome import state_machine as sm
from pyrosapp.models import ObservatoryState, Sequence, Site
from sky import sun as sky_sun

log = logging.getLogger("pyros.majordome")

# Written by the executor on a transient device error (see observation_manager.services).
RETRY_PREFIX = "device error, will retry: "


# --- Sun ---------------------------------------------------------------------------------------
def sun_position(site: Site, now: datetime | None = None) -> tuple[float, bool]:
    """(altitude in degrees, rising?) of the Sun at the site (sky.sun: one computation, cached per day)."""
    return sky_sun.sun_position(site, now or timezone.now())


def sun_altitude_deg(site: Site, now: datetime | None = None) -> float:
    return sun_position(site, now)[0]


# --- State writes -------------------------------------------------------------------------------
def _state_update(state: ObservatoryState, *, reason: str, only_if: dict | None = None, **changes) -> bool:
    """Apply `changes` (conditionally on `only_if`), bump the version, log the reason."""
    qs = ObservatoryState.objects.filter(pk=state.pk, **(only_if or {}))
    n = qs.update(**changes, version=F("version") + 1, updated=timezone.now())
    if n:
        for key, value in changes.items():
            setattr(state, key, value)
        shown = {k: (v.pk if hasattr(v, "pk") else v) for k, v in changes.items() if k not in ("progress",)}
        log.info("observatory %s: %s", ", ".join(f"{k}={v}" for k, v in shown.items()), reason)
    return bool(n)


def observatory_set_mode(*, mode: str, reason: str, by=None) -> ObservatoryState:
    state = selectors.observatory_state()
    sm.check_mode_change(state.mode, mode)
    who = f" by {by}" if by else ""
    if state.mode != mode and not _state_update(state, reason=f"{reason}{who}", only_if={"mode": state.mode},
                                                mode=mode):
        raise sm.InvalidStateChange("the observatory mode changed meanwhile; try again")
    return state


def request_abort_current(*, reason: str, state: ObservatoryState | None = None) -> int | None:
    """Flag the running sequence for abort; returns its id (None when nothing runs)."""
    state = state or selectors.observatory_state()
    running = selectors.executing_sequence()
    if running is None:
        return None
    _state_update(state, reason=f"abort of sequence {running.pk} requested: {reason}",
                  abort_sequence_id=running.pk, abort_reason=reason[:300])
    return running.pk


# --- Operator controls --------------------------------------------------------------------------
def observatory_pause(*, when: str, by=None) -> ObservatoryState:
    """`deferred`: finish the current plan, then pause; `immediate`: abort the exposure now."""
    if when not in ("deferred", "immediate"):
        raise ValueError('"when" must be "deferred" or "immediate"')
    state = selectors.observatory_state()
    running = selectors.executing_sequence()
    if when == "deferred" and running is not None:
        sm.check_mode_change(state.mode, sm.PAUSED)
        _state_update(state, reason=f"pause after the current plan requested by {by}", pause_requested="deferred")
        return state
    observatory_set_mode(mode=sm.PAUSED, reason=f"paused ({when})", by=by)
    _state_update(state, reason="pause applied", pause_requested="")
    if running is not None:
        request_abort_current(reason=f"paused immediately by {by}", state=state)
    return state


def observatory_resume(*, by=None) -> ObservatoryState:
    state = selectors.observatory_state()
    if state.mode != sm.AUTOMATIC:
        observatory_set_mode(mode=sm.AUTOMATIC, reason="resumed", by=by)
    _state_update(state, reason=f"resume by {by}", pause_requested="")
    majordome_wake(reason="resumed")
    return state


def observatory_stop(*, by=None) -> ObservatoryState:
    """Finish nothing more: abort the running sequence, park the mount and close the dome."""
    state = selectors.observatory_state()
    observatory_set_mode(mode=sm.STOPPED, reason="stopped", by=by)
    _state_update(state, reason="stop", pause_requested="")
    request_abort_current(reason=f"observatory stopped by {by}", state=state)
    _close_and_park_async(reason=f"stopped by {by}")
    return state


def observatory_abort(*, by=None) -> int | None:
    """Abort the current sequence (it ends as failed / partially completed); the night goes on."""
    return request_abort_current(reason=f"aborted by {by}")


def observatory_close(*, by=None) -> ObservatoryState:
    """Close the dome and park now; the observatory stays stopped until resumed."""
    state = selectors.observatory_state()
    if state.mode != sm.STOPPED:
        observatory_set_mode(mode=sm.STOPPED, reason="dome closed by operator", by=by)
    request_abort_current(reason=f"dome closed by {by}", state=state)
    _close_and_park_async(reason=f"closed by {by}")
    return state


def _close_and_park_async(*, reason: str) -> None:
    """Close and park from the monitoring worker, which holds a device connection."""
    from monitoring.tasks import close_and_park

    transaction.on_commit(lambda: close_and_park.apply_async(kwargs={"reason": reason}))


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
            version=F("version") + 1)
    try:
        from majordome.device_link import get_observatory

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
        changes.update(abort_sequence_id=running.pk, abort_reason=f"pre-empted: {reason}"[:300])
    _state_update(state, reason=f"pre-emption by sequence {sequence_id}: {reason}", **changes)
    Sequence.objects.filter(pk=sequence_id, status__in=[Sequence.Status.PENDING, Sequence.Status.UNPLANNED]).update(
        status=Sequence.Status.PLANNED)
    if running is None:
        majordome_wake(reason="pre-emption")
    return slewed


def observatory_repoint(*, sequence_id: int, ra_deg: float, dec_deg: float, reason: str) -> bool:
    """A better position for a sequence (alert update): store it and, if it is running or waiting,
    restart it there (completed plans are kept)."""
    Sequence.objects.filter(pk=sequence_id).update(ra_deg=ra_deg % 360.0, dec_deg=dec_deg)
    return observatory_preempt(sequence_id=sequence_id, ra_deg=ra_deg, dec_deg=dec_deg, reason=f"re-point: {reason}")


def sequence_abort(*, sequence_id: int, reason: str) -> bool:
    """Stop `sequence_id` if it is running (a cancelled request). Returns whether it was running."""
    state = selectors.observatory_state()
    if not Sequence.objects.filter(pk=sequence_id, status=Sequence.Status.EXECUTING).exists():
        if state.preempt_sequence_id == sequence_id:
            _state_update(state, reason=f"sequence {sequence_id} withdrawn: {reason}", preempt_sequence=None)
        return False
    _state_update(state, reason=f"abort of sequence {sequence_id}: {reason}", abort_sequence_id=sequence_id,
                  abort_reason=reason[:300])
    return True


# --- Safety -------------------------------------------------------------------------------------
def observatory_set_safety(*, safe: bool | None, reasons: list[str], conditions_ok_since=None) -> ObservatoryState:
    """Record the safety verdict of monitoring. Going unsafe makes the observatory safe at once."""
    state = selectors.observatory_state()
    new = sm.UNKNOWN if safe is None else (sm.SAFE if safe else sm.UNSAFE)
    changes = {"safety_reasons": reasons, "conditions_ok_since": conditions_ok_since}
    if new != state.safety:
        changes["safety"] = new
        if new == sm.UNSAFE:
            changes["unsafe_since"] = timezone.now()
        _state_update(state, reason=f"safety {state.safety} -> {new}: {'; '.join(reasons) or 'conditions good'}",
                      **changes)
        if new == sm.SAFE:
            majordome_wake(reason="conditions safe")
    elif reasons != (state.safety_reasons or []) or conditions_ok_since != state.conditions_ok_since:
        ObservatoryState.objects.filter(pk=state.pk).update(**changes, version=F("version") + 1)
    return state


def make_safe_now(*, reasons: list[str], observatory=None) -> None:
    """Stop exposures, close the dome, park the mount — commands leave at once, motions run in threads."""
    state = selectors.observatory_state()
    request_abort_current(reason="unsafe: " + "; ".join(reasons), state=state)
    if observatory is None:
        from majordome.device_link import get_observatory

        observatory = get_observatory()
    for what, action in (("camera abort", lambda: observatory.camera.abort()),):
        try:
            action()
        except Exception as exc:
            log.warning("%s failed: %s", what, exc)
    log.warning("UNSAFE (%s): closing the dome and parking the mount", "; ".join(reasons))
    _in_thread("dome close", lambda: observatory.dome.close_shutter(timeout_s=300))
    _in_thread("mount park", lambda: observatory.mount.park(timeout_s=300))


def _in_thread(what: str, action) -> threading.Thread:
    def run():
        try:
            action()
            log.info("%s done", what)
        except Exception as exc:
            log.error("%s failed: %s", what, exc)

    thread = threading.Thread(target=run, name=f"pyros-{what}", daemon=True)
    thread.start()
    return thread


# --- Dispatch -----------------------------------------------------------------------------------
def majordome_wake(*, reason: str) -> None:
    """Decide now (not at the next tick) whether to start something; after commit."""
    transaction.on_commit(lambda: majordome_dispatch(reason=reason))


def phase_update(state: ObservatoryState, now: datetime | None = None) -> str:
    alt, rising = sun_position(state.site, now)
    phase = sm.phase_for(sun_alt_deg=alt, sun_rising=rising, twilight_deg=state.site.twilight_deg)
    if phase != state.phase:
        old = state.phase
        _state_update(state, reason=f"phase {old} -> {phase} (Sun at {alt:.1f}°)", phase=phase)
        _on_phase_change(old, phase)
    return phase


def _on_phase_change(old: str, new: str) -> None:
    if new == sm.NIGHT:
        log.info("night starts")
        _replan("night start")
    elif old == sm.NIGHT:
        log.info("night ends")


def _replan(reason: str) -> None:
    from scheduler.services import schedule_request_replan  # lazy: the scheduler imports the majordome's selectors

    schedule_request_replan(reason=reason)


def majordome_tick(now: datetime | None = None) -> str:
    """Periodic: phase, recovery of dead executions, calibrations, dispatch. Returns what it did."""
    state = selectors.observatory_state()
    phase_update(state, now)
    if state.phase == sm.NIGHT and state.mode == sm.AUTOMATIC and state.safety == sm.SAFE:
        ready_for_the_night(state)
    recovered = recover_stale_executions(now)
    if state.phase in (sm.DUSK, sm.DAWN) and state.mode == sm.AUTOMATIC:
        started = maybe_start_calibrations(state, now)
        if started:
            return started
    return majordome_dispatch(reason="tick") or (f"recovered {recovered}" if recovered else "idle")


def ready_for_the_night(state: ObservatoryState) -> bool:
    """At night, safe and automatic: unpark the mount and open the dome ahead of the first sequence,
    so that an alert finds the telescope ready (the first slew of the night does not wait for an
    unpark, nor the first exposure for the shutter). Decided from monitoring's snapshot; the
    motions run in threads. Returns whether something was started."""
    snapshot = state.devices_snapshot or {}
    mount_parked = (snapshot.get("mount") or {}).get("parked") is True
    dome = snapshot.get("dome") or {}
    dome_closed = dome.get("shutter") == "closed"
    if not (mount_parked or dome_closed):
        return False
    from majordome.device_link import get_observatory

    try:
        obs = get_observatory()
    except Exception as exc:
        log.warning("cannot prepare the telescope for the night: %s", exc)
        return False
    log.info("night, safe, automatic: getting the telescope ready (%s)",
             ", ".join(what for what, todo in (("unpark the mount", mount_parked), ("open the dome", dome_closed))
                       if todo))
    if mount_parked:
        _in_thread("mount unpark", lambda: obs.mount.unpark())
    if dome_closed:
        def open_dome():
            if obs.dome.state().parked:
                obs.dome.unpark()
            obs.dome.open_shutter(timeout_s=300)

        _in_thread("dome open", open_dome)
    return True


def recover_stale_executions(now: datetime | None = None) -> int:
    """A sequence left `executing` by a dead executor resumes next (its completed plans and images
    are kept); if its window has closed it ends as partially completed or failed."""
    now = now or timezone.now()
    count = 0
    state = selectors.observatory_state()
    for seq in selectors.stale_executions(now):
        if seq.window_end > now + timedelta(seconds=60):
            n = Sequence.objects.filter(pk=seq.pk, status=Sequence.Status.EXECUTING,
                                        execution_token=seq.execution_token).update(
                status=Sequence.Status.PENDING, status_reason="resuming after the executor was lost",
                execution_token="")
            if n:
                _state_update(state, reason=f"executor lost during sequence {seq.pk}: it resumes next",
                              preempt_sequence_id=seq.pk, current_sequence=None, progress={})
                count += 1
        else:
            from observation_manager.services import sequence_finish

            sequence_finish(sequence_id=seq.pk, token=seq.execution_token,
                            reason="executor lost and the window closed")
            count += 1
    return count


def maybe_start_calibrations(state: ObservatoryState, now: datetime | None = None) -> str | None:
    now = now or timezone.now()
    key = state.phase  # "dusk" or "dawn"
    today = now.date().isoformat()
    if (state.calibrations_done or {}).get(key) == today or selectors.executor_busy(state, now):
        return None
    done = dict(state.calibrations_done or {})
    done[key] = today
    if not _state_update(state, reason=f"{key} calibrations start", only_if={"calibrations_done": state.calibrations_done},
                         calibrations_done=done):
        return None
    _dispatch_calibrations(state, when=key, now=now)
    return f"{key} calibrations"


def _dispatch_calibrations(state: ObservatoryState, *, when: str, now: datetime) -> None:
    from observation_manager.tasks import run_calibrations

    token = uuid.uuid4().hex
    _state_update(state, reason=f"{when} calibrations dispatched",
                  progress={"kind": "calibration", "token": token, "heartbeat": now.isoformat(), "when": when})
    transaction.on_commit(lambda: run_calibrations.apply_async(kwargs={"when": when, "token": token}))


def observatory_calibrate(*, by=None, now: datetime | None = None) -> None:
    """Operator demand: take the calibration series now (bias, darks, flats of each detector)."""
    now = now or timezone.now()
    state = selectors.observatory_state()
    if selectors.executor_busy(state, now):
        raise sm.InvalidStateChange("the telescope is busy: pause or abort first, then calibrate")
    log.info("calibrations requested by %s", by)
    _dispatch_calibrations(state, when="manual", now=now)


def majordome_dispatch(*, reason: str, now: datetime | None = None) -> str | None:
    """Start the next sequence if the observatory may: the pre-empting one first, else the first
    planned entry that is due. Claimed with a conditional update so two callers cannot both start it."""
    now = now or timezone.now()
    with transaction.atomic():
        state = ObservatoryState.objects.select_for_update().select_related("site").get(
            pk=selectors.observatory_state().pk)
        busy = selectors.executor_busy(state, now)
        entry = None if state.preempt_sequence_id else selectors.next_due_entry(now)
        ok, why = sm.may_dispatch(sm.DispatchInputs(
            phase=state.phase, mode=state.mode, safety=state.safety, executor_busy=busy,
            has_preempt=state.preempt_sequence_id is not None, next_entry_due=entry is not None))
        if not ok:
            return None
        sequence_id = state.preempt_sequence_id or entry.sequence_id
        token = sequence_claim(sequence_id=sequence_id, now=now)
        if token is None:
            if state.preempt_sequence_id:
                _state_update(state, reason=f"pre-empting sequence {sequence_id} is no longer runnable",
                              preempt_sequence=None)
            return None
        _state_update(state, reason=f"dispatching sequence {sequence_id} ({why}; {reason})", preempt_sequence=None,
                      current_sequence_id=sequence_id, abort_sequence_id=None, abort_reason="",
                      progress={"kind": "sequence", "sequence": sequence_id, "token": token,
                                "heartbeat": now.isoformat(), "step": "dispatched"})
        from observation_manager.tasks import execute_sequence

        transaction.on_commit(lambda: execute_sequence.apply_async(kwargs={"sequence_id": sequence_id,
                                                                           "token": token}))
    return f"dispatched sequence {sequence_id}"


def sequence_claim(*, sequence_id: int, now: datetime | None = None) -> str | None:
    """Mark a waiting sequence executing under a new token (None if it is not waiting any more:
    another dispatcher or a cancellation got there first); its request follows."""
    from observation_manager.services import request_refresh_status

    now = now or timezone.now()
    token = uuid.uuid4().hex
    claimed = Sequence.objects.filter(
        pk=sequence_id, status__in=[Sequence.Status.PLANNED, Sequence.Status.PENDING, Sequence.Status.UNPLANNED]
    ).update(status=Sequence.Status.EXECUTING, execution_token=token, execution_heartbeat=now, started_at=now,
             # keep the mark of an earlier transient device error: the executor retries only once
             status_reason=Case(When(status_reason__startswith=RETRY_PREFIX, then=F("status_reason")),
                                default=Value("")))
    if not claimed:
        return None
    request_refresh_status(request_id=Sequence.objects.values_list("request_id", flat=True).get(pk=sequence_id))
    return token
