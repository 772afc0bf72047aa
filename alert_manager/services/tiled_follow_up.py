"""Large localisations: a HEALPix sky map, or an error circle wider than the camera's field, observed as tiles.

When the matching strategy has ``tile_large_localisations``, a notice with an embedded sky map (LVK
``event.skymap``, a gcn-schema ``healpix_file`` such as Swift BAT-GUANO's) or an error circle larger than the
field (radius > half the smaller side of the detector's field, or beyond the strategy's ``max_error_deg``)
becomes ONE request whose sequences are the tiles of :func:`alert_manager.tiling.plan_tiles` from the active
site, from now to the end of tonight, most probable first (sequence order and staggered preferred starts); the
first tile pre-empts the telescope like a point alert when it is observable now. The plan is kept in
``AlertEvent.tiles`` (:mod:`alert_manager.tile_entries`) and the notice holding the localisation in
``AlertEvent.skymap_alert``.

An update with a new map (or a new circle) re-plans with :func:`alert_manager.tiling.replan_tiles`, leaving
out the tiles already observed (sequence completed, partially completed or executing). routine_manager
offers no way to add sequences to a submitted request, so a re-plan that changes the tiles cancels the
waiting sequences of the current request (through ``routine_manager.services.sequence_set_status``: an
executing tile runs on, observed ones are kept) and builds a new request for the new plan's tiles; the event
then points at the new request, and its earlier requests keep the observed tiles (``Request.alert_event``).
A re-plan that gives the same waiting tiles in the same order only updates their probabilities.

A map that cannot be used (corrupt, too large, not HEALPix, a placeholder, a URL only) or a plan without any
observable tile makes the event "not actionable" with the reason; nothing escapes. A later notice with a
pointable position (a Swift or SVOM position for a GBM burst) supersedes the tiling: the waiting tiles are
cancelled and the point follow-up starts (``follow_up._act``).

Point alerts pay nothing: ``follow_up._act`` calls here only when the strategy tiles or the event has tiles.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from alert_manager import strategies, tiling
from alert_manager.notices_json import NoticeRejected, skymap_bytes
from alert_manager.services import follow_up
from alert_manager.services._constants import _EVENT_OPEN_STATES, _OPEN_SEQUENCE_STATES, VISIBILITY_HOURS
from alert_manager.tile_entries import (
    OBSERVED_STATUSES,
    observed_indices,
    sequence_ids,
    tile_entry,
    tile_from_entry,
)
from alert_manager.triage import TriageDecision, visibility
from alert_manager.voevent import ParsedNotice
from pyrosapp.models import Alert, AlertEvent, Sequence, Site, Strategy

log = logging.getLogger("pyros.alert_manager")

# Limits on a sky map (decoded, decompressed bytes; pixels): what the alerts worker accepts to read.
MAP_MAX_BYTES = tiling.DEFAULT_MAX_BYTES
MAP_MAX_PIXELS = tiling.DEFAULT_MAX_PIXELS
# A request holds at most this many sequences (routine_manager.builder.MAX_SEQUENCES_PER_REQUEST).
MAX_TILES_PER_REQUEST = 20


@dataclass(frozen=True)
class _Localisation:
    kind: str  # "map" or "circle"
    circle: tuple[float, float, float] | None = None
    problem: str | None = None  # why the notice's map cannot be used (then nothing is tiled)


def has_localisation(notice: ParsedNotice) -> bool:
    """Cheap: whether a notice carries something a tiling strategy could tile (a map, even a bad one, or a
    position). Used by the bulk path to send such notices the per-alert way."""
    info = notice.params.get("skymap") if isinstance(notice.params, dict) else None
    return bool(notice.position_usable or (isinstance(info, dict) and (info.get("present") or info.get("invalid_field"))))


def is_tiled(event: AlertEvent) -> bool:
    """Whether the event's current request is a tiling (rather than a pointed follow-up)."""
    return event.request_id is not None and any(e.get("request") == event.request_id for e in event.tiles or ())


def _localisation(notice: ParsedNotice) -> _Localisation | None:
    info = notice.params.get("skymap") if isinstance(notice.params, dict) else None
    info = info if isinstance(info, dict) else {}
    if info.get("present") and str(info.get("format", "")).startswith("base64"):
        return _Localisation("map")
    if notice.position_usable and notice.error_deg is not None and notice.ra_deg is not None:
        return _Localisation("circle", circle=(notice.ra_deg, notice.dec_deg, notice.error_deg))
    if info.get("invalid_field"):
        return _Localisation("map", problem=f"sky map rejected: the notice's {info['invalid_field']} is not a base64 "
                                            "FITS file")
    if info.get("present") and info.get("format") == "url":
        return _Localisation("map", problem=f"the sky map is only given by URL ({str(info.get('url'))[:200]}): "
                                            "PyROS does not download maps")
    return None


def _lvk_not_significant(notice: ParsedNotice) -> bool:
    if notice.mission != "LVK":
        return False
    event = ((notice.params.get("json") or {}) if isinstance(notice.params, dict) else {}).get("event")
    return isinstance(event, dict) and event.get("significant") is False


def _load_map(alert: Alert) -> tiling.SkyMap:
    """The notice's sky map (raises SkyMapRejected with the reason)."""
    try:
        data = skymap_bytes(bytes(alert.raw_xml), topic=alert.kafka_topic)
    except NoticeRejected as exc:
        raise tiling.SkyMapRejected(f"unreadable notice: {exc.reason}") from None
    if data is None:
        raise tiling.SkyMapRejected("the notice has no embedded base64 FITS sky map")
    return tiling.load_skymap(data, max_bytes=MAP_MAX_BYTES, max_pixels=MAP_MAX_PIXELS)


def _not_actionable(event: AlertEvent, decision: TriageDecision, reason: str) -> follow_up._Outcome:
    """The notice cannot be tiled: the event says why, unless it is being followed already."""
    if event.request_id is not None:
        reason = f"{reason}; the current follow-up is kept"
    follow_up._set_event_status(event, AlertEvent.Status.NOT_ACTIONABLE, reason, only_from=_EVENT_OPEN_STATES)
    return follow_up._Outcome(Alert.Status.PROCESSED, reason, decision.kind)


def follow_up_tiles(*, alert: Alert, notice: ParsedNotice, decision: TriageDecision, event: AlertEvent,
                    strategy: Strategy | None, timings: dict[str, float]) -> follow_up._Outcome | None:
    """Tile the notice's localisation, or re-plan the event's tiles. None: not a tiling case (the caller goes on
    with the point follow-up's decisions)."""
    if decision.kind in ("ignored", "retraction") or event.status == AlertEvent.Status.RETRACTED:
        return None
    if strategy is None or not strategy.triggers or not strategy.tile_large_localisations:
        return None
    tiled = is_tiled(event)
    if event.request_id is not None and not tiled:
        return None  # a pointed follow-up exists: a wider localisation changes nothing
    source = _localisation(notice)
    if source is None:
        return None
    site = strategies.active_site()
    if site is None:
        return None  # the point path says "no active site"
    detector = strategies.tiling_detector(strategy, site)
    fov_w, fov_h = strategies.field_of_view_deg(detector)
    if source.kind == "circle":
        radius = source.circle[2]
        if radius <= min(fov_w, fov_h) / 2.0 and radius <= strategy.max_error_deg:
            return None  # fits the field: pointed (and it supersedes a tiling, see follow_up._act)
    if _lvk_not_significant(notice):
        return _not_actionable(event, decision, "LVK event not significant (event.significant = false): not tiled")
    if source.problem:
        return _not_actionable(event, decision, source.problem)
    skymap = None
    if source.kind == "map":
        try:
            skymap = _load_map(alert)
        except tiling.SkyMapRejected as exc:
            return _not_actionable(event, decision, f"sky map rejected: {exc.reason}")
        timings["skymap_loaded"] = time.time()
    now = timezone.now()
    try:
        _night_start, night_end = _night(site, now)
    except ValueError as exc:
        return _not_actionable(event, decision, f"no night to tile in: {exc}")
    min_altitude = max(strategy.min_altitude_deg, site.horizon_min_altitude_deg)
    kwargs: dict[str, Any] = dict(site=(site.latitude_deg, site.longitude_deg, site.elevation_m), start_utc=now,
                                  end_utc=night_end, min_altitude_deg=min_altitude,
                                  max_tiles=min(int(strategy.max_tiles) or 1, MAX_TILES_PER_REQUEST),
                                  coverage=strategy.tile_coverage, sun_max_alt_deg=site.twilight_deg)
    if tiled:
        return _replan(alert=alert, decision=decision, event=event, strategy=strategy, site=site, skymap=skymap,
                       circle=source.circle, now=now, night_end=night_end, kwargs=kwargs, timings=timings)
    try:
        plan = tiling.plan_tiles(skymap=skymap, circle=None if skymap is not None else source.circle,
                                 fov_width_deg=fov_w, fov_height_deg=fov_h, **kwargs)
    except ValueError as exc:  # a circle out of range, a bad site...
        return _not_actionable(event, decision, f"cannot tile: {exc}")
    timings["tiles_planned"] = time.time()
    what = "sky map" if skymap is not None else f"{source.circle[2]:.3g} deg error circle"
    if not plan:
        AlertEvent.objects.filter(pk=event.pk).update(skymap_alert=alert)
        return _not_actionable(event, decision, f"{what}: no tile observable tonight: {plan.reason}")
    return follow_up._Outcome(Alert.Status.PROCESSED,
                              _start_tiling(alert=alert, event=event, strategy=strategy, site=site, plan=plan,
                                            what=what, now=now, night_end=night_end, min_altitude=min_altitude,
                                            timings=timings),
                              decision.kind)


def _night(site: Site, now: datetime) -> tuple[datetime, datetime]:
    from sky.sun import night_of

    return night_of(site, now, twilight_deg=site.twilight_deg)


def _summary(plan: tiling.TilePlan, what: str) -> str:
    text = f"{what}: {len(plan)} tile{'s' if len(plan) != 1 else ''} covering {plan.covered_probability:.1%}"
    return f"{text} ({plan.reason})" if plan.reason else text


def _start_tiling(*, alert: Alert, event: AlertEvent, strategy: Strategy, site: Site, plan: tiling.TilePlan,
                  what: str, now: datetime, night_end: datetime, min_altitude: float,
                  timings: dict[str, float]) -> str:
    first = plan[0]
    vis = visibility(first.ra_deg, first.dec_deg, site, now, VISIBILITY_HOURS, min_altitude_deg=min_altitude,
                     twilight_deg=site.twilight_deg)
    timings["visibility"] = time.time()
    pointed = False
    if vis.observable_now:
        # As for a point alert: the slew to the most probable tile leaves before the request is written.
        pointed = follow_up._point_now(ra_deg=first.ra_deg, dec_deg=first.dec_deg,
                                       reason=f"alert {event.name} tile 1")
        timings["pointed"] = time.time()
    with transaction.atomic():
        locked = AlertEvent.objects.select_for_update().get(pk=event.pk)
        if locked.status == AlertEvent.Status.RETRACTED:
            event.refresh_from_db()
            return "the event was retracted meanwhile"
        if locked.request_id is not None:
            event.refresh_from_db()
            return f"request {locked.request_id} was built meanwhile by another notice: not tiled again"
        try:
            request = strategies.build_tiles_request(event=locked, strategy=strategy, tiles=plan,
                                                     window_end=night_end, now=now, site=site,
                                                     name=f"{event.name} tiling")
        except strategies.FollowUpImpossible as exc:
            follow_up._set_event_status(locked, AlertEvent.Status.NOT_ACTIONABLE, str(exc),
                                        only_from=_EVENT_OPEN_STATES)
            event.status, event.status_reason = locked.status, locked.status_reason
            return str(exc)
        seq_ids = list(request.sequences.order_by("order", "pk").values_list("pk", flat=True))
        entries = [tile_entry(tile, plan=1, sequence_id=seq_id, request_id=request.pk)
                   for tile, seq_id in zip(plan, seq_ids, strict=True)]
        if vis.observable_now:
            status, reason = AlertEvent.Status.OBSERVING, f"{_summary(plan, what)}; tile 1 observable now: pre-empting"
        else:
            status = AlertEvent.Status.AWAITING_VISIBILITY
            reason = (f"{_summary(plan, what)}; tile 1 observable from "
                      f"{max(first.observable_from_utc, now):%H:%M} UTC")
        AlertEvent.objects.filter(pk=event.pk).update(
            request=request, strategy=strategy, status=status, status_reason=reason[:500], tiles=entries,
            skymap_alert=alert, pointed_ra_deg=first.ra_deg % 360.0, pointed_dec_deg=first.dec_deg,
            updated=timezone.now())
    timings["request_built"] = time.time()
    if vis.observable_now and seq_ids:
        timings["preempt_called"] = time.time()
        follow_up._preempt(sequence_id=seq_ids[0], ra_deg=first.ra_deg % 360.0, dec_deg=first.dec_deg,
                           reason=f"alert {event.name} tile 1", slew=not pointed)
        timings["preempt_returned"] = time.time()
    event.refresh_from_db()
    follow_up._request_replan(reason=f"alert {event.name}: tiling request {request.pk}")
    return f"request {request.pk} built by strategy {strategy.name!r}: {reason}"


def _replan(*, alert: Alert, decision: TriageDecision, event: AlertEvent, strategy: Strategy, site: Site,
            skymap: tiling.SkyMap | None, circle: tuple[float, float, float] | None, now: datetime,
            night_end: datetime, kwargs: dict[str, Any], timings: dict[str, float]) -> follow_up._Outcome:
    from routine_manager import lifecycle
    from routine_manager.services import sequence_set_status

    entries = list(event.tiles)
    statuses = dict(Sequence.objects.filter(pk__in=sequence_ids(entries)).values_list("pk", "status"))
    observed = observed_indices(entries, statuses)
    previous = [tile_from_entry(e) for e in entries]
    what = "updated sky map" if skymap is not None else f"updated {circle[2]:.3g} deg error circle"
    try:
        plan = tiling.replan_tiles(previous, observed, skymap, circle=None if skymap is not None else circle, **kwargs)
    except ValueError as exc:
        return follow_up._Outcome(Alert.Status.PROCESSED, f"cannot re-plan the tiles: {exc}; previous tiles kept",
                                  decision.kind)
    timings["tiles_planned"] = time.time()
    current = [e for e in entries if e.get("request") == event.request_id
               and statuses.get(e.get("sequence")) in _OPEN_SEQUENCE_STATES]
    current.sort(key=lambda e: e.get("rank", 0))
    if [e["index"] for e in current] == [t.index for t in plan] and plan:
        # The same waiting tiles in the same order: only their probabilities change.
        by_index = {t.index: t for t in plan}
        waiting_ids = {e.get("sequence") for e in current}
        kept = []
        for entry in entries:
            tile = by_index.get(entry["index"]) if entry.get("sequence") in waiting_ids else None
            if tile is not None:
                entry = {**entry, "probability": tile.probability,
                         "cumulative_probability": tile.cumulative_probability}
            kept.append(entry)
        AlertEvent.objects.filter(pk=event.pk).update(tiles=kept, skymap_alert=alert, updated=timezone.now())
        return follow_up._Outcome(Alert.Status.PROCESSED,
                                  f"re-planned ({_summary(plan, what)}): the same tiles, probabilities updated",
                                  decision.kind)
    plan_number = max((int(e.get("plan", 1)) for e in entries), default=0) + 1
    with transaction.atomic():
        locked = AlertEvent.objects.select_for_update().get(pk=event.pk)
        if locked.status == AlertEvent.Status.RETRACTED or locked.request_id != event.request_id:
            return follow_up._Outcome(Alert.Status.PROCESSED, "the event changed meanwhile: not re-planned",
                                      decision.kind)
        waiting = list(Sequence.objects.filter(request_id=locked.request_id, status__in=_OPEN_SEQUENCE_STATES)
                       .values_list("pk", flat=True))
        for seq_id in waiting:
            try:
                sequence_set_status(sequence_id=seq_id, status=lifecycle.CANCELLED,
                                    reason=f"tiles re-planned after {alert.notice_type or 'an update'}")
            except lifecycle.InvalidStateChange as exc:  # it started meanwhile: it runs on, and counts as observed
                log.info("tile sequence %s not cancelled: %s", seq_id, exc)
        statuses.update(Sequence.objects.filter(pk__in=sequence_ids(entries)).values_list("pk", "status"))
        kept = [e for e in entries if statuses.get(e.get("sequence")) in OBSERVED_STATUSES]
        request = None
        if plan:
            try:
                request = strategies.build_tiles_request(
                    event=locked, strategy=strategy, tiles=plan, window_end=night_end, now=now, site=site,
                    name=f"{event.name} tiling, re-plan {plan_number - 1}")
            except strategies.FollowUpImpossible as exc:
                AlertEvent.objects.filter(pk=event.pk).update(tiles=kept, updated=timezone.now())
                return follow_up._Outcome(Alert.Status.PROCESSED, f"re-plan failed: {exc}", decision.kind)
            seq_ids = list(request.sequences.order_by("order", "pk").values_list("pk", flat=True))
            kept += [tile_entry(tile, plan=plan_number, sequence_id=seq_id, request_id=request.pk)
                     for tile, seq_id in zip(plan, seq_ids, strict=True)]
            reason = f"re-planned: {_summary(plan, what)}; {len(observed)} observed tile(s) kept out"
            changes: dict[str, Any] = dict(request=request, status_reason=reason[:500], pointed_ra_deg=plan[0].ra_deg % 360.0,
                                           pointed_dec_deg=plan[0].dec_deg)
        else:
            reason = f"re-planned: no tile left to observe ({plan.reason or 'coverage reached'})"
            changes = dict(status_reason=reason[:500])
        AlertEvent.objects.filter(pk=event.pk).update(tiles=kept, skymap_alert=alert, updated=timezone.now(),
                                                      **changes)
    event.refresh_from_db()
    follow_up._request_replan(reason=f"alert {event.name}: tiles re-planned")
    cancelled = len(waiting)
    detail = f"{reason}; {cancelled} waiting tile sequence(s) cancelled"
    if request is not None:
        detail += f", request {request.pk} built"
    return follow_up._Outcome(Alert.Status.PROCESSED, detail, decision.kind)


def supersede(*, event: AlertEvent, reason: str) -> None:
    """A pointable position for a tiled event: its waiting tiles are cancelled and the event has no request
    any more (the caller starts the point follow-up; a tile that runs is pre-empted by it)."""
    from routine_manager import lifecycle
    from routine_manager.services import sequence_set_status

    with transaction.atomic():
        locked = AlertEvent.objects.select_for_update().get(pk=event.pk)
        if not is_tiled(locked):
            return
        for seq_id in Sequence.objects.filter(request_id=locked.request_id,
                                              status__in=_OPEN_SEQUENCE_STATES).values_list("pk", flat=True):
            try:
                sequence_set_status(sequence_id=seq_id, status=lifecycle.CANCELLED, reason=reason[:300])
            except lifecycle.InvalidStateChange as exc:
                log.info("tile sequence %s not cancelled: %s", seq_id, exc)
        AlertEvent.objects.filter(pk=event.pk).update(request=None, updated=timezone.now())
    event.refresh_from_db()
