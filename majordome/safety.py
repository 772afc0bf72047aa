"""Safety: the monitoring poll acted upon, and the one routine that makes the observatory safe.

The poll itself (devices and weather read, history kept, verdict) is monitoring's; the majordome
stores its snapshot and verdict in the observatory state and, when the verdict is unsafe, stops
exposures, closes the dome and parks the mount (``make_safe``: commands leave before any bookkeeping).
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime

from django.db.models import F
from django.utils import timezone

from majordome import selectors
from majordome import state_machine as sm
from majordome.device_link import get_observatory
from majordome.dispatch import majordome_wake
from majordome.state import StopKind, request_stop_current, state_update
from monitoring.services import monitoring_poll, snapshot_differs
from pyrosapp.models import ObservatoryState

log = logging.getLogger("pyros.majordome")

# A dome or a mount that takes longer than this to close or park is reported as failed.
MOTION_TIMEOUT_S = 300.0


def safety_poll(*, observatory=None, now: datetime | None = None) -> dict:
    """One monitoring poll, acted upon: snapshot and verdict stored; unsafe -> made safe at once."""
    now = now or timezone.now()
    if observatory is None:
        try:
            observatory = get_observatory()
        except Exception as exc:
            observatory = None
            log.warning("devices unreachable: %s", exc)
    state = selectors.observatory_state()
    poll = monitoring_poll(observatory=observatory, previous_safety=state.safety,
                           ok_since=state.conditions_ok_since, now=now)
    if snapshot_differs(poll.snapshot, state.devices_snapshot or {}):
        # Something a person would see changed: bump the version so live clients refetch.
        ObservatoryState.objects.filter(pk=state.pk).update(devices_snapshot=poll.snapshot, version=F("version") + 1)
    else:
        ObservatoryState.objects.filter(pk=state.pk).update(devices_snapshot=poll.snapshot)
    verdict = poll.verdict
    if verdict.safety == sm.UNSAFE and state.safety != sm.UNSAFE and observatory is not None:
        # The reading just said unsafe: commands leave before any bookkeeping.
        make_safe(reasons=verdict.reasons, observatory=observatory)
    observatory_set_safety(safe={sm.SAFE: True, sm.UNSAFE: False}.get(verdict.safety), reasons=verdict.reasons,
                           conditions_ok_since=verdict.conditions_ok_since)
    return poll.snapshot


def observatory_set_safety(*, safe: bool | None, reasons: list[str], conditions_ok_since=None) -> ObservatoryState:
    """Record the safety verdict. Back to safe wakes the dispatcher."""
    state = selectors.observatory_state()
    new = sm.UNKNOWN if safe is None else (sm.SAFE if safe else sm.UNSAFE)
    changes = {"safety_reasons": reasons, "conditions_ok_since": conditions_ok_since}
    if new != state.safety:
        changes["safety"] = new
        if new == sm.UNSAFE:
            changes["unsafe_since"] = timezone.now()
        state_update(state, reason=f"safety {state.safety} -> {new}: {'; '.join(reasons) or 'conditions good'}",
                     **changes)
        if new == sm.SAFE:
            majordome_wake(reason="conditions safe")
    elif reasons != (state.safety_reasons or []) or conditions_ok_since != state.conditions_ok_since:
        ObservatoryState.objects.filter(pk=state.pk).update(**changes, version=F("version") + 1)
    return state


def make_safe(*, reasons: list[str], observatory=None, wait: bool = False, stop_running: bool = True) -> list[str]:
    """Stop the running sequence (it is planned again), abort the exposure, close the dome and park the
    mount. Commands leave at once, the two motions in parallel threads; with ``wait`` returns when both
    ended, with the errors met (empty: closed and parked). The one make-safe routine of PyROS: unsafe
    weather, an operator's close or stop (whose control flags the running sequence itself: ``stop_running``
    False)."""
    why = "; ".join(reasons)
    if stop_running:
        request_stop_current(reason=f"unsafe: {why}", kind=StopKind.INTERRUPT)
    if observatory is None:
        observatory = get_observatory()
    errors: list[str] = []
    try:
        observatory.camera.abort()
    except Exception as exc:
        errors.append(f"camera abort: {exc}")
        log.warning("camera abort failed: %s", exc)
    log.warning("closing the dome and parking the mount: %s", why)
    motions = [_in_thread("dome close", errors, lambda: observatory.dome.close_shutter(timeout_s=MOTION_TIMEOUT_S))
               if observatory.dome else None,
               _in_thread("mount park", errors, lambda: observatory.mount.park(timeout_s=MOTION_TIMEOUT_S))]
    if wait:
        for thread in motions:
            if thread is not None:
                thread.join(MOTION_TIMEOUT_S + 30.0)
        if errors:
            log.error("close and park incomplete: %s", "; ".join(errors))
        else:
            log.info("dome closed and mount parked")
    return errors


def _in_thread(what: str, errors: list[str], action) -> threading.Thread:
    def run():
        try:
            action()
            log.info("%s done", what)
        except Exception as exc:
            errors.append(f"{what}: {exc}")
            log.error("%s failed: %s", what, exc)

    thread = threading.Thread(target=run, name=f"pyros-{what}", daemon=True)
    thread.start()
    return thread
