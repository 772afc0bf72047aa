"""Safety: the monitoring poll acted upon, enforced at every poll, and the one make-safe routine.

The poll itself (devices and weather read, history kept, verdict) is monitoring's; the majordome
stores its snapshot and verdict in the observatory state and acts on it:

* on the safe -> unsafe transition it stops the running sequence and the exposure;
* at EVERY poll while not safe (unsafe, or waiting out the hold before reopening) it checks that the
  shutter is closed or closing and the mount parked or parking, and re-issues the missing command
  otherwise (rate-limited with backoff, at once when the INDI link comes back). A state that cannot be
  read counts as not closed. A command that had to be repeated, or a state that cannot be read, raises
  the **safety alarm** (dashboard, ERROR in the log, ``PYROS_SAFETY_ALARM_HOOK``); it stays until the
  dome is confirmed closed and the mount parked.

Motions run in threads of the calling process (the safety process: ``majordome.safety_process``), each
watched with ``MOTION_TIMEOUT_S``, so that the poll itself is never blocked by a motion.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db.models import F
from django.utils import timezone
from django.utils.module_loading import import_string

from common import notifications
from majordome import selectors
from majordome import state_machine as sm
from majordome.device_link import get_observatory
from majordome.dispatch import majordome_wake
from majordome.state import StopKind, request_stop_current, state_update
from monitoring.services import monitoring_poll, snapshot_differs
from pyrosapp.models import ObservatoryState
from scheduler.services import schedule_request_replan

log = logging.getLogger("pyros.majordome")

# A dome or a mount that takes longer than this to close or park is reported as failed.
MOTION_TIMEOUT_S = 300.0
# A command that has not shown its effect (closing / parking) after this long may be repeated.
COMMAND_GRACE_S = 3.0
# Delays before the 2nd, 3rd... repetition of a command that did not take (the last one repeats).
RETRY_BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)

DOME_OK = ("closed", "closing", "none")
MOUNT_OK = ("parked", "parking")


@dataclass
class _Motion:
    """One device's enforced motion in this process: the command in flight and its retry schedule."""

    what: str
    thread: threading.Thread | None = None
    started: float = 0.0
    attempts: int = 0
    next_try: float = 0.0
    last_error: str = ""

    def in_flight(self, now: float) -> bool:
        return self.thread is not None and self.thread.is_alive() and now - self.started < MOTION_TIMEOUT_S

    def reset(self) -> None:
        self.attempts, self.next_try, self.last_error = 0, 0.0, ""


@dataclass
class Enforcer:
    """What this process has commanded to make the observatory safe (one per process)."""

    dome: _Motion = field(default_factory=lambda: _Motion("dome close"))
    mount: _Motion = field(default_factory=lambda: _Motion("mount park"))
    link_epoch: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


_enforcer = Enforcer()


def reset_enforcement() -> None:
    """Forget commands in flight and retry schedules (tests, or a new device connection)."""
    global _enforcer
    _enforcer = Enforcer()


def _device_states(snapshot: dict) -> tuple[str, str]:
    shutter = (snapshot.get("dome") or {}).get("shutter") or "unknown"
    mount = (snapshot.get("mount") or {}).get("state") or "unknown"
    return shutter, mount


def enforce_safe(*, observatory, snapshot: dict, reasons: list[str], alarm: dict | None,
                 now: datetime | None = None) -> dict | None:
    """While not safe: command what is not closed/parked (again, with backoff) and keep the alarm.
    Returns the alarm to store (None: no alarm)."""
    now = now or timezone.now()
    shutter, mount = _device_states(snapshot)
    connected = observatory is not None and getattr(observatory, "connected", True)
    enforcer = _enforcer
    t = time.monotonic()
    with enforcer.lock:
        epoch = getattr(getattr(observatory, "link", None), "epoch", None) if connected else None
        if epoch is not None and epoch != enforcer.link_epoch:
            # The INDI link is (back) up: whatever failed before is commanded again now, not after a backoff.
            enforcer.link_epoch = epoch
            enforcer.dome.reset()
            enforcer.mount.reset()
        problems: list[str] = []
        for motion, state, ok_states, action in (
                (enforcer.dome, shutter, DOME_OK,
                 lambda: observatory.dome.close_shutter(timeout_s=MOTION_TIMEOUT_S)),
                (enforcer.mount, mount, MOUNT_OK, lambda: observatory.mount.park(timeout_s=MOTION_TIMEOUT_S))):
            if state in ok_states:
                if motion.attempts and state in ("closed", "parked", "none"):
                    motion.reset()
                continue
            if state == "unknown":
                problems.append(f"{motion.what.split()[0]} state unknown"
                                + ("" if connected else " (devices unreachable)"))
            if not connected:
                continue
            if motion.in_flight(t) and t - motion.started < COMMAND_GRACE_S:
                continue  # just commanded: give it time to show "closing" / "parking"
            if t < motion.next_try:
                continue
            if motion.attempts:
                problems.append(f"{motion.what} repeated ({state}; attempt {motion.attempts + 1}"
                                + (f"; last error: {motion.last_error}" if motion.last_error else "") + ")")
            _start_motion(motion, action, t, reasons)
    confirmed = shutter in ("closed", "none") and mount == "parked"
    if confirmed:
        if alarm:
            log.warning("safety alarm cleared: dome closed and mount parked (raised %s)", alarm.get("since"))
            _notify("cleared", {**alarm, "cleared": now.isoformat()})
        return None
    if alarm:
        alarm = {**alarm, "dome": shutter, "mount": mount, "attempts": enforcer.dome.attempts + enforcer.mount.attempts}
        if problems:
            alarm["problems"] = problems
        return alarm
    if problems:
        alarm = {"since": now.isoformat(), "reasons": list(reasons), "problems": problems, "dome": shutter,
                 "mount": mount, "attempts": enforcer.dome.attempts + enforcer.mount.attempts}
        log.error("SAFETY ALARM: not safe (%s) and the dome is not closed/mount not parked: %s",
                  "; ".join(reasons), "; ".join(problems))
        _notify("raised", alarm)
    return alarm


def _start_motion(motion: _Motion, action, t: float, reasons: list[str]) -> None:
    motion.attempts += 1
    delay = RETRY_BACKOFF_S[min(motion.attempts - 1, len(RETRY_BACKOFF_S) - 1)]
    motion.started, motion.next_try = t, t + COMMAND_GRACE_S + delay
    log.warning("%s commanded (attempt %d): %s", motion.what, motion.attempts, "; ".join(reasons))

    def run():
        try:
            action()
            motion.last_error = ""
            log.info("%s done", motion.what)
        except Exception as exc:  # noqa: BLE001 - reported, retried by the next poll
            motion.last_error = str(exc)[:200]
            log.error("%s failed: %s", motion.what, exc)

    motion.thread = threading.Thread(target=run, name=f"pyros-{motion.what}", daemon=True)
    motion.thread.start()


def _notify_in_thread(kind: str, **message) -> None:
    """A notification from the safety loop, sent from a thread: a broker that does not answer must not delay
    the poll (Celery's publish retries for seconds)."""
    def run():
        try:
            notifications.notify(kind, **message)
        except Exception:  # noqa: BLE001 - safety first
            log.exception("notification %s not sent", kind)

    threading.Thread(target=run, name="pyros-notify", daemon=True).start()


def _notify(event: str, alarm: dict) -> None:
    """Call the operator's notification hook (``PYROS_SAFETY_ALARM_HOOK``: a dotted path to a callable
    ``hook(event, alarm)``), in a thread: a slow mail server must not delay the poll."""
    path = getattr(settings, "PYROS_SAFETY_ALARM_HOOK", "")

    def run():
        try:  # operators who asked for observatory alarms on their profile (pyros.common.notify)
            if event == "raised":
                notifications.notify(
                    "observatory_alarm", subject="SAFETY ALARM: the dome did not close / the mount did not park",
                    body=(f"Not safe ({'; '.join(alarm.get('reasons') or []) or 'unknown'}) and the dome is "
                          f"{alarm.get('dome')}, the mount {alarm.get('mount')}: {'; '.join(alarm.get('problems') or [])}"
                          ". Check the observatory now."), link="/operations/")
            else:
                notifications.notify("observatory_alarm", subject="safety alarm cleared",
                                     body="The dome is closed and the mount parked.", link="/")
        except Exception:  # noqa: BLE001 - a broker refusal must not break safety
            log.exception("safety alarm notification not sent")
        if not path:
            return
        try:
            import_string(path)(event, alarm)
        except Exception:  # noqa: BLE001 - a broken hook must not break safety
            log.exception("safety alarm hook %s failed", path)

    threading.Thread(target=run, name="pyros-alarm-hook", daemon=True).start()


def safety_poll(*, observatory=None, now: datetime | None = None) -> dict:
    """One monitoring poll, acted upon: while not safe, closing and parking are enforced (commands leave
    before any bookkeeping); snapshot, alarm and verdict stored."""
    now = now or timezone.now()
    if observatory is None:
        try:
            observatory = get_observatory()
        except Exception as exc:
            observatory = None
            log.warning("devices unreachable: %s", exc)
    state = selectors.observatory_state()
    previous = state.devices_snapshot or {}
    poll = monitoring_poll(observatory=observatory, previous_safety=state.safety,
                           ok_since=state.conditions_ok_since, now=now)
    verdict = poll.verdict
    snapshot = dict(poll.snapshot)
    alarm = previous.get("safety_alarm")
    if verdict.safety != sm.SAFE:
        alarm = enforce_safe(observatory=observatory, snapshot=snapshot, reasons=verdict.reasons, alarm=alarm, now=now)
        if state.safety == sm.SAFE:
            # The reading just said unsafe: the motions are commanded; now the exposure and the sequence stop.
            _stop_observing(observatory, verdict.reasons)
    elif alarm:
        # Safe again, but the dome was never confirmed closed: the alarm stays until it is.
        shutter, mount = _device_states(snapshot)
        if shutter in ("closed", "none") and mount == "parked":
            log.warning("safety alarm cleared: dome closed and mount parked")
            _notify("cleared", {**alarm, "cleared": now.isoformat()})
            alarm = None
    if alarm:
        snapshot["safety_alarm"] = alarm
    if snapshot_differs(snapshot, previous):
        # Something a person would see changed: bump the version so live clients refetch.
        ObservatoryState.objects.filter(pk=state.pk).update(devices_snapshot=snapshot, version=F("version") + 1)
    else:
        ObservatoryState.objects.filter(pk=state.pk).update(devices_snapshot=snapshot)
    observatory_set_safety(safe={sm.SAFE: True, sm.UNSAFE: False}.get(verdict.safety), reasons=verdict.reasons,
                           conditions_ok_since=verdict.conditions_ok_since)
    return snapshot


def _stop_observing(observatory, reasons: list[str]) -> None:
    request_stop_current(reason=f"unsafe: {'; '.join(reasons)}", kind=StopKind.INTERRUPT)
    if observatory is not None and getattr(observatory, "connected", True):
        try:
            observatory.camera.abort()
        except Exception as exc:  # noqa: BLE001 - the dome matters more than the camera
            log.warning("camera abort failed: %s", exc)


def observatory_set_safety(*, safe: bool | None, reasons: list[str], conditions_ok_since=None) -> ObservatoryState:
    """Record the safety verdict. Back to safe asks for a new plan (sequences interrupted by the weather,
    windows that moved) and wakes the dispatcher."""
    state = selectors.observatory_state()
    new = sm.UNKNOWN if safe is None else (sm.SAFE if safe else sm.UNSAFE)
    changes = {"safety_reasons": reasons, "conditions_ok_since": conditions_ok_since}
    if new != state.safety:
        old = state.safety
        changes["safety"] = new
        if new == sm.UNSAFE:
            changes["unsafe_since"] = timezone.now()
        state_update(state, reason=f"safety {old} -> {new}: {'; '.join(reasons) or 'conditions good'}",
                     **changes)
        if old == sm.SAFE and new == sm.UNSAFE:
            _notify_in_thread("observatory_alarm", subject=f"weather alarm: {'; '.join(reasons)[:120]}",
                              body=f"The observatory turned unsafe ({'; '.join(reasons)}): the running sequence is "
                                   "stopped, the dome closed and the mount parked.", link="/")
        if new == sm.SAFE:
            if old == sm.UNSAFE:
                schedule_request_replan(reason="conditions safe again", delay_s=0.5)
            majordome_wake(reason="conditions safe")
    elif reasons != (state.safety_reasons or []) or conditions_ok_since != state.conditions_ok_since:
        ObservatoryState.objects.filter(pk=state.pk).update(**changes, version=F("version") + 1)
    return state


def make_safe(*, reasons: list[str], observatory=None, wait: bool = False, stop_running: bool = True) -> list[str]:
    """Stop the running sequence (it is planned again), abort the exposure, close the dome and park the
    mount. Commands leave at once, the two motions in parallel threads; with ``wait`` returns when both
    ended, with the errors met (empty: closed and parked). An operator's close or stop (whose control flags
    the running sequence itself: ``stop_running`` False); unsafe weather goes through ``enforce_safe``."""
    why = "; ".join(reasons)
    if observatory is None:
        observatory = get_observatory()
    errors: list[str] = []
    log.warning("closing the dome and parking the mount: %s", why)
    motions = [_in_thread("dome close", errors, lambda: observatory.dome.close_shutter(timeout_s=MOTION_TIMEOUT_S))
               if observatory.dome else None,
               _in_thread("mount park", errors, lambda: observatory.mount.park(timeout_s=MOTION_TIMEOUT_S))]
    if stop_running:
        request_stop_current(reason=f"unsafe: {why}", kind=StopKind.INTERRUPT)
    try:
        observatory.camera.abort()
    except Exception as exc:
        errors.append(f"camera abort: {exc}")
        log.warning("camera abort failed: %s", exc)
    if wait:
        deadline = time.monotonic() + MOTION_TIMEOUT_S + 30.0
        for thread in motions:
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
                if thread.is_alive():
                    errors.append(f"{thread.name} still running after {MOTION_TIMEOUT_S:.0f} s")
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
