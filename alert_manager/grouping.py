"""Which alert event (one astrophysical burst) a new notice belongs to: pure, no Django.

Evidence, strongest first:

1. the same trigger within one trigger scope (Swift TrigID shared by BAT/XRT/UVOT, Fermi GBM TrigID,
   Fermi LAT TrigID, SVOM Burst_Id, LVK GraceID, IceCube run/event);
2. the notice cites an IVORN already in the event (followup / supersedes / retraction);
3. across missions: burst times within ``time_tolerance_s`` (default 60 s: SVOM's T0 moves by up
   to ~30 s between notices, GBM and Swift/SVOM report a burst within seconds of each other) AND
   positions consistent given their errors, or one of them without a position. An event already
   holding a *different* trigger of the notice's own scope is never joined this way: one mission
   does not issue two triggers for one burst;
4. a follow-up: a precise position (error <= ``FOLLOW_UP_MAX_ERROR_DEG``) within
   ``FOLLOW_UP_WINDOW_S`` after the burst of a precisely localised event (Einstein Probe WXT, a Swift
   or SVOM position), consistent with it: another mission's follow-up of that transient (a Swift XRT
   observation of an EP source), whose notice time is its own observation time, not the burst's.
   Both errors must be small: by chance, two unrelated sources within a degree and three days of
   each other are rare, a coarse GBM circle would catch anything.

Test packets (role=test) and real ones never share an event.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from alert_manager.voevent import ParsedNotice

DEFAULT_TIME_TOLERANCE_S = 60.0
# Error radii are quoted at different confidence levels (GBM 1-sigma statistical with ~3-4 deg
# systematics, SVOM/Swift 90 %): accept separations up to 3x the combined radius plus a floor.
DEFAULT_POSITION_SIGMAS = 3.0
DEFAULT_POSITION_FLOOR_DEG = 0.1
# Notice types whose ISOTime is a later detection time, not the burst's T0 (SVOM MXT/VT).
_NOT_T0_NOTICE_PREFIXES = ("mxt-", "vt-", "vt")
FOLLOW_UP_WINDOW_S = 3 * 86400.0
FOLLOW_UP_MAX_ERROR_DEG = 0.5


@dataclass(frozen=True)
class SkyPosition:
    ra_deg: float
    dec_deg: float
    error_deg: float
    source_ivorn: str | None = None


@dataclass(frozen=True)
class CandidateEvent:
    """What grouping needs to know of an existing alert event (built by the caller from its store)."""

    event_id: Any
    missions: frozenset[str] = frozenset()
    trigger_ids: dict[str, str] = field(default_factory=dict, hash=False)  # trigger scope -> trigger id
    ivorns: frozenset[str] = frozenset()
    burst_time_utc: datetime | None = None
    position: SkyPosition | None = None  # best position so far
    is_test: bool = False


@dataclass(frozen=True)
class GroupingDecision:
    event_id: Any | None  # None: open a new event
    reason: str

    @property
    def opens_new_event(self) -> bool:
        return self.event_id is None


def notice_position(notice: ParsedNotice) -> SkyPosition | None:
    if not notice.position_usable or notice.ra_deg is None or notice.dec_deg is None:
        return None
    return SkyPosition(notice.ra_deg, notice.dec_deg, notice.error_deg or 0.0, notice.ivorn)


def angular_separation_deg(ra1_deg: float, dec1_deg: float, ra2_deg: float, dec2_deg: float) -> float:
    """Great-circle distance (Vincenty formula: exact at small and large separations)."""
    ra1, dec1, ra2, dec2 = map(math.radians, (ra1_deg, dec1_deg, ra2_deg, dec2_deg))
    d_ra = ra2 - ra1
    num = math.hypot(
        math.cos(dec2) * math.sin(d_ra),
        math.cos(dec1) * math.sin(dec2) - math.sin(dec1) * math.cos(dec2) * math.cos(d_ra),
    )
    den = math.sin(dec1) * math.sin(dec2) + math.cos(dec1) * math.cos(dec2) * math.cos(d_ra)
    return math.degrees(math.atan2(num, den))


def positions_consistent(
    a: SkyPosition | None,
    b: SkyPosition | None,
    *,
    sigmas: float = DEFAULT_POSITION_SIGMAS,
    floor_deg: float = DEFAULT_POSITION_FLOOR_DEG,
) -> bool:
    if a is None or b is None:
        return True  # one has no position: time coincidence alone decides
    separation = angular_separation_deg(a.ra_deg, a.dec_deg, b.ra_deg, b.dec_deg)
    return separation <= sigmas * math.hypot(a.error_deg, b.error_deg) + floor_deg


def carries_t0(notice: ParsedNotice) -> bool:
    """False for notices whose time is a later detection time (SVOM MXT, VT), not the burst time."""
    return not (notice.mission == "SVOM" and notice.notice_type.lower().startswith(_NOT_T0_NOTICE_PREFIXES))


def group_notice(
    notice: ParsedNotice,
    candidates: Iterable[CandidateEvent],
    *,
    time_tolerance_s: float = DEFAULT_TIME_TOLERANCE_S,
    position_sigmas: float = DEFAULT_POSITION_SIGMAS,
    position_floor_deg: float = DEFAULT_POSITION_FLOOR_DEG,
) -> GroupingDecision:
    """The event ``notice`` joins, or a new one. ``candidates``: the events that could match
    (e.g. those with a burst time within a day, plus those holding its trigger or a cited IVORN)."""
    pool = [c for c in candidates if c.is_test == notice.is_test]

    if notice.trigger_id is not None and notice.trigger_scope is not None:
        for cand in pool:
            if cand.trigger_ids.get(notice.trigger_scope) == notice.trigger_id:
                return GroupingDecision(cand.event_id, f"same {notice.trigger_scope} trigger {notice.trigger_id}")

    cited = set(notice.cited_ivorns)
    if cited:
        for cand in pool:
            common = cited & cand.ivorns
            if common:
                return GroupingDecision(cand.event_id, f"cites {sorted(common)[0]}")

    if notice.event_time_utc is None or not carries_t0(notice):
        return GroupingDecision(None, "new event: no burst time to compare with other missions")
    position = notice_position(notice)
    best: tuple[float, CandidateEvent] | None = None
    for cand in pool:
        if cand.burst_time_utc is None:
            continue
        if notice.trigger_scope is not None and notice.trigger_scope in cand.trigger_ids:
            continue  # that event already has another trigger of this mission/instrument
        dt_s = abs((notice.event_time_utc - cand.burst_time_utc).total_seconds())
        if dt_s > time_tolerance_s:
            continue
        if not positions_consistent(position, cand.position, sigmas=position_sigmas, floor_deg=position_floor_deg):
            continue
        if best is None or dt_s < best[0]:
            best = (dt_s, cand)
    if best is not None:
        dt_s, cand = best
        missions = "/".join(sorted(cand.missions)) or "another mission"
        return GroupingDecision(
            cand.event_id,
            f"coincides with {missions} within {dt_s:.1f} s and a consistent position",
        )
    follow_up = _follow_up_of(notice, position, pool, position_sigmas, position_floor_deg)
    if follow_up is not None:
        return follow_up
    return GroupingDecision(None, "new event: no trigger, citation or coincidence matches")


def _follow_up_of(notice: ParsedNotice, position: SkyPosition | None, pool: list[CandidateEvent],
                  sigmas: float, floor_deg: float) -> GroupingDecision | None:
    if position is None or position.error_deg > FOLLOW_UP_MAX_ERROR_DEG or notice.event_time_utc is None:
        return None
    best: tuple[float, CandidateEvent] | None = None
    for cand in pool:
        if cand.burst_time_utc is None or cand.position is None or cand.position.error_deg > FOLLOW_UP_MAX_ERROR_DEG:
            continue
        if notice.mission in cand.missions or (notice.trigger_scope and notice.trigger_scope in cand.trigger_ids):
            continue  # a mission's own notices of a burst share its trigger; another trigger is another burst
        after_s = (notice.event_time_utc - cand.burst_time_utc).total_seconds()
        if not 0.0 <= after_s <= FOLLOW_UP_WINDOW_S:
            continue
        if not positions_consistent(position, cand.position, sigmas=sigmas, floor_deg=floor_deg):
            continue
        separation = angular_separation_deg(position.ra_deg, position.dec_deg, cand.position.ra_deg,
                                            cand.position.dec_deg)
        if best is None or separation < best[0]:
            best = (separation, cand)
    if best is None:
        return None
    separation, cand = best
    missions = "/".join(sorted(cand.missions)) or "another mission"
    hours = (notice.event_time_utc - cand.burst_time_utc).total_seconds() / 3600.0
    return GroupingDecision(cand.event_id, f"follow-up of the {missions} source {separation * 60:.1f}' away, "
                                           f"{hours:.1f} h after its burst")


def event_from_notice(notice: ParsedNotice, event_id: Any) -> CandidateEvent:
    """A new event holding only ``notice``."""
    return event_with_notice(CandidateEvent(event_id=event_id, is_test=notice.is_test), notice)


def event_with_notice(event: CandidateEvent, notice: ParsedNotice) -> CandidateEvent:
    """``event`` after ``notice`` joined it (a new value; the caller persists it)."""
    trigger_ids = dict(event.trigger_ids)
    if notice.trigger_id is not None and notice.trigger_scope is not None:
        trigger_ids.setdefault(notice.trigger_scope, notice.trigger_id)
    burst_time = event.burst_time_utc
    if notice.event_time_utc is not None and carries_t0(notice):
        # The earliest T0 wins: the first notice of a burst is the trigger time, later ones
        # (GBM Fin_Pos, SVOM after ground analysis) may refine it by seconds.
        if burst_time is None or notice.event_time_utc < burst_time:
            burst_time = notice.event_time_utc
    elif burst_time is None and notice.event_time_utc is not None:
        burst_time = notice.event_time_utc
    candidates = [p for p in (event.position, notice_position(notice)) if p is not None]
    return replace(
        event,
        missions=event.missions | {notice.mission},
        trigger_ids=trigger_ids,
        ivorns=event.ivorns | {notice.ivorn},
        burst_time_utc=burst_time,
        position=best_position(candidates),
    )


def best_position(positions: Sequence[SkyPosition | None]) -> SkyPosition | None:
    """The smallest error radius wins; on a tie, the latest (last in the sequence)."""
    best: SkyPosition | None = None
    for pos in positions:
        if pos is None:
            continue
        if best is None or pos.error_deg <= best.error_deg:
            best = pos
    return best


@dataclass(frozen=True)
class RepointDecision:
    repoint: bool
    reason: str
    separation_deg: float | None


def needs_repoint(
    old_pointing: SkyPosition | None, new_position: SkyPosition, field_radius_deg: float = 0.15
) -> RepointDecision:
    """Should the telescope move for ``new_position``? Only when it helps: the new position leaves
    the field, or its error circle is not covered by the field but would be once re-centred.

    ``field_radius_deg``: radius of the circle inscribed in the camera field (0.15 deg for a
    21' x 17' field).
    """
    if old_pointing is None:
        return RepointDecision(True, "not pointed yet", None)
    separation = angular_separation_deg(
        old_pointing.ra_deg, old_pointing.dec_deg, new_position.ra_deg, new_position.dec_deg
    )
    if separation > field_radius_deg:
        return RepointDecision(
            True, f"new position {separation:.3f} deg away leaves the field ({field_radius_deg:g} deg)", separation
        )
    if separation + new_position.error_deg > field_radius_deg and new_position.error_deg <= field_radius_deg:
        return RepointDecision(
            True,
            f"error circle ({new_position.error_deg:.3f} deg at {separation:.3f} deg) not covered; re-centring covers it",
            separation,
        )
    return RepointDecision(False, f"new position {separation:.3f} deg from the field centre: stays covered", separation)
