"""One event per burst: the grouping lock, candidate events, and a notice grouped into its event."""

from __future__ import annotations

import dataclasses
import logging
import math
from datetime import datetime, timedelta

from django.db import connection, transaction

from alert_manager.grouping import (
    DEFAULT_POSITION_FLOOR_DEG,
    DEFAULT_POSITION_SIGMAS,
    FOLLOW_UP_MAX_ERROR_DEG,
    FOLLOW_UP_WINDOW_S,
    CandidateEvent,
    SkyPosition,
    carries_t0,
    event_from_notice,
    event_with_notice,
    group_notice,
)
from alert_manager.services._constants import COINCIDENCE_WINDOW, GROUPING_LOCK_KEY, MAX_COINCIDENT_CANDIDATES
from alert_manager.triage import TriageDecision
from alert_manager.voevent import ParsedNotice
from pyrosapp.models import Alert, AlertEvent

log = logging.getLogger("pyros.alert_manager")

FOLLOW_UP_WINDOW = timedelta(seconds=FOLLOW_UP_WINDOW_S)

# --- Grouping ---------------------------------------------------------------------------------


def _grouping_lock() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [GROUPING_LOCK_KEY])
    # SQLite: settings open every transaction IMMEDIATE, i.e. holding the database write lock.


def _candidate(event: AlertEvent, ivorns: set[str]) -> CandidateEvent:
    position = None
    if event.ra_deg is not None and event.dec_deg is not None:
        position = SkyPosition(event.ra_deg, event.dec_deg, event.error_deg or 0.0)
    return CandidateEvent(event_id=event.pk, missions=frozenset(event.missions), trigger_ids=dict(event.trigger_ids),
                          ivorns=frozenset(ivorns), burst_time_utc=event.burst_time, position=position,
                          is_test=event.is_test)


def _candidate_events(notice: ParsedNotice) -> list[CandidateEvent]:
    return _candidate_events_many([notice])


def _candidate_events_many(notices: list[ParsedNotice], loaded: dict[int, AlertEvent] | None = None,
                           ) -> list[CandidateEvent]:
    """The stored events any of ``notices`` could join: those holding one of their triggers or a cited IVORN,
    and those whose burst time coincides (one query per test/real and trigger scope, not per notice)."""
    ids: set[int] = set()
    scoped = {(n.trigger_scope, n.trigger_id) for n in notices if n.trigger_id and n.trigger_scope}
    if scoped:
        rows = Alert.objects.filter(trigger_id__in={trig for _, trig in scoped},
                                    trigger_scope__in={scope for scope, _ in scoped},
                                    event__isnull=False).values_list("trigger_scope", "trigger_id", "event_id")
        ids.update(event_id for scope, trig, event_id in rows if (scope, trig) in scoped)
    cited = {ivorn for n in notices for ivorn in n.cited_ivorns}
    cited_by_event: dict[int, set[str]] = {}
    if cited:
        for event_id, ivorn in Alert.objects.filter(ivorn__in=cited, event__isnull=False).values_list("event_id",
                                                                                                      "ivorn"):
            cited_by_event.setdefault(event_id, set()).add(ivorn)
        ids.update(cited_by_event)
    timed: dict[tuple[bool, str], list[datetime]] = {}
    for n in notices:
        if n.event_time_utc is not None and carries_t0(n):
            timed.setdefault((n.is_test, n.trigger_scope or ""), []).append(n.event_time_utc)
    for (is_test, scope), times in timed.items():
        coincident = AlertEvent.objects.filter(
            burst_time__range=(min(times) - COINCIDENCE_WINDOW, max(times) + COINCIDENCE_WINDOW), is_test=is_test)
        if scope:
            # An event holding another trigger of this mission is never joined by coincidence: do not load it
            # (during a burst of packets this keeps the candidate list short).
            coincident = coincident.exclude(trigger_ids__has_key=scope)
        ids.update(coincident.order_by("-burst_time").values_list("pk", flat=True)[
            :MAX_COINCIDENT_CANDIDATES * len(times)])
    # Precisely localised events of the last days that a precise position could follow up (grouping rule 4).
    precise = [n for n in notices if n.position_usable and n.event_time_utc is not None and n.error_deg is not None
               and n.error_deg <= FOLLOW_UP_MAX_ERROR_DEG]
    # One query per burst of notices (test/real): the declination band and the time range of all of them.
    for is_test in {n.is_test for n in precise}:
        batch = [n for n in precise if n.is_test == is_test]
        band_deg = max(DEFAULT_POSITION_SIGMAS * math.hypot(FOLLOW_UP_MAX_ERROR_DEG, n.error_deg)
                       for n in batch) + DEFAULT_POSITION_FLOOR_DEG
        nearby = AlertEvent.objects.filter(
            is_test=is_test, error_deg__lte=FOLLOW_UP_MAX_ERROR_DEG,
            dec_deg__range=(min(n.dec_deg for n in batch) - band_deg, max(n.dec_deg for n in batch) + band_deg),
            burst_time__range=(min(n.event_time_utc for n in batch) - FOLLOW_UP_WINDOW,
                               max(n.event_time_utc for n in batch)))
        scopes = {n.trigger_scope for n in batch}
        if len(scopes) == 1 and None not in scopes:
            # Events holding a trigger of the notices' own scope are never followed up by them (rule 4): during
            # a burst of one mission's alerts this loads nothing.
            nearby = nearby.exclude(trigger_ids__has_key=next(iter(scopes)))
        ids.update(nearby.order_by("-burst_time").values_list("pk", flat=True)[:MAX_COINCIDENT_CANDIDATES])
    if not ids:
        return []
    events = list(AlertEvent.objects.filter(pk__in=ids).order_by("pk"))
    if loaded is not None:  # (``loaded``: filled with the events themselves)
        loaded.update((event.pk, event) for event in events)
    return [_candidate(event, cited_by_event.get(event.pk, set())) for event in events]


def _event_name(notice: ParsedNotice) -> str:
    prefix = "TEST " if notice.is_test else ""
    if notice.trigger_id:
        label = f"{notice.trigger_scope or notice.mission} {notice.trigger_id}"
    elif notice.event_time_utc is not None:
        label = f"{notice.mission} {notice.event_time_utc:%Y-%m-%d %H:%M:%S}"
    else:
        label = notice.ivorn.rpartition("#")[2] or notice.ivorn
    return f"{prefix}{label}"[:100]


def _group(alert: Alert, notice: ParsedNotice, decision: TriageDecision) -> tuple[AlertEvent, bool, str]:
    """Attach the alert to its event (creating it if needed). Returns (event, created, reason)."""
    if decision.kind in ("ignored", "retraction"):
        # A catalogue source, a star tracker out of lock or a retraction must not move the best position.
        notice_for_position = dataclasses.replace(notice, position_usable=False)
    else:
        notice_for_position = notice
    with transaction.atomic():
        _grouping_lock()
        grouping = group_notice(notice, _candidate_events(notice))
        if grouping.opens_new_event:
            merged = event_from_notice(notice_for_position, None)
            event = AlertEvent(name=_event_name(notice), is_test=notice.is_test)
            created = True
        else:
            event = AlertEvent.objects.select_for_update().get(pk=grouping.event_id)
            merged = event_with_notice(_candidate(event, set()), notice_for_position)
            created = False
        event.missions = sorted(merged.missions)
        event.trigger_ids = merged.trigger_ids
        event.burst_time = merged.burst_time_utc
        if merged.position is not None:
            event.ra_deg, event.dec_deg, event.error_deg = (merged.position.ra_deg, merged.position.dec_deg,
                                                            merged.position.error_deg)
        if created:
            event.save()
        else:
            event.save(update_fields=["missions", "trigger_ids", "burst_time", "ra_deg", "dec_deg", "error_deg",
                                      "updated"])
        alert.event = event
        Alert.objects.filter(pk=alert.pk).update(event=event)
    return event, created, grouping.reason
