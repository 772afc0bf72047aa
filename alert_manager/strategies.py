"""Strategies: which active strategy applies to a notice, and the request it builds for a burst.

A strategy's ``template`` (JSON, edited by administrators in the backoffice)::

    {"sequences": [
        {"name": "immediate", "after_burst_s": [0, 3600],
         "albums": [{"detector": "PyROS Camera", "plans": [{"filter": "R", "exposure_s": 60, "count": 10}]}]},
        {"name": "cadence", "after_burst_s": [3600, 21600],
         "albums": [{"plans": [{"filter": "R", "exposure_s": 120, "count": 5}]}]}
    ]}

A plan may also give ``"binning"`` (1 when absent). Administrators edit it in a form (the strategy's
"Edit template" page, :mod:`alert_manager.strategy_forms`); the backoffice shows the JSON.

``after_burst_s`` is the sequence's validity window counted from the burst time: what is asked
depends on the time since the burst (a sequence whose window has passed is left out; an alert
processed late gets only the later sequences). ``detector`` defaults to the first camera of the
active site. RequestBuilder gives alert sequences the top priority class (10).
"""

from __future__ import annotations

from collections.abc import Sequence as Seq
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.urls import reverse

from pyrosapp.models import AlertEvent, Detector, Request, ScientificProgram, Site, Strategy

if TYPE_CHECKING:
    from alert_manager.tiling import Tile

DEFAULT_MAX_ERROR_DEG = 0.25  # used only when no active strategy matches (nothing is built then)
DEFAULT_FIELD_RADIUS_DEG = 0.15


class FollowUpImpossible(Exception):
    """The strategy cannot produce a request now (no alert program, windows over, invalid template)."""


@dataclass(frozen=True)
class PlanSpec:
    filter_name: str
    exposure_s: float
    count: int
    binning: int = 1


@dataclass(frozen=True)
class AlbumSpec:
    detector: str | None
    plans: tuple[PlanSpec, ...]


@dataclass(frozen=True)
class SequenceSpec:
    name: str
    window_start: datetime
    window_end: datetime
    albums: tuple[AlbumSpec, ...]


def default_template() -> dict[str, Any]:
    """The demo strategy: 10 x 60 s in R at once for the first hour, then 5 x 120 s in R up to 6 h."""
    return {
        "sequences": [
            {"name": "immediate", "after_burst_s": [0, 3600],
             "albums": [{"plans": [{"filter": "R", "exposure_s": 60, "count": 10}]}]},
            {"name": "cadence", "after_burst_s": [3600, 6 * 3600],
             "albums": [{"plans": [{"filter": "R", "exposure_s": 120, "count": 5}]}]},
        ]
    }


def template_errors(template: Any) -> list[str]:
    """What is wrong with a strategy template, for a person (empty when it is usable)."""
    errors: list[str] = []
    if not isinstance(template, dict) or not isinstance(template.get("sequences"), list) or not template["sequences"]:
        return ['the template needs a non-empty "sequences" list']
    for i, seq in enumerate(template["sequences"], start=1):
        where = f"sequence {i}"
        if not isinstance(seq, dict):
            errors.append(f"{where}: not an object")
            continue
        window = seq.get("after_burst_s", [0, 3600])
        if (not isinstance(window, list | tuple) or len(window) != 2
                or not all(isinstance(x, int | float) for x in window) or not 0 <= window[0] < window[1]):
            errors.append(f"{where}: after_burst_s must be [from_s, to_s] with 0 <= from_s < to_s")
        albums = seq.get("albums")
        if not isinstance(albums, list) or not albums:
            errors.append(f"{where}: needs a non-empty albums list")
            continue
        for j, album in enumerate(albums, start=1):
            plans = album.get("plans") if isinstance(album, dict) else None
            if not isinstance(plans, list) or not plans:
                errors.append(f"{where} album {j}: needs a non-empty plans list")
                continue
            for k, plan in enumerate(plans, start=1):
                ok = (isinstance(plan, dict) and isinstance(plan.get("filter"), str)
                      and isinstance(plan.get("exposure_s"), int | float) and plan["exposure_s"] > 0
                      and isinstance(plan.get("count"), int) and plan["count"] >= 1
                      and isinstance(plan.get("binning", 1), int) and plan.get("binning", 1) >= 1)
                if not ok:
                    errors.append(f"{where} album {j} plan {k}: needs filter (text), exposure_s > 0, count >= 1 "
                                  "(and binning >= 1 when given)")
    return errors


@dataclass(frozen=True)
class EquipmentProblem:
    """One thing a template asks that the telescope does not have: where (1-based sequence, album and plan;
    plan None for the album's detector), which field, and the sentence."""

    sequence: int
    album: int
    plan: int | None
    field: str  # "detector", "filter", "exposure_s" or "binning"
    message: str

    def __str__(self) -> str:
        where = f"sequence {self.sequence} album {self.album}" + (f" plan {self.plan}" if self.plan else "")
        return f"{where}: {self.message}"


def equipment_filters() -> dict[str, list[str]]:
    """Each detector's filters (wheel order), ``""`` standing for the active site's first camera, which an
    album naming no detector is observed with: the choices a template may make."""
    detectors = Detector.objects.select_related("filter_wheel").prefetch_related("filter_wheel__filters")
    names = {d.name: [f.name for f in d.filter_wheel.filters.all()] if d.filter_wheel else [] for d in detectors}
    default = default_detector(active_site())
    if default is not None:
        names[""] = names.get(default.name, [])
    return names


def template_equipment_problems(template: dict[str, Any]) -> list[EquipmentProblem]:
    """What a (well-formed) template asks of the telescope that it does not have: an unknown detector, a filter
    not in the detector's wheel, an exposure beyond what a request may ask, a binning the detector cannot do.
    An album naming no detector is observed with the active site's first camera (as ``default_detector``)."""
    from routine_manager.builder import MAX_EXPOSURE_S

    detectors = {d.name: d for d in Detector.objects.select_related("filter_wheel").prefetch_related(
        "filter_wheel__filters")}
    default = default_detector(active_site())
    problems: list[EquipmentProblem] = []
    for i, seq in enumerate(template.get("sequences") or [], start=1):
        for j, album in enumerate(seq.get("albums") or [], start=1):
            name = album.get("detector") or None
            detector = detectors.get(name) if name else (detectors.get(default.name) if default else None)
            if name and detector is None:
                known = ", ".join(sorted(detectors)) or "none"
                problems.append(EquipmentProblem(i, j, None, "detector",
                                                 f"no detector named {name!r} (detectors: {known})"))
                continue
            if detector is None:
                problems.append(EquipmentProblem(i, j, None, "detector",
                                                 "names no detector and the active site has no camera"))
                continue
            wheel = detector.filter_wheel
            filters = [f.name for f in wheel.filters.all()] if wheel else []
            for k, plan in enumerate(album.get("plans") or [], start=1):
                if plan.get("filter") not in filters:
                    problems.append(EquipmentProblem(i, j, k, "filter", (
                        f"{detector.name} has no filter {plan.get('filter')!r} "
                        f"(its filters: {', '.join(filters) or 'none'})")))
                if float(plan.get("exposure_s") or 0) > MAX_EXPOSURE_S:
                    problems.append(EquipmentProblem(i, j, k, "exposure_s", (
                        f"exposure {plan['exposure_s']} s is above {MAX_EXPOSURE_S:g} s")))
                if int(plan.get("binning") or 1) > detector.max_binning:
                    problems.append(EquipmentProblem(i, j, k, "binning",
                                                     f"{detector.name} bins at most {detector.max_binning}x"))
    return problems


def template_equipment_errors(template: dict[str, Any]) -> list[str]:
    """:func:`template_equipment_problems` as sentences ("sequence 1 album 1 plan 2: ...")."""
    return [str(problem) for problem in template_equipment_problems(template)]


def sequence_specs(template: dict[str, Any], *, burst_time: datetime, now: datetime) -> list[SequenceSpec]:
    """The template's sequences still to do at ``now``, windows clipped to start no earlier than now."""
    errors = template_errors(template)
    if errors:
        raise FollowUpImpossible("invalid strategy template: " + "; ".join(errors))
    specs = []
    for i, seq in enumerate(template["sequences"], start=1):
        start_s, end_s = seq.get("after_burst_s", [0, 3600])
        start = max(now, burst_time + timedelta(seconds=start_s))
        end = burst_time + timedelta(seconds=end_s)
        if end <= start:
            continue  # this part of the follow-up is over (late alert, or a slow cadence already past)
        albums = _album_specs(seq)
        specs.append(SequenceSpec(str(seq.get("name") or f"sequence {i}"), start, end, albums))
    return specs


def strategy_for(*, mission: str, notice_type: str) -> Strategy | None:
    """The active strategy for this alert type: the most specific match wins (notice types named >
    missions named > catch-all); ties go to the most recently created."""
    best: tuple[tuple[int, int], Strategy] | None = None
    for strategy in Strategy.objects.filter(is_active=True).order_by("-created", "-pk"):
        if strategy.missions and mission not in strategy.missions:
            continue
        if strategy.notice_types and notice_type not in strategy.notice_types:
            continue
        score = (int(bool(strategy.notice_types)), int(bool(strategy.missions)))
        if best is None or score > best[0]:
            best = (score, strategy)
    return best[1] if best else None


def alert_program() -> ScientificProgram:
    program = (ScientificProgram.objects.filter(is_alert_program=True, is_active=True)
               .select_related("pi").order_by("-priority", "pk").first())
    if program is None:
        raise FollowUpImpossible("no active scientific program is marked as the alert program")
    return program


def active_site() -> Site | None:
    return Site.objects.filter(is_active=True).order_by("pk").first()


def default_detector(site: Site | None) -> Detector | None:
    detectors = Detector.objects.filter(telescope__is_active=True).order_by("pk")
    if site is not None:
        detectors = detectors.filter(telescope__site=site)
    return detectors.first()


def field_radius_deg(detector: Detector | None) -> float:
    """Radius of the circle inscribed in the detector's field (deg)."""
    if detector is None:
        return DEFAULT_FIELD_RADIUS_DEG
    return min(detector.width_px, detector.height_px) * detector.pixel_scale_arcsec / 2.0 / 3600.0


def field_of_view_deg(detector: Detector | None) -> tuple[float, float]:
    """(width, height) of the detector's field in degrees (unbinned pixels x scale)."""
    if detector is None:
        return 2 * DEFAULT_FIELD_RADIUS_DEG, 2 * DEFAULT_FIELD_RADIUS_DEG
    return (detector.width_px * detector.pixel_scale_arcsec / 3600.0,
            detector.height_px * detector.pixel_scale_arcsec / 3600.0)


def _album_specs(seq: dict[str, Any]) -> tuple[AlbumSpec, ...]:
    return tuple(
        AlbumSpec(album.get("detector") or None,
                  tuple(PlanSpec(p["filter"], float(p["exposure_s"]), int(p["count"]), int(p.get("binning", 1)))
                        for p in album["plans"]))
        for album in seq["albums"]
    )


def tile_albums(template: dict[str, Any]) -> tuple[AlbumSpec, ...]:
    """What each tile of a tiling is observed with: the albums and plans of the template's first sequence
    (its ``after_burst_s`` window does not apply: tiles are observed tonight)."""
    errors = template_errors(template)
    if errors:
        raise FollowUpImpossible("invalid strategy template: " + "; ".join(errors))
    return _album_specs(template["sequences"][0])


def tiling_detector(strategy: Strategy, site: Site | None) -> Detector | None:
    """The detector the tiles are observed with (its field sizes the tiles): the one the template's first album
    names, else the first camera of the site."""
    try:
        named = tile_albums(strategy.template)[0].detector
    except FollowUpImpossible:
        named = None
    if named:
        found = Detector.objects.select_related("telescope", "filter_wheel").filter(name__iexact=named).first()
        if found is not None:
            return found
    return default_detector(site or active_site())


def _format_probability(p: float) -> str:
    return f"{p:.2f}" if p >= 0.01 else f"{p:.1e}"


def tile_sequence_name(event_name: str, tile: Tile) -> str:
    return f"{event_name} tile {tile.rank} (P={_format_probability(tile.probability)})"


def build_tiles_request(
    *, event: AlertEvent, strategy: Strategy, tiles: Seq[Tile], window_end: datetime, now: datetime,
    site: Site | None, name: str,
) -> Request:
    """One request whose sequences are ``tiles`` in rank order (the caller holds the event's lock).

    Each sequence points at its tile's centre, with the template's first albums and plans, inside
    ``[now, window_end]`` (tonight). Alert sequences all have the top priority, so the order is given by
    the sequence order and by staggered preferred starts (a preference, without tolerances: tile k is
    preferred once tiles 1..k-1 could be done, and not before it rises); the first tile is pre-empted by
    the caller when it is observable now.
    """
    from routine_manager.builder import ALERT_PRIORITY, RequestBuilder, RequestInvalid
    from routine_manager.duration import AlbumTiming, PlanTiming, TelescopeTiming, sequence_duration_s

    if not tiles:
        raise FollowUpImpossible("no tile to observe")
    albums = tile_albums(strategy.template)
    program = alert_program()
    detector = tiling_detector(strategy, site)
    builder = RequestBuilder(owner=program.pi, program=program, name=name, is_alert=True, alert_event=event)
    step_s = 0.0
    if detector is not None:
        telescope = detector.telescope
        step_s = sequence_duration_s(
            TelescopeTiming(telescope.slew_rate_deg_s, telescope.settle_s, telescope.acquisition_s),
            [AlbumTiming(detector.readout_s, 0.0, [PlanTiming(p.filter_name, p.exposure_s, p.count) for p in a.plans])
             for a in albums],
            slew_deg=max(tiles[0].fov_width_deg, tiles[0].fov_height_deg))
    cursor = now
    for tile in tiles:
        start = max(cursor, tile.observable_from_utc)
        preferred = min(start, window_end - timedelta(seconds=step_s))
        sequence = builder.add_sequence(
            name=tile_sequence_name(event.name, tile), target_name=f"{event.name} tile {tile.rank}",
            ra_deg=tile.ra_deg % 360.0, dec_deg=tile.dec_deg, window_start=now, window_end=window_end,
            priority=ALERT_PRIORITY, preferred_start=preferred if preferred >= now else None,
            min_altitude_deg=strategy.min_altitude_deg,
        )
        cursor = start + timedelta(seconds=step_s)
        for album_spec in albums:
            detector_name = album_spec.detector or (detector.name if detector else None)
            if detector_name is None:
                raise FollowUpImpossible("no detector on the active site to observe with")
            album = sequence.add_album(detector=detector_name)
            for plan in album_spec.plans:
                album.add_plan(filter=plan.filter_name, exposure_s=plan.exposure_s, count=plan.count,
                               binning=plan.binning)
    try:
        request = builder.save(submit=True, check_observability=False, now=now)
    except RequestInvalid as exc:
        raise FollowUpImpossible(f"the tiling request built by strategy {strategy.name!r} is invalid: {exc}") from exc
    notify_triggered(event=event, strategy=strategy, ra_deg=tiles[0].ra_deg % 360.0, dec_deg=tiles[0].dec_deg,
                     now=now, what=f"{len(tiles)} tiles submitted (first tile's position)")
    return request


def build_follow_up_request(
    *, event: AlertEvent, strategy: Strategy, ra_deg: float, dec_deg: float, now: datetime, site: Site | None = None
) -> Request:
    """Build and submit the event's request with common.RequestBuilder (the caller holds the event's lock)."""
    from routine_manager.builder import ALERT_PRIORITY, RequestBuilder, RequestInvalid

    if event.burst_time is None:
        raise FollowUpImpossible("the event has no burst time to count the strategy's windows from")
    specs = sequence_specs(strategy.template, burst_time=event.burst_time, now=now)
    if not specs:
        raise FollowUpImpossible(f"every window of strategy {strategy.name!r} has passed for this burst")
    program = alert_program()
    detector = default_detector(site or active_site())
    builder = RequestBuilder(owner=program.pi, program=program, name=f"{event.name} follow-up",
                             is_alert=True, alert_event=event)
    for spec in specs:
        sequence = builder.add_sequence(
            name=f"{event.name} {spec.name}", target_name=event.name, ra_deg=ra_deg % 360.0, dec_deg=dec_deg,
            window_start=spec.window_start, window_end=spec.window_end, priority=ALERT_PRIORITY,
            min_altitude_deg=strategy.min_altitude_deg,
        )
        for album_spec in spec.albums:
            detector_name = album_spec.detector or (detector.name if detector else None)
            if detector_name is None:
                raise FollowUpImpossible("no detector on the active site to observe with")
            album = sequence.add_album(detector=detector_name)
            for plan in album_spec.plans:
                album.add_plan(filter=plan.filter_name, exposure_s=plan.exposure_s, count=plan.count,
                               binning=plan.binning)
    try:
        request = builder.save(submit=True, check_observability=False)
    except RequestInvalid as exc:
        raise FollowUpImpossible(f"the request built by strategy {strategy.name!r} is invalid: {exc}") from exc
    notify_triggered(event=event, strategy=strategy, ra_deg=ra_deg, dec_deg=dec_deg, now=now)
    return request


def notify_triggered(*, event: AlertEvent, strategy: Strategy, ra_deg: float, dec_deg: float, now: datetime,
                     what: str = "follow-up request submitted") -> None:
    """Tell whoever asked for GRB notifications (after commit, by a Celery message published from a thread:
    the alert path, whose pre-emption follows the commit, waits neither for a mail server nor for the broker)."""
    from common import notifications

    since = ""
    if event.burst_time is not None:
        minutes = (now - event.burst_time).total_seconds() / 60.0
        since = f"{minutes:.1f} min after the trigger" if minutes < 120 else f"{minutes / 60.0:.1f} h after the trigger"
    from common import formats

    error = f" ± {formats.angle(event.error_deg)}" if event.error_deg else ""
    trigger = formats.utc(event.burst_time) if event.burst_time else "unknown"
    notifications.notify(
        "grb_triggered", subject=f"{event.name}: {what}",
        body=(f"{event.name} ({', '.join(event.missions or []) or 'alert'}) at RA {formats.ra(ra_deg)}, "
              f"Dec {formats.dec(dec_deg)} ({ra_deg:.4f}°, {dec_deg:+.4f}°){error}; trigger {trigger}; "
              f"strategy {strategy.name!r}: {what}" + (f", {since}" if since else "") + "."),
        link=reverse("alert_manager:event_detail", args=[event.pk]), background=True)
