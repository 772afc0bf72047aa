"""Reads of the scheduler: the current plan, what runs next, past plans, and the data of the timeline chart.

The dashboard and the majordome use these (never the tables directly). ``schedule_timeline_data`` and
``simulation_timeline_data`` return the same plain, JSON-ready dict that ``scheduler/static/scheduler/
timeline.js`` draws, so any page can show a plan with one ``json_script`` and one ``<script>``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from django.db.models import QuerySet
from django.urls import reverse
from django.utils import timezone

from pyrosapp.models import Schedule, ScheduleHasSequences, Sequence, Site
from routine_manager import lifecycle
from sky.observability import Site as SkySite
from sky.observability import SkyGrid, night_bounds

# Sun altitude bands of the chart background (degrees): the usual twilight definitions.
TWILIGHT_BANDS = (
    ("day", 0.0, 90.0),
    ("civil", -6.0, 0.0),
    ("nautical", -12.0, -6.0),
    ("astronomical", -18.0, -12.0),
)
# The chart spans sunset to sunrise (Sun at 0 deg) plus this margin, so every twilight band shows;
# CHART_MARGIN around the plan when there is no sunset (polar summer/winter).
SUNSET_MARGIN = timedelta(minutes=30)
CHART_MARGIN = timedelta(hours=1, minutes=30)
CURVE_STEP_S = 300.0
MAX_ALTITUDE_CURVES = 60  # beyond that a chart is unreadable and heavy

EXECUTED_STATUSES = lifecycle.SEQUENCE_EXECUTED


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------------
def _site_or_active(site: Site | None) -> Site | None:
    return site if site is not None else Site.objects.filter(is_active=True).order_by("pk").first()


def schedule_current(site: Site | None = None) -> Schedule | None:
    """The schedule in force for ``site`` (default: the active site), or None before the first run."""
    site = _site_or_active(site)
    if site is None:
        return None
    return (Schedule.objects.filter(site=site, status=Schedule.Status.CURRENT).select_related("site")
            .order_by("-created", "-pk").first())


def schedule_current_entries(*, site: Site | None = None, now: datetime | None = None,
                             waiting_only: bool = False) -> QuerySet[ScheduleHasSequences]:
    """Planned entries of the current schedule that have not ended at ``now`` (default: now), by start.

    The sequence executing now (kept first by every run) is included unless ``waiting_only``; then only
    sequences still waiting for their turn (status planned) are returned: the first one runs next.
    """
    schedule = schedule_current(site)
    if schedule is None:
        return ScheduleHasSequences.objects.none()
    now = now or timezone.now()
    entries = (ScheduleHasSequences.objects.filter(schedule=schedule, status=ScheduleHasSequences.Status.PLANNED,
                                                   tep__gt=now)
               .select_related("sequence__request__program").order_by("tsp", "id"))
    if waiting_only:
        entries = entries.filter(sequence__status=Sequence.Status.PLANNED)
    return entries


def schedule_planned_entries(schedule: Schedule) -> QuerySet[ScheduleHasSequences]:
    return (schedule.entries.filter(status=ScheduleHasSequences.Status.PLANNED)
            .select_related("sequence__request__program").order_by("tsp", "id"))


def schedule_rejected_entries(schedule: Schedule) -> QuerySet[ScheduleHasSequences]:
    return (schedule.entries.filter(status=ScheduleHasSequences.Status.REJECTED)
            .select_related("sequence__request__program").order_by("sequence__priority", "sequence_id")
            .reverse())


def schedule_list(site: Site | None = None) -> QuerySet[Schedule]:
    """Every stored run, newest first (all sites when none is given)."""
    schedules = Schedule.objects.select_related("site").order_by("-created", "-pk")
    return schedules.filter(site=site) if site is not None else schedules


def schedule_get(pk: int) -> Schedule | None:
    return Schedule.objects.select_related("site").filter(pk=pk).first()


# --------------------------------------------------------------------------------------------
# Timeline chart data
# --------------------------------------------------------------------------------------------
def _sky_site(site: Site) -> SkySite:
    return SkySite(latitude_deg=site.latitude_deg, longitude_deg=site.longitude_deg, elevation_m=site.elevation_m,
                   name=site.name)


def _chart_range(site: SkySite, start: datetime, end: datetime) -> tuple[datetime, datetime]:
    try:
        sunset, sunrise = night_bounds(site, start, twilight_deg=0.0)
    except ValueError:
        return start - CHART_MARGIN, end + CHART_MARGIN
    if sunset > start or sunrise < end:  # not the same night (should not happen): keep the plan whole
        return start - CHART_MARGIN, end + CHART_MARGIN
    return sunset - SUNSET_MARGIN, sunrise + SUNSET_MARGIN


def _band(sun_alt_deg: float) -> str:
    for name, low, high in TWILIGHT_BANDS:
        if low <= sun_alt_deg < high or (name == "day" and sun_alt_deg >= high):
            return name
    return "night"


def _sky_curves(site: SkySite, start: datetime, end: datetime,
                targets: Iterable[tuple[str, float, float]]) -> dict[str, Any]:
    """Twilight bands from the Sun altitude, and the altitude of each target, over [start, end]."""
    grid = SkyGrid(site, start, end, step_s=CURVE_STEP_S)
    t_s = grid.t_s
    times = [_iso(grid.utc(t)) for t in t_s]
    sun = grid.sun_altitude_deg(t_s)
    bands: list[dict[str, Any]] = []
    for k, altitude in enumerate(sun):
        kind = _band(float(altitude))
        # Bands switch at the midpoint between two samples (5 min resolution is plenty for shading).
        if bands and bands[-1]["kind"] == kind:
            continue
        edge = grid.utc(t_s[k] if k == 0 else (t_s[k - 1] + t_s[k]) / 2)
        if bands:
            bands[-1]["end"] = _iso(edge)
        bands.append({"kind": kind, "start": _iso(edge), "end": None})
    if bands:
        bands[-1]["end"] = _iso(grid.utc(t_s[-1]))
    targets = list(targets)[:MAX_ALTITUDE_CURVES]
    curves = []
    if targets:
        xyz = grid.targets_cirs(np.array([t[1] for t in targets]), np.array([t[2] for t in targets]))
        altitude = grid.altitude_deg(xyz[:, None, :], t_s[None, :])
        for (label, _, _), row in zip(targets, altitude, strict=True):
            curves.append({"label": label, "alt_deg": [round(float(a), 2) for a in row]})
    return {"times": times, "sun_alt_deg": [round(float(a), 2) for a in sun], "twilight": bands,
            "altitudes": curves}


def _entry_state(entry: ScheduleHasSequences, now: datetime) -> str:
    status = entry.sequence.status
    if status == Sequence.Status.EXECUTING:
        return "running"
    if status in EXECUTED_STATUSES or (entry.tep is not None and entry.tep <= now and status != "planned"):
        return "executed"
    return "planned"


def _request_url(request_id: int) -> str | None:
    try:
        return reverse("routine_manager:request_detail", args=[request_id])
    except Exception:  # routine_manager's pages not there yet: the chart shows no link
        return None


def schedule_timeline_data(schedule: Schedule, *, now: datetime | None = None) -> dict[str, Any]:
    """Everything timeline.js needs to draw ``schedule``: entries with their state, twilight, now, altitudes."""
    now = now or timezone.now()
    night_start = schedule.night_start or schedule.plan_start
    night_end = schedule.night_end or schedule.plan_end
    sky_site = _sky_site(schedule.site)
    start, end = _chart_range(sky_site, min(night_start, schedule.plan_start), max(night_end, schedule.plan_end))
    entries = []
    targets = []
    for entry in schedule_planned_entries(schedule):
        sequence = entry.sequence
        label = f"{sequence.target_name} (#{sequence.pk})"
        entries.append({
            "sequence": sequence.pk, "label": label, "target": sequence.target_name, "name": sequence.name,
            "request": sequence.request_id, "request_name": sequence.request.name,
            "request_url": _request_url(sequence.request_id), "start": _iso(entry.tsp), "end": _iso(entry.tep),
            "priority": sequence.priority, "is_alert": sequence.request.is_alert, "slack_s": entry.slack_s,
            "state": _entry_state(entry, now),
        })
        targets.append((label, sequence.ra_deg, sequence.dec_deg))
    sky = _sky_curves(sky_site, start, end, targets)
    return {
        "title": f"Schedule {schedule.pk} · {schedule.site.name}",
        "range": [_iso(start), _iso(end)],
        "plan": [_iso(schedule.plan_start), _iso(schedule.plan_end)],
        "night": [_iso(night_start), _iso(night_end)],
        "now": _iso(now) if start <= now <= end else None,
        "entries": entries,
        **sky,
    }


def simulation_timeline_data(document: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """The timeline of a simulated night (``scheduler.simulate.simulate_night``'s document and result).

    ``document`` must already have been accepted by ``simulate_night`` (so its fields are valid).
    """
    from scheduler.simulate import parse_night

    night = parse_night(document)
    specs = {spec.id: spec for spec in night["specs"]}
    night_start, night_end = night["night_start_utc"], night["night_end_utc"]
    start, end = _chart_range(night["site"], night_start, night_end)
    entries, targets = [], []
    for item in result["schedule"]:
        spec = specs[item["id"]]
        label = str(spec.id)
        entries.append({"sequence": spec.id, "label": label, "target": label, "name": label, "request": None,
                        "request_name": "", "request_url": None, "start": item["start_utc"],
                        "end": item["end_utc"], "priority": spec.priority, "is_alert": spec.is_alert,
                        "slack_s": item.get("slack_late_s", 0), "state": "planned"})
        targets.append((label, spec.ra_deg, spec.dec_deg))
    sky = _sky_curves(night["site"], start, end, targets)
    return {"title": f"Simulated night · {night['site'].name or 'site'}", "range": [_iso(start), _iso(end)],
            "plan": [_iso(night_start), _iso(night_end)], "night": [_iso(night_start), _iso(night_end)],
            "now": None, "entries": entries, **sky}


def schedule_live_version(site: Site | None = None) -> str:
    """The current plan and the statuses of its sequences, condensed (the schedule page polls it and reloads
    when a new plan is made or a planned sequence changes). Two small queries."""
    import hashlib

    schedule = schedule_current(site)
    statuses = list(ScheduleHasSequences.objects.filter(schedule=schedule).order_by("pk")
                    .values_list("sequence_id", "sequence__status")) if schedule else []
    parts = (schedule.pk if schedule else None, statuses)
    return hashlib.sha1(repr(parts).encode(), usedforsecurity=False).hexdigest()[:16]
