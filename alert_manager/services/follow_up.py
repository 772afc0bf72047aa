"""Acting on a decision: start or update the follow-up (point, build the request, pre-empt), retract; the calls to the majordome, the scheduler and the request services, each in one place."""

from __future__ import annotations

import dataclasses
import logging
import time

from django.db import transaction
from django.utils import timezone

from alert_manager import strategies
from alert_manager.grouping import (
    SkyPosition,
    needs_repoint,
)
from alert_manager.services._constants import (
    _EVENT_OPEN_STATES,
    _FINAL_REQUEST_STATES,
    _OPEN_SEQUENCE_STATES,
    VISIBILITY_HOURS,
)
from alert_manager.triage import TriageDecision, visibility
from alert_manager.voevent import ParsedNotice
from pyrosapp.models import Alert, AlertEvent, Request, Sequence, Strategy

log = logging.getLogger("pyros.alert_manager")


@dataclasses.dataclass
class _Outcome:
    status: str
    reason: str
    decision: str = ""

# --- Acting on the decision -------------------------------------------------------------------


def _set_event_status(event: AlertEvent, status: str, reason: str, *, only_from: tuple[str, ...] | None = None) -> None:
    qs = AlertEvent.objects.filter(pk=event.pk)
    if only_from is not None:
        qs = qs.filter(status__in=only_from)
    if qs.update(status=status, status_reason=reason[:500], updated=timezone.now()):
        event.status, event.status_reason = status, reason[:500]


@dataclasses.dataclass(frozen=True)
class _StatusChange:
    """An event status change: to ``status`` with ``reason``, only if the event is in one of ``only_from``."""

    status: str
    reason: str
    only_from: tuple[str, ...]


def _decide_without_telescope(notice: ParsedNotice, decision: TriageDecision, event_status: str,
                              position: SkyPosition | None, strategy: Strategy | None,
                              ) -> tuple[_Outcome, _StatusChange | None] | None:
    """The decisions that leave the telescope alone (ignored notice, retracted event, strategy off, no position
    the strategy can point at): the alert's outcome and the event's status change. None: the event's position
    can be pointed at (start or update the follow-up). Retractions are decided before this. Shared by the
    per-alert path (``_act``) and the bulk path (``_quiet_outcome``), so that both decide alike."""
    if decision.kind == "ignored":
        return _Outcome(Alert.Status.IGNORED, decision.reason, decision.kind), _StatusChange(
            AlertEvent.Status.IGNORED, decision.reason, (AlertEvent.Status.NEW,))
    if event_status == AlertEvent.Status.RETRACTED:
        return _Outcome(Alert.Status.PROCESSED, "the event was retracted: nothing done", decision.kind), None
    if strategy is None or not strategy.triggers:
        why = (f"strategy {strategy.name!r} does not trigger on {notice.mission} {notice.notice_type}" if strategy
               else f"no active strategy for {notice.mission} {notice.notice_type}")
        return _Outcome(Alert.Status.PROCESSED, why, decision.kind), _StatusChange(
            AlertEvent.Status.NOT_ACTIONABLE, why, _EVENT_OPEN_STATES)
    if position is None or position.error_deg > strategy.max_error_deg:
        # This notice may be pointable while the event's best position is not (or the reverse): the event decides.
        why = decision.reason if not decision.actionable else "the event has no position within the strategy's error"
        return _Outcome(Alert.Status.PROCESSED, why, decision.kind), _StatusChange(
            AlertEvent.Status.NOT_ACTIONABLE, why, _EVENT_OPEN_STATES)
    return None


def _act(*, alert: Alert, notice: ParsedNotice, decision: TriageDecision, event: AlertEvent,
         strategy: Strategy | None, timings: dict[str, float]) -> _Outcome:
    if decision.kind == "retraction":
        return _Outcome(Alert.Status.PROCESSED, event_retract(event=event, reason=decision.reason), decision.kind)
    if decision.kind == "ignored" and notice.is_retraction and event.is_test:
        # A test retraction (LVK mock events) retracts its test event: visible, and nothing to cancel.
        _set_event_status(event, AlertEvent.Status.RETRACTED, f"test retraction ({decision.reason})")
        return _Outcome(Alert.Status.IGNORED, f"{decision.reason}; test event marked retracted", decision.kind)
    if (strategy is not None and strategy.tile_large_localisations) or event.tiles:
        # Sky maps and error circles wider than the field (only for strategies that tile, or tiled events).
        from alert_manager.services import tiled_follow_up

        tiled = tiled_follow_up.follow_up_tiles(alert=alert, notice=notice, decision=decision, event=event,
                                                strategy=strategy, timings=timings)
        if tiled is not None:
            return tiled
    position = _event_position(event)
    decided = _decide_without_telescope(notice, decision, event.status, position, strategy)
    if decided is not None:
        outcome, change = decided
        if change is not None:
            _set_event_status(event, change.status, change.reason, only_from=change.only_from)
        return outcome
    if event.tiles and event.request_id is not None:
        from alert_manager.services import tiled_follow_up

        if tiled_follow_up.is_tiled(event):
            # A position the telescope can point at supersedes the tiling of a wider localisation.
            tiled_follow_up.supersede(event=event, reason=f"superseded by {notice.mission} {notice.notice_type}: "
                                                          f"error {position.error_deg:.3g} deg, pointed at")
    if event.request_id is None:
        return _Outcome(Alert.Status.PROCESSED,
                        _start_follow_up(event=event, strategy=strategy, position=position, timings=timings),
                        decision.kind)
    return _Outcome(Alert.Status.PROCESSED, _update_follow_up(event=event, position=position), decision.kind)


def _event_position(event: AlertEvent) -> SkyPosition | None:
    if event.ra_deg is None or event.dec_deg is None:
        return None
    return SkyPosition(event.ra_deg, event.dec_deg, event.error_deg or 0.0)


def _start_follow_up(*, event: AlertEvent, strategy: Strategy, position: SkyPosition,
                     timings: dict[str, float]) -> str:
    now = timezone.now()
    site = strategies.active_site()
    if site is None:
        _set_event_status(event, AlertEvent.Status.NOT_ACTIONABLE, "no active site", only_from=_EVENT_OPEN_STATES)
        return "no active site: cannot compute visibility"
    vis = visibility(position.ra_deg, position.dec_deg, site, now, VISIBILITY_HOURS,
                     min_altitude_deg=strategy.min_altitude_deg, twilight_deg=site.twilight_deg)
    timings["visibility"] = time.time()
    pointed = False
    if vis.observable_now:
        # The latency path: the slew leaves for the mount before the request is written (~25 queries).
        pointed = _point_now(ra_deg=position.ra_deg, dec_deg=position.dec_deg, reason=f"alert {event.name}")
        timings["pointed"] = time.time()
    with transaction.atomic():
        locked = AlertEvent.objects.select_for_update().get(pk=event.pk)
        if locked.request_id is not None or locked.status == AlertEvent.Status.RETRACTED:
            # Another notice of the burst got here first (its worker held the lock): this one is an update.
            event.refresh_from_db()
            if event.status == AlertEvent.Status.RETRACTED:
                return "the event was retracted meanwhile"
            return _update_follow_up(event=event, position=position)
        if vis.next_observable_utc is None:
            _set_event_status(locked, AlertEvent.Status.NOT_ACTIONABLE, f"not observable: {vis.reason}",
                              only_from=_EVENT_OPEN_STATES)
            event.status, event.status_reason = locked.status, locked.status_reason
            return f"not observable within {VISIBILITY_HOURS:g} h: {vis.reason}"
        try:
            request = strategies.build_follow_up_request(event=locked, strategy=strategy, ra_deg=position.ra_deg,
                                                         dec_deg=position.dec_deg, now=now, site=site)
        except strategies.FollowUpImpossible as exc:
            _set_event_status(locked, AlertEvent.Status.NOT_ACTIONABLE, str(exc), only_from=_EVENT_OPEN_STATES)
            event.status, event.status_reason = locked.status, locked.status_reason
            return str(exc)
        status = AlertEvent.Status.OBSERVING if vis.observable_now else AlertEvent.Status.AWAITING_VISIBILITY
        reason = ("observable now: pre-empting" if vis.observable_now
                  else f"{vis.reason}; scheduled for when it is observable")
        AlertEvent.objects.filter(pk=event.pk).update(
            request=request, strategy=strategy, status=status, status_reason=reason[:500],
            pointed_ra_deg=position.ra_deg, pointed_dec_deg=position.dec_deg, updated=timezone.now())
        first_sequence_id = request.sequences.order_by("order", "pk").values_list("pk", flat=True).first()
    timings["request_built"] = time.time()
    if vis.observable_now and first_sequence_id is not None:
        timings["preempt_called"] = time.time()
        _preempt(sequence_id=first_sequence_id, ra_deg=position.ra_deg, dec_deg=position.dec_deg,
                 reason=f"alert {event.name}", slew=not pointed)
        timings["preempt_returned"] = time.time()
    event.refresh_from_db()
    _request_replan(reason=f"alert {event.name}: request {request.pk}")
    return f"request {request.pk} built by strategy {strategy.name!r}; {reason}"


def _update_follow_up(*, event: AlertEvent, position: SkyPosition) -> str:
    """A better position for an event that already has a request: move the telescope only if the target
    leaves the field (or its error circle would be covered once re-centred)."""
    executing_id: int | None = None
    with transaction.atomic():
        locked = AlertEvent.objects.select_for_update(of=("self",)).select_related("request").get(pk=event.pk)
        request = locked.request
        if request is None or request.status in _FINAL_REQUEST_STATES:
            return "position update after the follow-up ended: nothing to re-point"
        pointed = None
        if locked.pointed_ra_deg is not None and locked.pointed_dec_deg is not None:
            pointed = SkyPosition(locked.pointed_ra_deg, locked.pointed_dec_deg, 0.0)
        album = request.sequences.first().albums.select_related("detector").first() if request.sequences.exists() \
            else None
        radius = strategies.field_radius_deg(album.detector if album else None)
        repoint = needs_repoint(pointed, position, field_radius_deg=radius)
        if not repoint.repoint:
            return f"position refined, no re-point: {repoint.reason}"
        ra = position.ra_deg % 360.0
        Sequence.objects.filter(request=request, status__in=_OPEN_SEQUENCE_STATES).update(ra_deg=ra,
                                                                                           dec_deg=position.dec_deg)
        executing = Sequence.objects.filter(request=request, status=Sequence.Status.EXECUTING).first()
        if executing is not None:
            Sequence.objects.filter(pk=executing.pk).update(ra_deg=ra, dec_deg=position.dec_deg)
            executing_id = executing.pk
        AlertEvent.objects.filter(pk=event.pk).update(pointed_ra_deg=ra, pointed_dec_deg=position.dec_deg,
                                                      updated=timezone.now())
    event.refresh_from_db()
    if executing_id is not None:
        _repoint(sequence_id=executing_id, ra_deg=ra, dec_deg=position.dec_deg,
                 reason=f"alert {event.name}: {repoint.reason}")
    _request_replan(reason=f"alert {event.name}: position updated")
    return f"re-pointed: {repoint.reason}"


def event_retract(*, event: AlertEvent, reason: str) -> str:
    """Retraction: the event is marked retracted, its request cancelled (time refunded, aborted if executing);
    so are the earlier requests of a re-planned tiling that still run or wait."""
    with transaction.atomic():
        locked = AlertEvent.objects.select_for_update(of=("self",)).select_related("request").get(pk=event.pk)
        AlertEvent.objects.filter(pk=event.pk).update(status=AlertEvent.Status.RETRACTED,
                                                      status_reason=reason[:500], updated=timezone.now())
        request = locked.request
    event.refresh_from_db()
    earlier = []
    if locked.tiles:
        earlier = list(Request.objects.filter(alert_event=event).exclude(status__in=_FINAL_REQUEST_STATES)
                       .exclude(pk=locked.request_id))
        for other in earlier:
            _cancel_request(request=other, reason=f"retraction: {reason}")
    if request is None:
        return "retracted (no request had been built)"
    if request.status in _FINAL_REQUEST_STATES:
        return f"retracted; request {request.pk} already {request.status}"
    _cancel_request(request=request, reason=f"retraction: {reason}")
    more = f" (and earlier tiling request(s) {', '.join(str(r.pk) for r in earlier)})" if earlier else ""
    return f"retracted; request {request.pk} cancelled{more}"


# --- Calls into other apps (lazy imports, one place each) --------------------------------------


def _point_now(*, ra_deg: float, dec_deg: float, reason: str) -> bool:
    """Slew to the burst at once, before any bookkeeping (the majordome owns the mount)."""
    from majordome.controls import observatory_point_now

    try:
        return observatory_point_now(ra_deg=ra_deg, dec_deg=dec_deg, reason=reason)
    except Exception:
        log.exception("pointing at the burst failed; the executor will slew when the sequence starts")
        return False


def _preempt(*, sequence_id: int, ra_deg: float, dec_deg: float, reason: str, slew: bool = True) -> None:
    """Run the burst's sequence next, aborting what runs (the majordome owns the telescope)."""
    from majordome.controls import observatory_preempt

    try:
        slewed = observatory_preempt(sequence_id=sequence_id, ra_deg=ra_deg, dec_deg=dec_deg, reason=reason,
                                     slew=slew) or not slew
        if not slewed:
            log.info("pre-emption for sequence %s deferred by the majordome (not observing now): it runs first "
                     "when observing resumes", sequence_id)
    except Exception:
        # The request exists and the replan follows: the scheduler will still put it first.
        log.exception("pre-emption for sequence %s failed; the replan will schedule it", sequence_id)


def _repoint(*, sequence_id: int, ra_deg: float, dec_deg: float, reason: str) -> None:
    from majordome.controls import observatory_repoint

    try:
        observatory_repoint(sequence_id=sequence_id, ra_deg=ra_deg, dec_deg=dec_deg, reason=reason)
    except Exception:
        log.exception("re-pointing of sequence %s failed", sequence_id)


def _request_replan(*, reason: str) -> None:
    from scheduler.services import schedule_request_replan

    try:
        schedule_request_replan(reason=reason)
    except Exception:
        log.exception("could not ask the scheduler for a replan (%s)", reason)


def _cancel_request(*, request: Request, reason: str) -> None:
    from routine_manager.services import request_cancel

    # It refunds the unused time, asks the majordome to abort a running sequence and asks for a replan.
    request_cancel(request=request, reason=reason)
