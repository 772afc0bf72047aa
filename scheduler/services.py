"""Writes of the scheduler: build the night plan from the database, store it, move the statuses.

``schedule_make`` is the one entry point that plans (the Celery task ``pyros.scheduler.make_schedule``
calls it); other apps never call it directly but ``schedule_request_replan``, which coalesces bursts of
changes into one run (see there).

The planning itself is the pure :func:`scheduler.algorithm.schedule_night`; this module only turns rows
into :class:`~scheduler.algorithm.SequenceSpec` and the result back into rows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Prefetch
from django.utils import timezone

from pyrosapp.models import (
    Album,
    Allocation,
    FilterWheel,
    Plan,
    Schedule,
    ScheduleHasSequences,
    Sequence,
    Site,
    Telescope,
)
from routine_manager import lifecycle
from routine_manager.duration import AlbumTiming, PlanTiming, TelescopeTiming, sequence_duration_s
from routine_manager.services import sequence_set_status
from scheduler.algorithm import RunningSequence, ScheduleResult, SequenceSpec, schedule_night
from scheduler.overheads import SlewModel
from scheduler.reasons import Reason
from sky.observability import Site as SkySite
from sky.observability import night_bounds

log = logging.getLogger("pyros.scheduler")

# Requests whose waiting sequences are planned. An executing request still has waiting sequences when
# it has several (the lifecycle rolls it back to scheduled/submitted once the running one ends).
SCHEDULABLE_REQUEST_STATUSES = lifecycle.REQUEST_SCHEDULABLE
WAITING_SEQUENCE_STATUSES = lifecycle.SEQUENCE_WAITING
REASON_MAX_CHARS = 500  # ScheduleHasSequences.rejection_reason / Sequence.status_reason


@dataclass
class ScheduleMakeOutcome:
    """What a call of :func:`schedule_make` did: a new schedule, or why it did not make one."""

    schedule: Schedule | None = None
    skipped: str = ""
    planned: int = 0
    rejected: int = 0
    wall_s: float = 0.0
    status_conflicts: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"schedule_id": self.schedule.pk if self.schedule else None, "skipped": self.skipped,
                "planned": self.planned, "rejected": self.rejected, "wall_s": round(self.wall_s, 4)}


# --------------------------------------------------------------------------------------------
# Asking for a new plan (debounced)
# --------------------------------------------------------------------------------------------
def schedule_request_replan(*, reason: str, delay_s: float = 2.0, site_id: int | None = None) -> None:
    """Ask for a new plan soon: call it whenever something the plan depends on changed.

    Bursts are coalesced without any shared cache: the task runs ``delay_s`` after the request and
    skips itself when a schedule was already computed from inputs read after this request was made
    (that run has seen this change). So N requests within ``delay_s`` give one run, and a request
    that arrives while a run is computing still gets its own run. The task is enqueued after the
    current transaction commits, so the run sees the change that caused the request.
    """
    from scheduler.tasks import make_schedule

    requested_at = timezone.now()
    kwargs = {"reason": reason[:200], "requested_at": requested_at.isoformat(), "site_id": site_id}
    transaction.on_commit(lambda: make_schedule.apply_async(kwargs=kwargs, countdown=max(0.0, delay_s)))
    log.debug("replan requested (%s), runs in %.1f s", reason, delay_s)


def _inputs_at(schedule: Schedule | None) -> datetime | None:
    if schedule is None or not schedule.metrics.get("inputs_at"):
        return None
    return datetime.fromisoformat(schedule.metrics["inputs_at"])


def _latest_schedule(site: Site) -> Schedule | None:
    return Schedule.objects.filter(site=site).order_by("-created", "-pk").first()


# --------------------------------------------------------------------------------------------
# Building the input of the algorithm
# --------------------------------------------------------------------------------------------
def _active_site(site_id: int | None) -> Site | None:
    sites = Site.objects.filter(pk=site_id) if site_id is not None else Site.objects.filter(is_active=True)
    return sites.order_by("pk").first()


def _slew_model(site: Site) -> tuple[SlewModel, Telescope | None]:
    telescope = Telescope.objects.filter(site=site, is_active=True).order_by("pk").first()
    if telescope is None:
        return SlewModel(), None
    wheel_change_s = (FilterWheel.objects.filter(telescope=telescope).order_by("-change_time_s")
                      .values_list("change_time_s", flat=True).first())
    model = SlewModel(rate_deg_s=telescope.slew_rate_deg_s, settle_s=telescope.settle_s,
                      filter_change_s=wheel_change_s or 0.0)
    return model, telescope


def _plans_of(sequence: Sequence) -> list[tuple[str, list[Plan], float, float]]:
    """(detector name, plans in order, readout_s, filter change_s) per album, from prefetched rows."""
    albums = []
    for album in sequence.albums.all():
        wheel = album.detector.filter_wheel
        albums.append((album.detector.name, list(album.plans.all()), album.detector.readout_s,
                       wheel.change_time_s if wheel is not None else 0.0))
    return albums


def sequence_duration_for_schedule_s(sequence: Sequence, telescope: Telescope | None) -> float:
    """The block length to reserve: the stored estimate, else computed from the albums and plans."""
    if sequence.estimated_duration_s > 0:
        return sequence.estimated_duration_s
    albums = _plans_of(sequence)
    if not any(plans for _, plans, _, _ in albums):
        return 0.0
    timing = TelescopeTiming(
        slew_rate_deg_s=telescope.slew_rate_deg_s if telescope else 1.0,
        settle_s=telescope.settle_s if telescope else 0.0,
        acquisition_s=telescope.acquisition_s if telescope else 0.0,
    )
    return sequence_duration_s(timing, [
        AlbumTiming(readout_s=readout_s, filter_change_s=change_s,
                    plans=[PlanTiming(filter_name=p.filter.name, exposure_s=p.exposure_s, count=p.count) for p in plans])
        for _, plans, readout_s, change_s in albums
    ])


def _filters_of(sequence: Sequence) -> tuple[str, ...]:
    """Filter names in the order the sequence uses them (the first album's plans: the main channel)."""
    for _, plans, _, _ in _plans_of(sequence):
        if plans:
            return tuple(p.filter.name for p in plans)
    return ()


def _spec_id(sequence: Sequence) -> str:
    # Reasons quote these ids ("displaced by higher-priority sequences #12 M42 ..."): make them readable.
    return f"#{sequence.pk} {sequence.target_name}"


def _sequence_spec(sequence: Sequence, duration_s: float, site: Site) -> SequenceSpec:
    request = sequence.request
    min_altitude = sequence.min_altitude_deg
    if min_altitude is None:  # no limit of its own: the site's horizon (trees, dome slit)
        min_altitude = site.horizon_min_altitude_deg
    # A preferred start with both tolerances at their default 0 would pin the block to one exact second,
    # which overheads almost never allow: without tolerances the preferred start is only a preference.
    has_tolerances = sequence.preferred_start is not None and (sequence.tolerance_early_s > 0
                                                               or sequence.tolerance_late_s > 0)
    return SequenceSpec(
        id=_spec_id(sequence),
        ra_deg=sequence.ra_deg,
        dec_deg=sequence.dec_deg,
        duration_s=duration_s,
        priority=sequence.priority,
        program_priority=request.program.priority,
        is_alert=request.is_alert,
        program=request.program.name,
        earliest_start_utc=sequence.window_start,
        # The window bounds the whole block; the algorithm bounds the START.
        latest_start_utc=sequence.window_end - timedelta(seconds=duration_s),
        preferred_start_utc=sequence.preferred_start,
        tolerance_early_s=sequence.tolerance_early_s if has_tolerances else None,
        tolerance_late_s=sequence.tolerance_late_s if has_tolerances else None,
        min_altitude_deg=min_altitude,
        max_airmass=sequence.max_airmass,
        min_moon_separation_deg=sequence.min_moon_separation_deg,
        filters=_filters_of(sequence),
    )


def _allocations_left_s(programs: Iterable[int], now: datetime) -> dict[str, float]:
    """Observing time each program has not used yet in the current period.

    ``reserved_s`` is not subtracted: it is the time promised to the very requests being planned here.
    Programs without an allocation for the period are not limited by the scheduler (submission checks it).
    """
    left: dict[str, float] = {}
    allocations = (Allocation.objects.filter(program_id__in=set(programs), period__start__lte=now,
                                             period__end__gt=now).select_related("program"))
    for allocation in allocations:
        left[allocation.program.name] = max(0.0, allocation.allocated_s - allocation.used_s)
    return left


def _running_sequence(site: Site, now: datetime) -> tuple[Sequence | None, RunningSequence | None]:
    # One telescope per site: at most one sequence executes at a time (the majordome guarantees it).
    running = (Sequence.objects.filter(status=Sequence.Status.EXECUTING)
               .prefetch_related(_album_prefetch()).order_by("-started_at", "pk").first())
    if running is None:
        return None, None
    start = running.started_at or running.planned_start or now
    duration_s = running.estimated_duration_s or 0.0
    expected_end = running.planned_end or (start + timedelta(seconds=duration_s))
    # Running late: assume it ends now; the majordome asks for a new plan while it keeps running late.
    end = max(expected_end, now)
    return running, RunningSequence(id=_spec_id(running), ra_deg=running.ra_deg, dec_deg=running.dec_deg,
                                     start_utc=start, end_utc=end, filters=_filters_of(running))


def _album_prefetch() -> Prefetch:
    return Prefetch("albums", queryset=(
        Album.objects.select_related("detector__filter_wheel")
        .prefetch_related(Prefetch("plans", queryset=Plan.objects.select_related("filter").order_by("order", "id")))
        .order_by("order", "id")))


# --------------------------------------------------------------------------------------------
# Status moves
# --------------------------------------------------------------------------------------------
def _sequence_move(sequence_id: int, old: str, new: str, *, reason: str = "", **fields) -> bool:
    """Move one sequence to ``new`` (with its planned times); False when another process moved it first.

    A status change goes through routine_manager's ``sequence_set_status`` (transition table, conditional
    update, roll-up of the request: submitted <-> scheduled). Re-planning at other times, or rejecting again
    with another reason, is not a transition: a conditional update of the fields, guarded by the status.
    """
    if old == new:
        return Sequence.objects.filter(pk=sequence_id, status=old).update(status_reason=reason, **fields) == 1
    try:
        sequence_set_status(sequence_id=sequence_id, status=new, reason=reason, **fields)
    except lifecycle.InvalidStateChange as exc:
        log.info("sequence %d not moved to %s: %s", sequence_id, new, exc)
        return False
    if not reason:  # sequence_set_status keeps the previous reason ("not observable ...") when given none
        Sequence.objects.filter(pk=sequence_id, status=new).exclude(status_reason="").update(status_reason="")
    return True


# --------------------------------------------------------------------------------------------
# Making a schedule
# --------------------------------------------------------------------------------------------
def schedule_make(*, reason: str = "", requested_at: datetime | None = None, site_id: int | None = None,
                  now: datetime | None = None) -> ScheduleMakeOutcome:
    """Plan the rest of the current (or next) night of the active site and store it as the current schedule.

    ``requested_at``: when the change that asked for this run happened; the run is skipped when a stored
    schedule was computed from inputs read after it (see :func:`schedule_request_replan`).
    The sequence executing now is kept where it is, first, and nothing is planned over it.
    """
    wall_start = time.perf_counter()
    site = _active_site(site_id)
    if site is None:
        log.warning("no schedule made (%s): no active site", reason or "no reason given")
        return ScheduleMakeOutcome(skipped="no active site")
    if requested_at is not None:
        covered_at = _inputs_at(_latest_schedule(site))
        if covered_at is not None and covered_at >= requested_at:
            log.debug("replan (%s) skipped: schedule from inputs of %s already covers it", reason, covered_at)
            return ScheduleMakeOutcome(skipped="already covered by a newer schedule")

    inputs_at = timezone.now()
    now = now or inputs_at
    sky_site = SkySite(latitude_deg=site.latitude_deg, longitude_deg=site.longitude_deg,
                       elevation_m=site.elevation_m, name=site.name)
    try:
        night_start, night_end = night_bounds(sky_site, now, twilight_deg=site.twilight_deg)
    except ValueError as exc:  # polar day: no night within a day
        log.warning("no schedule made for %s (%s): %s", site, reason, exc)
        return ScheduleMakeOutcome(skipped=str(exc))
    plan_start = max(now, night_start)
    slew_model, telescope = _slew_model(site)

    running_row, running = _running_sequence(site, now)
    candidates = list(
        Sequence.objects.filter(status__in=WAITING_SEQUENCE_STATUSES, request__status__in=SCHEDULABLE_REQUEST_STATUSES,
                                window_start__lt=night_end, window_end__gt=plan_start)
        .select_related("request__program").prefetch_related(_album_prefetch()).order_by("pk"))
    by_spec_id: dict[str, Sequence] = {}
    specs: list[SequenceSpec] = []
    no_duration: dict[str, Reason] = {}
    for sequence in candidates:
        duration_s = sequence_duration_for_schedule_s(sequence, telescope)
        by_spec_id[_spec_id(sequence)] = sequence
        if duration_s <= 0:
            no_duration[_spec_id(sequence)] = Reason.of("no_exposures")
            continue
        specs.append(_sequence_spec(sequence, duration_s, site))

    algorithm_start = time.perf_counter()
    result: ScheduleResult = schedule_night(
        specs, sky_site, night_start, night_end, slew_model, now_utc=now, running=running,
        allocations_s=_allocations_left_s({s.request.program_id for s in candidates}, now),
        twilight_deg=site.twilight_deg)
    algorithm_s = time.perf_counter() - algorithm_start
    result.reasons.update(no_duration)
    result.reasons.update({spec_id: _named(reason, by_spec_id) for spec_id, reason in result.reasons.items()})

    outcome = _store(site=site, result=result, by_spec_id=by_spec_id, running_row=running_row,
                     reason=reason, inputs_at=inputs_at, plan_start=plan_start, plan_end=night_end,
                     night=(night_start, night_end), algorithm_s=algorithm_s, wall_start=wall_start)
    if outcome.schedule is not None:
        log.info("schedule %d made (%s): %d planned, %d rejected of %d candidates, %s; algorithm %.3f s, "
                 "total %.3f s", outcome.schedule.pk, reason or "no reason given", outcome.planned,
                 outcome.rejected, len(candidates), "keeping the running sequence" if running else "nothing running",
                 algorithm_s, outcome.wall_s)
    return outcome


def _named(reason: Reason, by_spec_id: dict[str, Sequence]) -> Reason:
    """The sequences a reason names (``by``: those in the way), with their number, target and request name."""
    if "by" not in reason.values:
        return reason
    named = []
    for other in reason.values["by"]:
        row = by_spec_id.get(other.get("id"))
        named.append(other if row is None else {**other, "sequence": row.pk, "target": row.target_name,
                                                "request": row.request.name})
    return Reason(reason.code, {**reason.values, "by": named})


def _store(*, site: Site, result: ScheduleResult, by_spec_id: dict[str, Sequence], running_row: Sequence | None,
           reason: str, inputs_at: datetime, plan_start: datetime, plan_end: datetime,
           night: tuple[datetime, datetime], algorithm_s: float, wall_start: float) -> ScheduleMakeOutcome:
    planned = [e for e in result.entries if not e.running and e.id in by_spec_id]
    with transaction.atomic():
        # One writer per site at a time (a row lock on PostgreSQL; SQLite's IMMEDIATE transactions
        # serialise writers anyway).
        Site.objects.select_for_update().filter(pk=site.pk).first()
        newer = _inputs_at(_latest_schedule(site))
        if newer is not None and newer > inputs_at:
            # A concurrent run read fresher inputs and stored its plan first: ours is out of date.
            return ScheduleMakeOutcome(skipped="a concurrent run stored a fresher schedule",
                                       wall_s=time.perf_counter() - wall_start)
        Schedule.objects.filter(site=site, status=Schedule.Status.CURRENT).update(status=Schedule.Status.SUPERSEDED)
        metrics = {key: value for key, value in result.metrics.items() if isinstance(value, (int, float))}
        metrics.update(inputs_at=inputs_at.isoformat(), algorithm_s=algorithm_s, candidates=len(by_spec_id),
                       rejected=len(result.reasons), running_sequence=running_row.pk if running_row else None,
                       # Why each rejected sequence is not planned, as code and values (the API gives them;
                       # rejection_reason holds the same in words).
                       reasons={str(by_spec_id[spec_id].pk): reason.as_dict()
                                for spec_id, reason in result.reasons.items() if spec_id in by_spec_id})
        schedule = Schedule.objects.create(site=site, plan_start=plan_start, plan_end=max(plan_end, plan_start),
                                           night_start=night[0], night_end=night[1], status=Schedule.Status.CURRENT,
                                           trigger=reason[:200], metrics=metrics)
        rows = []
        if running_row is not None:
            running_entry = next(e for e in result.entries if e.running)
            rows.append(ScheduleHasSequences(schedule=schedule, sequence=running_row,
                                             status=ScheduleHasSequences.Status.PLANNED,
                                             tsp=running_entry.start_utc, tep=running_entry.end_utc))
        for entry in planned:
            rows.append(ScheduleHasSequences(schedule=schedule, sequence=by_spec_id[entry.id],
                                             status=ScheduleHasSequences.Status.PLANNED, tsp=entry.start_utc,
                                             tep=entry.end_utc, slack_s=float(entry.slack_late_s)))
        for spec_id, reason in sorted(result.reasons.items(), key=lambda item: by_spec_id[item[0]].pk
                                      if item[0] in by_spec_id else 0):
            if spec_id in by_spec_id:
                rows.append(ScheduleHasSequences(schedule=schedule, sequence=by_spec_id[spec_id],
                                                 status=ScheduleHasSequences.Status.REJECTED,
                                                 rejection_reason=reason.text[:REASON_MAX_CHARS]))
        ScheduleHasSequences.objects.bulk_create(rows)
        conflicts = _apply_statuses(result=result, by_spec_id=by_spec_id, planned=planned)
        wall_s = time.perf_counter() - wall_start
        Schedule.objects.filter(pk=schedule.pk).update(wall_s=wall_s)
        schedule.wall_s = wall_s
    for conflict in conflicts:
        log.info("schedule %d: %s", schedule.pk, conflict)
    return ScheduleMakeOutcome(schedule=schedule, planned=len(planned), rejected=len(result.reasons),
                               wall_s=wall_s, status_conflicts=conflicts)


def _apply_statuses(*, result: ScheduleResult, by_spec_id: dict[str, Sequence], planned: list) -> list[str]:
    conflicts: list[str] = []
    in_plan: set[int] = set()
    for entry in planned:
        sequence = by_spec_id[entry.id]
        in_plan.add(sequence.pk)
        if not _sequence_move(sequence.pk, sequence.status, Sequence.Status.PLANNED, planned_start=entry.start_utc,
                              planned_end=entry.end_utc):
            conflicts.append(f"sequence {sequence.pk} moved by another process before it could be planned")
    for spec_id, reason in result.reasons.items():
        sequence = by_spec_id.get(spec_id)
        if sequence is None:
            continue
        in_plan.add(sequence.pk)
        if not _sequence_move(sequence.pk, sequence.status, Sequence.Status.UNPLANNED, planned_start=None,
                              planned_end=None, reason=reason.text[:REASON_MAX_CHARS]):
            conflicts.append(f"sequence {sequence.pk} moved by another process before it could be unplanned")
    # Planned by an earlier schedule but not a candidate any more (its window left the night): waiting again.
    for pk in Sequence.objects.filter(status=Sequence.Status.PLANNED).exclude(pk__in=in_plan) \
            .values_list("pk", flat=True):
        _sequence_move(pk, Sequence.Status.PLANNED, Sequence.Status.PENDING, planned_start=None, planned_end=None,
                       reason=Reason.of("window_not_tonight").text)
    return conflicts


# --------------------------------------------------------------------------------------------
# Simulation of an uploaded night (no database)
# --------------------------------------------------------------------------------------------
# The largest shared set (N=1000) is 0.4 MB and plans in about a second: 2 MB / 2000 sequences bound the
# work one upload can ask of the web process.
SIMULATION_MAX_BYTES = 2 * 1024 * 1024
SIMULATION_MAX_SEQUENCES = 2000
# One night; a longer range would make the sky grid (and the web process) as big as the upload asks.
SIMULATION_MAX_NIGHT = timedelta(hours=24)


def schedule_simulate_upload(*, content: bytes) -> tuple[dict, dict]:
    """Plan the night of an uploaded JSON file: (the document, the result of ``simulate_night``).

    Raises :class:`scheduler.simulate.NightFileError` with a message for a person on any bad input.
    """
    import json
    import math

    from scheduler.simulate import NightFileError, parse_night, simulate_night

    if len(content) > SIMULATION_MAX_BYTES:
        raise NightFileError(f"the file is too big ({len(content) / 1e6:.1f} MB): at most "
                             f"{SIMULATION_MAX_BYTES / 1e6:.0f} MB")
    if not content.strip():
        raise NightFileError("the file is empty")
    try:
        document = json.loads(content.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise NightFileError(f"the file is not UTF-8 text (byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise NightFileError(f"the file is not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from exc
    except RecursionError as exc:
        raise NightFileError("the file is not JSON that can be read: nested too deeply") from exc
    if isinstance(document, dict) and isinstance(document.get("sequences"), list) \
            and len(document["sequences"]) > SIMULATION_MAX_SEQUENCES:
        raise NightFileError(f"too many sequences ({len(document['sequences'])}): at most {SIMULATION_MAX_SEQUENCES}")
    try:
        night = parse_night(document)
        site = night["site"]
        if not (math.isfinite(site.latitude_deg) and -90 <= site.latitude_deg <= 90
                and math.isfinite(site.longitude_deg) and -180 <= site.longitude_deg <= 360
                and math.isfinite(site.elevation_m)):
            raise NightFileError("meta.site: latitude must be -90..90 and longitude -180..360 degrees")
        if night["night_end_utc"] - night["night_start_utc"] > SIMULATION_MAX_NIGHT:
            raise NightFileError("meta.night: a night lasts at most 24 h (end_utc - start_utc)")
        result = simulate_night(document)
    except NightFileError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, ArithmeticError, OverflowError) as exc:
        # A document that passed the format checks but still upsets the planner: say so, keep the trace in the log.
        log.warning("simulation of an uploaded night failed", exc_info=True)
        raise NightFileError(f"the night could not be planned: {exc}") from exc
    return document, result
