"""Reads of the observatory's state (the dashboard and the API compose these)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from pyrosapp.models import ObservatoryState, Sequence, Site


def executor_stale_s() -> float:
    """The executor refreshes its heartbeat every 2 s; after this long without one it is presumed dead."""
    from django.conf import settings

    return settings.PYROS_EXECUTOR_STALE_S


class ObservatoryNotConfigured(Exception):
    pass


def active_site() -> Site:
    site = Site.objects.filter(is_active=True).order_by("pk").first()
    if site is None:
        raise ObservatoryNotConfigured("no active site: run `manage.py seed_demo` or add one in the backoffice")
    return site


def observatory_state() -> ObservatoryState:
    # One query on the hot path (status reads); the row is created the first time only.
    state = (ObservatoryState.objects.select_related("site").filter(site__is_active=True)
             .order_by("site_id").first())
    if state is not None:
        return state
    state, _ = ObservatoryState.objects.select_related("site").get_or_create(site=active_site())
    return state


def executing_sequence() -> Sequence | None:
    return Sequence.objects.filter(status=Sequence.Status.EXECUTING).select_related("request").order_by(
        "started_at").first()


def executor_busy(state: ObservatoryState, now: datetime | None = None) -> bool:
    """True while an execution (sequence or calibration) holds the telescope and is alive."""
    now = now or timezone.now()
    heartbeat = (state.progress or {}).get("heartbeat")
    if heartbeat and (now - datetime.fromisoformat(heartbeat)).total_seconds() < executor_stale_s():
        return True
    fresh = now - timedelta(seconds=executor_stale_s())
    return Sequence.objects.filter(status=Sequence.Status.EXECUTING, execution_heartbeat__gte=fresh).exists()


def stale_executions(now: datetime | None = None):
    """Sequences left `executing` by an executor that stopped beating (killed worker)."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=executor_stale_s())
    return Sequence.objects.filter(
        Q(execution_heartbeat__lt=stale) | Q(execution_heartbeat__isnull=True, started_at__lt=stale),
        status=Sequence.Status.EXECUTING)


def last_poll_age_s(state: ObservatoryState, now: datetime | None = None) -> float | None:
    """Seconds since the safety process stored its last poll (None: never polled)."""
    stamp = (state.devices_snapshot or {}).get("time")
    if not stamp:
        return None
    return ((now or timezone.now()) - datetime.fromisoformat(stamp)).total_seconds()


def idle_reason(*, state: ObservatoryState | None = None, now: datetime | None = None,
                entries: list | None = None) -> dict | None:
    """Why the telescope is not observing (None: it is). ``code`` for programs, ``text`` for people;
    ``waiting``: sequences whose window is open and that wait for a plan (pending). ``entries``: the waiting
    entries of the current schedule by start, when the caller has them (the status endpoint: no second read)."""
    from django.conf import settings

    from majordome import state_machine as sm

    now = now or timezone.now()
    state = state or observatory_state()
    if executor_busy(state, now):
        return None
    age_s = last_poll_age_s(state, now)
    if age_s is not None and age_s > settings.PYROS_SAFETY_LOOP_STALE_S:
        return {"code": "monitoring_silent", "text": f"monitoring silent for {age_s:.0f} s: is the safety process "
                                                     f"running?"}
    if entries is not None:
        due = next((e for e in entries if e.tsp <= now + timedelta(seconds=60)), None)
    else:
        due = None if state.preempt_sequence_id else next_due_entry(now)
    entry = None if state.preempt_sequence_id else due
    ok, why = sm.may_dispatch(sm.DispatchInputs(
        phase=state.phase, mode=state.mode, safety=state.safety, executor_busy=False,
        has_preempt=state.preempt_sequence_id is not None, next_entry_due=entry is not None))
    if ok:
        return {"code": "starting", "text": f"starting: {why}"}
    if state.mode != sm.AUTOMATIC:
        text = f"mode is {state.mode}" + (" (resume to observe)" if state.mode in (sm.PAUSED, sm.STOPPED) else "")
        return {"code": "mode", "text": text}
    if state.safety != sm.SAFE:
        reasons = "; ".join(state.safety_reasons or []) or state.safety
        return {"code": "unsafe", "text": f"not safe: {reasons}"}
    if state.phase != sm.NIGHT:
        return {"code": "daytime", "text": f"it is {state.phase}"}
    waiting = Sequence.objects.filter(status=Sequence.Status.PENDING, window_start__lte=now, window_end__gt=now,
                                      request__status__in=("submitted", "scheduled", "executing")).count()
    upcoming = (entries[0].tsp if entries else None) if entries is not None else next_entry_start(now)
    if waiting:
        text = f"{waiting} sequence(s) wait for a plan; a new plan is requested"
    elif upcoming:
        text = f"next planned sequence starts at {upcoming:%H:%M:%S} UTC"
    else:
        text = "nothing to observe: no sequence is planned or waiting"
    return {"code": "nothing_due", "text": text, "waiting": waiting}


def next_entry_start(now: datetime | None = None) -> datetime | None:
    from scheduler.selectors import schedule_current_entries

    entry = schedule_current_entries(now=now, waiting_only=True).first()
    return entry.tsp if entry is not None else None


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _iso(value):
    return value.isoformat().replace("+00:00", "Z") if value else None


def executor_activity(progress: dict) -> dict | None:
    """The executor's work other than a sequence, in words (issue #16: the dashboard said "No sequence
    is executing" during calibrations): ``{"kind": "calibration"|"procedure", "text": ...}`` or None."""
    kind = (progress or {}).get("kind")
    step = (progress or {}).get("step") or ""
    if kind == "calibration":
        when = progress.get("when")
        return {"kind": kind, "text": f"taking calibrations{f' ({when})' if when else ''}"
                                      f"{f': {step}' if step else ''}"}
    if kind == "procedure":
        count = (f" {progress.get('current')}/{progress.get('total')}"
                 if progress.get("current") is not None and progress.get("total") else "")
        return {"kind": kind, "text": f"running procedure {progress.get('name') or ''}{count}"
                                      f"{f': {step}' if step else ''}".replace("  ", " ")}
    return None


def observatory_status() -> dict:
    """The JSON of GET /api/observatory/status/ (also the dashboard's status panel)."""
    from scheduler.selectors import schedule_current_entries
    from sky.sun import sun_altitude_deg

    state = observatory_state()
    snapshot = state.devices_snapshot or {}
    progress = state.progress or {}
    # The next entries, read once: shown, and telling why nothing runs (the status endpoint is polled).
    waiting = list(schedule_current_entries(site=state.site, waiting_only=True)[:5])
    current = None
    if state.current_sequence_id and progress.get("sequence") == state.current_sequence_id:
        current = {
            "sequence": progress.get("sequence"),
            "request": progress.get("request"),
            "name": progress.get("name"),
            "target": progress.get("target"),
            "plan": progress.get("plan"),
            "plan_index": progress.get("plan_index"),
            "plans_total": progress.get("plans_total"),
            "filter": progress.get("filter"),
            "exposure": progress.get("exposure"),
            "of": progress.get("of"),
            "exposure_s": progress.get("exposure_s"),
            "exposure_started": progress.get("exposure_started"),
            "step": progress.get("step"),
            "progress": progress.get("fraction", 0.0),
        }
    return {
        "phase": state.phase,
        "mode": state.mode,
        "safe": state.safety == "safe",
        "safety": state.safety,
        "safety_reasons": state.safety_reasons or [],
        "sun_alt_deg": round(sun_altitude_deg(state.site, timezone.now()), 2),
        "dome": snapshot.get("dome"),
        "mount": snapshot.get("mount") or {"ra_deg": None, "dec_deg": None, "state": "unknown"},
        "current": current,
        "procedure": ({k: progress.get(k) for k in ("item", "name", "current", "total", "step")}
                      if progress.get("kind") == "procedure" else None),
        "activity": executor_activity(progress),
        "next": [{"sequence": r.sequence_id, "request": r.sequence.request_id, "name": r.sequence.name,
                  "target": r.sequence.target_name, "tsp": _iso(r.tsp), "tep": _iso(r.tep)} for r in waiting],
        "weather": snapshot.get("weather") or {},
        "pause_requested": state.pause_requested or None,
        "idle_reason": (idle_reason(state=state, entries=waiting) or {}).get("text"),
        "safety_alarm": snapshot.get("safety_alarm"),
        "watchdog": snapshot.get("watchdog"),
        "last_poll_age_s": _rounded(last_poll_age_s(state)),
        "version": state.version,
        "updated": _iso(state.updated),
    }


def next_due_entry(now: datetime | None = None, lead_s: float = 60.0):
    """The first waiting entry of the current schedule that may start now (its planned start is at
    most `lead_s` away and its end is not past)."""
    from scheduler.selectors import schedule_current_entries

    now = now or timezone.now()
    return schedule_current_entries(now=now, waiting_only=True).filter(
        tsp__lte=now + timedelta(seconds=lead_s)).first()
