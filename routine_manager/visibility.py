"""Request validation's view of the sky: the scheduler's pure observability module, with a grid cache.

Nothing astronomical is computed here: :mod:`sky.observability` (shared with the scheduler) does
it, vectorised over all sequences. What this adds is a cache of its :class:`SkyGrid` (the Sun and the
Moon, ~0.1 s to compute for a week): grids are aligned on whole UTC days, so every validation of
requests whose windows fall in the same days reuses the same ephemeris instead of recomputing it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from sky.observability import (
    ConstraintArrays,
    Observability,
    Site,
    SkyGrid,
    TargetSet,
    altitude_for_airmass_deg,
    explain_unobservable,
    nights_between,
    start_intervals,
)

GRID_STEP_S = 60.0
_GRID_CACHE_SIZE = 16
_grid_cache: OrderedDict[tuple, SkyGrid] = OrderedDict()
_grid_lock = threading.Lock()


@dataclass(frozen=True)
class SequenceSky:
    """One sequence as validation sees it: where, when it may start, how long, and its limits."""

    ra_deg: float
    dec_deg: float
    earliest_start_utc: datetime
    latest_start_utc: datetime
    duration_s: float
    min_altitude_deg: float
    max_airmass: float | None
    min_moon_separation_deg: float | None


def _day_floor(value: datetime) -> datetime:
    value = value.astimezone(UTC)
    return value.replace(hour=0, minute=0, second=0, microsecond=0)


def sky_grid(site: Site, start_utc: datetime, end_utc: datetime, step_s: float = GRID_STEP_S) -> SkyGrid:
    """A grid covering [start, end], widened to whole UTC days and cached (LRU, thread-safe)."""
    first_day = _day_floor(start_utc)
    last_day = _day_floor(end_utc) + timedelta(days=1)
    key = (site, first_day, last_day, step_s)
    with _grid_lock:
        grid = _grid_cache.get(key)
        if grid is not None:
            _grid_cache.move_to_end(key)
            return grid
    grid = SkyGrid(site, first_day, last_day, step_s)
    with _grid_lock:
        _grid_cache[key] = grid
        while len(_grid_cache) > _GRID_CACHE_SIZE:
            _grid_cache.popitem(last=False)
    return grid


def sequences_observability(site: Site, twilight_deg: float, sequences: list[SequenceSky]) -> list[Observability]:
    """For every sequence at once: its feasible start intervals, or why it has none."""
    if not sequences:
        return []
    grid = sky_grid(site, min(s.earliest_start_utc for s in sequences),
                    max(s.latest_start_utc + timedelta(seconds=s.duration_s) for s in sequences))
    constraints = ConstraintArrays.build(
        len(sequences),
        [s.min_altitude_deg for s in sequences],
        [s.max_airmass for s in sequences],
        [s.min_moon_separation_deg for s in sequences],
        True,
    )
    targets = TargetSet(grid, np.array([s.ra_deg for s in sequences]), np.array([s.dec_deg for s in sequences]),
                        constraints, twilight_deg)
    results = []
    for row, good in enumerate(targets.intervals()):
        sequence = sequences[row]
        earliest_s, latest_s = grid.seconds(sequence.earliest_start_utc), grid.seconds(sequence.latest_start_utc)
        starts = start_intervals(good, sequence.duration_s, earliest_s, latest_s)
        reason = None if starts else explain_unobservable(targets, row, sequence.duration_s, earliest_s, latest_s)
        results.append(Observability([(grid.utc(a), grid.utc(b)) for a, b in starts], reason))
    return results


@dataclass(frozen=True)
class AltitudeCurves:
    times_utc: list[datetime]
    altitude_deg: np.ndarray  # targets x times
    moon_altitude_deg: np.ndarray
    nights_utc: list[tuple[datetime, datetime]]


def altitude_curves(site: Site, twilight_deg: float, ra_deg: list[float], dec_deg: list[float],
                    start_utc: datetime, end_utc: datetime, step_s: float = 300.0) -> AltitudeCurves:
    """Altitude of each target (and of the Moon) over a time range, with the nights in it (for plots)."""
    grid = SkyGrid(site, start_utc, end_utc, step_s)
    xyz = grid.targets_cirs(np.asarray(ra_deg, dtype=float), np.asarray(dec_deg, dtype=float))
    altitude = grid.altitude_deg(xyz[:, None, :], grid.t_s[None, :])
    return AltitudeCurves(
        times_utc=[grid.utc(t) for t in grid.t_s],
        altitude_deg=altitude,
        moon_altitude_deg=grid.moon_altitude_deg(grid.t_s),
        nights_utc=nights_between(site, start_utc, end_utc, twilight_deg),
    )


__all__ = ["GRID_STEP_S", "AltitudeCurves", "Observability", "SequenceSky", "Site", "altitude_curves",
           "altitude_for_airmass_deg", "sequences_observability", "sky_grid"]
