"""The night loop: the phase from the Sun, the telescope made ready, dead executions recovered,
calibrations at dusk and dawn, and the next sequence dispatched (the majordome's periodic tick)."""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from majordome import selectors
from majordome import state_machine as sm
from majordome.device_link import get_observatory
from majordome.dispatch import calibrations_dispatch, majordome_dispatch
from majordome.execution import recover_stale_executions
from majordome.safety import observatory_set_safety
from majordome.state import state_update
from pyrosapp.models import ObservatoryState
from scheduler.services import schedule_request_replan
from sky.sun import sun_position

log = logging.getLogger("pyros.majordome")


def phase_update(state: ObservatoryState, now: datetime | None = None) -> str:
    alt, rising = sun_position(state.site, now or timezone.now())
    phase = sm.phase_for(sun_alt_deg=alt, sun_rising=rising, twilight_deg=state.site.twilight_deg)
    if phase != state.phase:
        old = state.phase
        state_update(state, reason=f"phase {old} -> {phase} (Sun at {alt:.1f}°)", phase=phase)
        if phase == sm.NIGHT:
            log.info("night starts")
            schedule_request_replan(reason="night start")
        elif old == sm.NIGHT:
            log.info("night ends")
    return phase


def majordome_tick(now: datetime | None = None) -> str:
    """Periodic: phase, recovery of dead executions, calibrations, dispatch. Returns what it did."""
    state = selectors.observatory_state()
    phase_update(state, now)
    safety_loop_watch(state, now)
    if state.phase == sm.NIGHT and state.mode == sm.AUTOMATIC and state.safety == sm.SAFE:
        ready_for_the_night(state)
    recovered = recover_stale_executions(now)
    if state.phase in (sm.DUSK, sm.DAWN) and state.mode == sm.AUTOMATIC:
        started = maybe_start_calibrations(state, now)
        if started:
            return started
    dispatched = majordome_dispatch(reason="tick")
    if dispatched:
        return dispatched
    replanned = replan_if_idle(now)
    return replanned or (f"recovered {recovered}" if recovered else "idle")


def safety_loop_watch(state: ObservatoryState, now: datetime | None = None) -> float | None:
    """Staleness seen from outside the poll: no poll stored for ``PYROS_SAFETY_LOOP_STALE_S`` means the safety
    process is dead or hung (or PyROS was stopped); the log says so and the observatory's safety is no longer
    known: `unknown` (nothing dispatched, nothing opened), or `unsafe` kept if it was unsafe (bad weather still
    has its hold to wait out). When polls resume, good conditions after `unknown` are safe at once: after a
    restart of PyROS the night goes on without waiting the hold for weather nobody saw turn bad.
    Returns the age of the last poll when it is stale."""
    now = now or timezone.now()
    age_s = selectors.last_poll_age_s(state, now)
    if age_s is None or age_s <= settings.PYROS_SAFETY_LOOP_STALE_S:
        return None
    reason = f"monitoring silent for {age_s:.0f} s (is the safety process running?)"
    if not any(r.startswith("monitoring silent") for r in state.safety_reasons or []):
        log.error("no safety poll for %.0f s: the safety process is dead or hung; safety unknown", age_s)
    observatory_set_safety(safe=False if state.safety == sm.UNSAFE else None, reasons=[reason])
    return age_s


_last_idle_replan = {"at": -1e18}


def replan_if_idle(now: datetime | None = None) -> str | None:
    """Sequences wait (interrupted, new) but none is due: ask for a new plan, at most every
    ``PYROS_IDLE_REPLAN_S``. Returns what it did."""
    now = now or timezone.now()
    reason = selectors.idle_reason(now=now)
    if not reason or reason.get("code") != "nothing_due" or not reason.get("waiting"):
        return None
    t = time.monotonic()
    if t - _last_idle_replan["at"] < settings.PYROS_IDLE_REPLAN_S:
        return None
    _last_idle_replan["at"] = t
    schedule_request_replan(reason=f"{reason['waiting']} sequence(s) wait, none is planned now", delay_s=0.5)
    return "replan requested (idle)"


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


def maybe_start_calibrations(state: ObservatoryState, now: datetime | None = None) -> str | None:
    now = now or timezone.now()
    key = state.phase  # "dusk" or "dawn"
    today = now.date().isoformat()
    if (state.calibrations_done or {}).get(key) == today or selectors.executor_busy(state, now):
        return None
    done = dict(state.calibrations_done or {})
    done[key] = today
    if not state_update(state, reason=f"{key} calibrations start", only_if={"calibrations_done": state.calibrations_done},
                        calibrations_done=done):
        return None
    calibrations_dispatch(state, when=key, now=now)
    return f"{key} calibrations"
