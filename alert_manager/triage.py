"""Triage of one parsed notice, and the target's visibility from the site: pure, no Django.

``triage`` answers "does this packet ask the telescope to do something?" from the packet alone
(plus the strategy's maximum error). ``visibility`` answers "can we point there now, and if not,
when?" in a few hundred microseconds, because it sits on the alert latency path: it evaluates a
1-minute grid with numpy, using ERFA (shipped with astropy) for Earth rotation and precession,
and astropy (through :mod:`sky.astro`, offline) for the Sun only, cached per minute.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Literal, Protocol

import erfa
import numpy as np

from alert_manager.voevent import (
    CITE_FOLLOWUP,
    CITE_SUPERSEDES,
    FLAG_GRB_NOT_IDENTIFIED,
    FLAG_HARDWARE_INJECTION,
    FLAG_IN_FLIGHT_CATALOG,
    FLAG_IN_GROUND_CATALOG,
    FLAG_KNOWN_SOURCE,
    FLAG_NOT_A_GRB,
    FLAG_STARTRACK_LOST_LOCK,
    FLAG_TEST_SUBMISSION,
    ParsedNotice,
)
from sky.sun import sun_altitudes_deg

DecisionKind = Literal["trigger", "update", "retraction", "ignored"]


@dataclass(frozen=True)
class TriageDecision:
    """``actionable``: the alert worker must change the telescope's plan (point, re-point, or, for a
    retraction, cancel). A non-actionable trigger/update is still stored and grouped."""

    actionable: bool
    reason: str
    kind: DecisionKind


def triage(notice: ParsedNotice, *, max_error_deg: float, joins_existing_event: bool | None = None) -> TriageDecision:
    """Decide what a notice asks for.

    ``joins_existing_event``: the grouping's answer when known; by default a notice citing earlier
    notices (followup/supersedes) is an update of their event, otherwise a new trigger.
    """
    if notice.role != "observation":
        return TriageDecision(False, f"role={notice.role}: such packets never trigger an observation", "ignored")
    if FLAG_TEST_SUBMISSION in notice.flags:
        return TriageDecision(False, "test submission (Test_Submission flag)", "ignored")
    if FLAG_HARDWARE_INJECTION in notice.flags:
        return TriageDecision(False, "hardware injection (HardwareInj = 1), not a real event", "ignored")
    if notice.is_retraction:
        cited = ", ".join(notice.retracted_ivorns) or "its trigger"
        return TriageDecision(True, f"retraction of {cited}: cancel pending follow-up", "retraction")
    if FLAG_NOT_A_GRB in notice.flags:
        return TriageDecision(False, "not a GRB (Swift BAT Def_NOT_a_GRB)", "ignored")
    if FLAG_IN_FLIGHT_CATALOG in notice.flags or FLAG_IN_GROUND_CATALOG in notice.flags:
        return TriageDecision(False, "catalogue source (Swift BAT Target_in_Flt/Gnd_Catalog)", "ignored")
    if FLAG_KNOWN_SOURCE in notice.flags:
        return TriageDecision(False, f"known source ({notice.mission} {notice.notice_type})", "ignored")
    if FLAG_GRB_NOT_IDENTIFIED in notice.flags:
        return TriageDecision(False, "not identified as a GRB (Swift BAT GRB_Identified = false)", "ignored")
    if FLAG_STARTRACK_LOST_LOCK in notice.flags:
        return TriageDecision(False, "position unreliable (Swift star tracker lost lock)", "ignored")

    if joins_existing_event is None:
        joins_existing_event = any(c.cite in (CITE_FOLLOWUP, CITE_SUPERSEDES) for c in notice.citations)
    kind: DecisionKind = "update" if joins_existing_event else "trigger"
    if not notice.position_usable or notice.error_deg is None:
        return TriageDecision(False, f"stored, not pointable: {notice.position_reason or 'no position'}", kind)
    if notice.error_deg > max_error_deg:
        return TriageDecision(
            False,
            f"error radius {notice.error_deg:.3g} deg larger than the strategy's maximum {max_error_deg:g} deg",
            kind,
        )
    return TriageDecision(True, f"pointable: error radius {notice.error_deg:.3g} deg", kind)


# --- Visibility ---------------------------------------------------------------------------------


class SiteLike(Protocol):
    latitude_deg: float
    longitude_deg: float  # east positive
    elevation_m: float


@dataclass(frozen=True)
class ObservingSite:
    latitude_deg: float
    longitude_deg: float  # east positive
    elevation_m: float = 0.0


@dataclass(frozen=True)
class Visibility:
    observable_now: bool
    altitude_now_deg: float
    sun_altitude_now_deg: float
    next_observable_utc: datetime | None  # == now when observable now; None when not within the horizon
    observable_until_utc: datetime | None  # end of that window (capped at the horizon)
    reason: str


_UNIX_EPOCH_JD = 2440587.5
_SIDEREAL_RATE = 1.00273781191135448  # sidereal days per UT1 day


def visibility(
    ra_deg: float,
    dec_deg: float,
    site: SiteLike,
    now_utc: datetime,
    hours: float = 12.0,
    *,
    min_altitude_deg: float = 20.0,
    twilight_deg: float = -12.0,
) -> Visibility:
    """Is the ICRS position above ``min_altitude_deg`` with the Sun below ``twilight_deg``, now?
    If not, the first minute within ``hours`` when it is.

    Geometric altitude (no refraction, < 0.1 deg above 20 deg), apparent place from ERFA's
    precession-nutation; UT1 taken as UTC (< 1 s).
    """
    if now_utc.tzinfo is None:
        raise ValueError("naive datetime: visibility() needs an aware UTC datetime")
    now_utc = now_utc.astimezone(UTC)
    minute0 = now_utc.replace(second=0, microsecond=0)
    n_steps = int(round(hours * 60)) + 1
    offset_min = (now_utc - minute0).total_seconds() / 60.0
    grid_min = offset_min + np.arange(n_steps, dtype=float)

    lat = math.radians(site.latitude_deg)
    lon = math.radians(site.longitude_deg)
    jd_utc0 = _UNIX_EPOCH_JD + now_utc.timestamp() / 86400.0
    rnpb, gast0 = _earth_orientation(round(jd_utc0, 3))  # ~1.4 min granularity: changes < 1e-3 deg
    gast0 += (jd_utc0 - round(jd_utc0, 3)) * 2 * math.pi * _SIDEREAL_RATE
    local_st = gast0 + lon + grid_min * (2 * math.pi * _SIDEREAL_RATE / 1440.0)

    # Target: ICRS unit vector -> true equator and equinox of date.
    ra, dec = math.radians(ra_deg), math.radians(dec_deg)
    v = rnpb @ np.array([math.cos(dec) * math.cos(ra), math.cos(dec) * math.sin(ra), math.sin(dec)])
    ra_app = math.atan2(v[1], v[0])
    dec_app = math.asin(max(-1.0, min(1.0, v[2])))
    target_alt = _altitude(local_st - ra_app, dec_app, lat)

    # The Sun from the one cached computation of PyROS (sky.sun), at the same instants as the target.
    sun_alt = sun_altitudes_deg(site, now_utc.timestamp() + 60.0 * (grid_min - offset_min))
    good = (target_alt >= min_altitude_deg) & (sun_alt <= twilight_deg)

    alt_now = float(target_alt[0])
    sun_now = float(sun_alt[0])
    if good[0]:
        end = _first_false(good)
        until = now_utc + timedelta(minutes=end) if end is not None else now_utc + timedelta(minutes=n_steps - 1)
        return Visibility(True, alt_now, sun_now, now_utc, until, "observable now")
    why = []
    if alt_now < min_altitude_deg:
        why.append(f"altitude {alt_now:.1f} deg below {min_altitude_deg:g} deg")
    if sun_now > twilight_deg:
        why.append(f"Sun at {sun_now:.1f} deg, above {twilight_deg:g} deg")
    reason = " and ".join(why)
    idx = np.flatnonzero(good)
    if idx.size == 0:
        return Visibility(False, alt_now, sun_now, None, None, f"{reason}; not observable within {hours:g} h")
    start = int(idx[0])
    end = _first_false(good[start:])
    next_time = now_utc + timedelta(minutes=start)
    until = next_time + timedelta(minutes=end if end is not None else n_steps - 1 - start)
    return Visibility(False, alt_now, sun_now, next_time, until, f"{reason}; observable from {next_time:%H:%M} UTC")


def _first_false(mask: np.ndarray) -> int | None:
    idx = np.flatnonzero(~mask)
    return int(idx[0]) if idx.size else None


def _altitude(hour_angle: np.ndarray, dec: float | np.ndarray, lat: float) -> np.ndarray:
    sin_alt = np.sin(dec) * math.sin(lat) + np.cos(dec) * math.cos(lat) * np.cos(hour_angle)
    return np.degrees(np.arcsin(np.clip(sin_alt, -1.0, 1.0)))


@lru_cache(maxsize=256)
def _earth_orientation(jd_utc: float) -> tuple[np.ndarray, float]:
    """(ICRS -> true-of-date matrix, Greenwich apparent sidereal time in rad) at ``jd_utc``."""
    # TT - UTC = 32.184 s + leap seconds (37 s since 2017); the matrix moves 0.1" per 70 s: ignore drift.
    jd_tt = jd_utc + (32.184 + 37.0) / 86400.0
    rnpb = erfa.pnm06a(jd_tt, 0.0)
    gast = float(erfa.gst06a(jd_utc, 0.0, jd_tt, 0.0))
    return np.asarray(rnpb), gast
