"""Night bounds and observability of many targets at once (pure: numpy + astropy, no Django).

How the sky is computed, and why it is fast and still exact enough:

* astropy (offline, via :mod:`sky.astro`) is called a handful of times per time range, never per
  target or per sample: the Sun and the Moon are computed as *topocentric CIRS* directions on nodes
  (Moon hourly, Sun 3-hourly) and interpolated with a cubic spline (in CIRS both move by less than ~1 deg per hour and
  smoothly, so the spline is good to well under an arcsecond); the targets are moved to CIRS once.
* Everything diurnal is then the Earth Rotation Angle, which is linear in UT1: the hour angle of any
  direction is ``ERA(t) + longitude - ra_cirs`` and its geometric altitude one line of numpy trig.
  Neglected: polar motion and diurnal aberration (each < 0.5"), the change of annual aberration
  over a night (< 0.1"). The tests compare with astropy's ``AltAz`` (pressure 0) point by point.
* Constraints are evaluated on a grid (targets x samples in one array), then every edge of a
  "constraint holds" run is refined by bisection on the exact functions, and limits are tightened
  by :data:`SAFETY_MARGIN_DEG`, which also covers the largest dip possible between two samples
  (altitude curvature over 60 s is < 1"). So a constraint holds at every instant of an interval
  returned here, not only at the samples.

Conventions: altitudes are geometric (no refraction), airmass is sec(z) (plane-parallel, as
astroplan's ``AirmassConstraint``), Moon separation is from the topocentric Moon. Times passed in
and out are aware UTC datetimes; internally, seconds since the start of the grid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import erfa
import numpy as np
from astropy.coordinates import CIRS, SkyCoord, get_body
from scipy.interpolate import CubicSpline

from sky.astro import earth_location, to_time, u

# Limits are tightened by this much (7.2"), so that the approximations listed above and the
# independent astropy check never disagree on which side of a limit a block lies.
SAFETY_MARGIN_DEG = 0.002
ASTRONOMICAL_TWILIGHT_DEG = -18.0
# Sun/Moon nodes for the cubic splines (see module doc). Measured against astropy over 8 days, off the
# nodes: the Moon every hour 0.2" (every 1.5 h: 0.9"), the Sun every 3 h 0.06" (every 6 h: 1.1"). The
# astropy evaluations at the nodes are most of a grid's cost: 3-hourly Sun nodes save a quarter of it.
MOON_NODE_S = 3600.0
SUN_NODE_S = 3 * 3600.0
# Bisection of a sample interval down to well under a second (60 s / 2**18 = 0.2 ms).
_BISECTION_STEPS = 18
# Bound the size of one targets x samples block of arrays (float64: 8 bytes each).
_MAX_MATRIX_ELEMENTS = 4_000_000


@dataclass(frozen=True)
class Site:
    latitude_deg: float
    longitude_deg: float  # east positive
    elevation_m: float = 0.0
    name: str = ""


def altitude_for_airmass_deg(max_airmass: float) -> float:
    """Lowest altitude at which sec(z) <= max_airmass (plane-parallel airmass)."""
    if max_airmass < 1.0:
        raise ValueError(f"max_airmass must be >= 1, got {max_airmass}")
    return math.degrees(math.asin(1.0 / max_airmass))


def _unit_vectors(ra_rad: np.ndarray, dec_rad: np.ndarray) -> np.ndarray:
    cos_dec = np.cos(dec_rad)
    return np.stack([cos_dec * np.cos(ra_rad), cos_dec * np.sin(ra_rad), np.sin(dec_rad)], axis=-1)


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetime: PyROS works in aware UTC datetimes only")
    return value.astimezone(UTC)


class SkyGrid:
    """Sun, Moon and Earth rotation over ``[start_utc, end_utc]``, computed once, usable at any instant.

    ``t_s`` are the sample times (seconds since ``start_utc``) used for the targets x samples arrays;
    the last sample is exactly the end of the range.
    """

    def __init__(
        self, site: Site, start_utc: datetime, end_utc: datetime, step_s: float = 60.0, *, moon: bool = True
    ) -> None:
        start_utc, end_utc = _as_utc(start_utc), _as_utc(end_utc)
        if end_utc <= start_utc:
            raise ValueError(f"empty time range: {start_utc.isoformat()} .. {end_utc.isoformat()}")
        if step_s <= 0:
            raise ValueError("step_s must be > 0")
        self.site = site
        self.start_utc = start_utc
        self.end_utc = end_utc
        self.span_s = (end_utc - start_utc).total_seconds()
        self.step_s = float(step_s)
        n_steps = max(1, math.ceil(self.span_s / self.step_s - 1e-9))
        self.t_s = np.minimum(np.arange(n_steps + 1) * self.step_s, self.span_s)
        self._latitude_rad = math.radians(site.latitude_deg)
        self._sin_lat = math.sin(self._latitude_rad)
        self._cos_lat = math.cos(self._latitude_rad)
        self._longitude_rad = math.radians(site.longitude_deg)

        location = earth_location(
            latitude_deg=site.latitude_deg, longitude_deg=site.longitude_deg, elevation_m=site.elevation_m
        )
        self._mid_time = to_time(start_utc) + (self.span_s / 2.0) * u.s
        # ERA is linear in UT1, and UT1 - UTC is constant to a few ms over days: interpolate linearly.
        # (hourly samples: unwrap needs less than half a turn between two of them)
        ut1 = (to_time(start_utc) + np.linspace(0.0, self.span_s, max(2, math.ceil(self.span_s / 3600.0) + 1))
               * u.s).ut1
        era = np.unwrap(erfa.era00(ut1.jd1, ut1.jd2))
        self._era_slope = (era[-1] - era[0]) / self.span_s
        self._era0 = era[0]
        self._sun_spline = self._body_spline("sun", start_utc, SUN_NODE_S, location)
        # The Sun alone (sky.sun) skips the Moon's nodes, most of a grid's astropy cost.
        self._moon_spline = self._body_spline("moon", start_utc, MOON_NODE_S, location) if moon else None

    def _body_spline(self, body: str, start_utc: datetime, node_step_s: float, location) -> CubicSpline:  # noqa: ANN001
        # Nodes on whole multiples of the step in UTC, covering the range: the same instant gets the same
        # position whatever the grid's start (two grids of one night agree to the last digit).
        start = start_utc.timestamp()
        first = math.floor(start / node_step_s) * node_step_s
        count = max(4, math.ceil((start + self.span_s - first) / node_step_s - 1e-9) + 1)
        node_s = first - start + np.arange(count) * node_step_s
        node_times = to_time(start_utc) + node_s * u.s
        frame = CIRS(obstime=node_times, location=location)
        return CubicSpline(node_s, self._cirs_xyz(get_body(body, node_times, location), frame))

    @staticmethod
    def _cirs_xyz(body: SkyCoord, frame: CIRS) -> np.ndarray:
        cirs = body.transform_to(frame)
        return _unit_vectors(cirs.ra.rad, cirs.dec.rad)

    # -- instants ---------------------------------------------------------------------------
    def seconds(self, value: datetime) -> float:
        return (_as_utc(value) - self.start_utc).total_seconds()

    def utc(self, t_s: float) -> datetime:
        return self.start_utc + timedelta(seconds=float(t_s))

    # -- directions -------------------------------------------------------------------------
    def targets_cirs(self, ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
        """ICRS (J2000) targets as CIRS unit vectors (N x 3) at the middle of the range."""
        ra_deg = np.atleast_1d(np.asarray(ra_deg, dtype=float))
        dec_deg = np.atleast_1d(np.asarray(dec_deg, dtype=float))
        if ra_deg.size == 0:
            return np.zeros((0, 3))
        cirs = SkyCoord(ra_deg * u.deg, dec_deg * u.deg, frame="icrs").transform_to(CIRS(obstime=self._mid_time))
        return _unit_vectors(cirs.ra.rad, cirs.dec.rad)

    def _sin_altitude(self, xyz: np.ndarray, t_s: np.ndarray) -> np.ndarray:
        """sin(altitude) of CIRS unit vectors ``xyz`` (..., 3) at ``t_s`` (broadcast)."""
        local_sidereal_angle = self._era0 + self._era_slope * t_s + self._longitude_rad
        # sin(alt) = sin(lat) sin(dec) + cos(lat) cos(dec) cos(HA), with HA = ERA + lon - ra, expanded
        # as cos(dec)cos(ERA+lon-ra) = x cos(ERA+lon) + y sin(ERA+lon): no arctan per sample.
        return self._sin_lat * xyz[..., 2] + self._cos_lat * (
            xyz[..., 0] * np.cos(local_sidereal_angle) + xyz[..., 1] * np.sin(local_sidereal_angle)
        )

    def altitude_deg(self, xyz: np.ndarray, t_s: np.ndarray) -> np.ndarray:
        return np.degrees(np.arcsin(np.clip(self._sin_altitude(xyz, t_s), -1.0, 1.0)))

    def sun_altitude_deg(self, t_s: np.ndarray | float) -> np.ndarray:
        t_s = np.asarray(t_s, dtype=float)
        return self.altitude_deg(self._body_xyz(self._sun_spline, t_s), t_s)

    def moon_altitude_deg(self, t_s: np.ndarray | float) -> np.ndarray:
        t_s = np.asarray(t_s, dtype=float)
        return self.altitude_deg(self._body_xyz(self._moon_spline, t_s), t_s)

    @staticmethod
    def _body_xyz(spline: CubicSpline, t_s: np.ndarray) -> np.ndarray:
        xyz = spline(t_s)
        return xyz / np.linalg.norm(xyz, axis=-1, keepdims=True)

    def moon_separation_deg(self, xyz: np.ndarray, t_s: np.ndarray) -> np.ndarray:
        """Angle between CIRS directions ``xyz`` (..., 3) and the topocentric Moon at ``t_s``."""
        moon = self._body_xyz(self._moon_spline, np.asarray(t_s, dtype=float))
        cos_sep = np.sum(xyz * moon, axis=-1)
        return np.degrees(np.arccos(np.clip(cos_sep, -1.0, 1.0)))


# --------------------------------------------------------------------------------------------
# Intervals where a continuous function of time is >= 0, with refined edges
# --------------------------------------------------------------------------------------------
def _bisect_edges(margin_fn, rows: np.ndarray, good_t: np.ndarray, bad_t: np.ndarray) -> np.ndarray:
    """Move ``good_t`` (margin >= 0) towards ``bad_t`` (margin < 0): the last instant known good."""
    good_t = good_t.astype(float).copy()
    bad_t = bad_t.astype(float).copy()
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (good_t + bad_t)
        ok = margin_fn(rows, mid) >= 0.0
        good_t = np.where(ok, mid, good_t)
        bad_t = np.where(ok, bad_t, mid)
    return good_t


def good_intervals(margin_fn, n_rows: int, t_s: np.ndarray) -> list[list[tuple[float, float]]]:
    """For each row, the intervals of time (seconds) where ``margin_fn(rows, t) >= 0``.

    ``margin_fn(rows, t)`` evaluates row ``rows[k]`` at time ``t[k]`` (both 1-D, same length). Edges
    between two samples are refined by bisection; an edge at the first or last sample is that sample.
    """
    result: list[list[tuple[float, float]]] = [[] for _ in range(n_rows)]
    if n_rows == 0:
        return result
    n_t = t_s.size
    rows_per_chunk = max(1, _MAX_MATRIX_ELEMENTS // n_t)
    for first in range(0, n_rows, rows_per_chunk):
        rows = np.arange(first, min(n_rows, first + rows_per_chunk))
        grid_rows = np.repeat(rows, n_t)
        grid_t = np.tile(t_s, rows.size)
        good = (margin_fn(grid_rows, grid_t) >= 0.0).reshape(rows.size, n_t)
        padded = np.zeros((rows.size, n_t + 2), dtype=np.int8)
        padded[:, 1:-1] = good
        step = np.diff(padded, axis=1)
        rise_row, rise_k = np.nonzero(step == 1)  # good from sample rise_k on
        fall_row, fall_k = np.nonzero(step == -1)  # good up to sample fall_k - 1
        fall_k = fall_k - 1
        starts = t_s[rise_k].astype(float)
        inner = rise_k > 0
        if inner.any():
            starts[inner] = _bisect_edges(margin_fn, rows[rise_row[inner]], t_s[rise_k[inner]], t_s[rise_k[inner] - 1])
        ends = t_s[fall_k].astype(float)
        inner = fall_k < n_t - 1
        if inner.any():
            ends[inner] = _bisect_edges(margin_fn, rows[fall_row[inner]], t_s[fall_k[inner]], t_s[fall_k[inner] + 1])
        # np.nonzero walks row-major, so rises and falls pair up in order within each row.
        for row, start, end in zip(rows[rise_row].tolist(), starts.tolist(), ends.tolist(), strict=True):
            result[row].append((start, end))
    return result


# --------------------------------------------------------------------------------------------
# Night bounds
# --------------------------------------------------------------------------------------------
def _dark_intervals(grid: SkyGrid, twilight_deg: float) -> list[tuple[float, float]]:
    def margin(rows: np.ndarray, t: np.ndarray) -> np.ndarray:
        return twilight_deg - grid.sun_altitude_deg(t)

    return good_intervals(margin, 1, grid.t_s)[0]


def nights_between(
    site: Site, start_utc: datetime, end_utc: datetime, twilight_deg: float = ASTRONOMICAL_TWILIGHT_DEG
) -> list[tuple[datetime, datetime]]:
    """Every night (Sun below ``twilight_deg``) intersecting ``[start_utc, end_utc]``, whole (not clipped)."""
    start_utc, end_utc = _as_utc(start_utc), _as_utc(end_utc)
    # Search a day either side so that nights cut by the range are returned whole.
    grid = SkyGrid(site, start_utc - timedelta(days=1), end_utc + timedelta(days=1), step_s=300.0)
    nights = []
    for dark_start_s, dark_end_s in _dark_intervals(grid, twilight_deg):
        night = (grid.utc(dark_start_s), grid.utc(dark_end_s))
        if night[1] >= start_utc and night[0] <= end_utc:
            nights.append(night)
    return nights


def night_bounds(
    site: Site, around_utc: datetime, twilight_deg: float = ASTRONOMICAL_TWILIGHT_DEG
) -> tuple[datetime, datetime]:
    """The night containing ``around_utc``, or else the next one: (Sun sets below, rises above twilight)."""
    around_utc = _as_utc(around_utc)
    nights = nights_between(site, around_utc, around_utc + timedelta(days=1), twilight_deg)
    for night in nights:
        if night[1] >= around_utc:
            return night
    raise ValueError(
        f"no night (Sun below {twilight_deg:g} deg) at latitude {site.latitude_deg:g} within a day of "
        f"{around_utc:%Y-%m-%d %H:%M} UTC"
    )


# --------------------------------------------------------------------------------------------
# Observability of many sequences
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConstraintArrays:
    """Per-sequence limits; ``nan`` means "no such limit"."""

    min_altitude_deg: np.ndarray
    max_airmass: np.ndarray
    min_moon_separation_deg: np.ndarray
    at_night: np.ndarray  # bool

    @classmethod
    def build(
        cls,
        n: int,
        min_altitude_deg: Sequence[float] | np.ndarray | float = 0.0,
        max_airmass: Sequence[float | None] | np.ndarray | float | None = None,
        min_moon_separation_deg: Sequence[float | None] | np.ndarray | float | None = None,
        at_night: Sequence[bool] | np.ndarray | bool = True,
    ) -> ConstraintArrays:
        def column(values, dtype=float) -> np.ndarray:
            if values is None:
                values = np.nan
            array = np.asarray([np.nan if v is None else v for v in values] if _is_list(values) else values)
            return np.broadcast_to(array.astype(dtype), (n,)).copy()

        built = cls(
            column(min_altitude_deg), column(max_airmass), column(min_moon_separation_deg), column(at_night, bool)
        )
        if np.any(built.max_airmass < 1.0):
            raise ValueError("max_airmass must be >= 1")
        return built

    def effective_min_altitude_deg(self) -> np.ndarray:
        """The altitude limit combining min altitude and max airmass (sec z <= X  <=>  alt >= asin(1/X))."""
        airmass_alt = np.where(
            np.isnan(self.max_airmass),
            -90.0,
            np.degrees(np.arcsin(1.0 / np.where(np.isnan(self.max_airmass), 1.0, self.max_airmass))),
        )
        return np.fmax(np.nan_to_num(self.min_altitude_deg, nan=-90.0), airmass_alt)


def _is_list(values) -> bool:
    return isinstance(values, (list, tuple))


class TargetSet:
    """N targets on a :class:`SkyGrid` with their constraints: the "all constraints hold" function."""

    def __init__(self, grid: SkyGrid, ra_deg, dec_deg, constraints: ConstraintArrays, twilight_deg: float) -> None:
        self.grid = grid
        self.xyz = grid.targets_cirs(ra_deg, dec_deg)
        self.n = self.xyz.shape[0]
        self.constraints = constraints
        self.min_alt_deg = constraints.effective_min_altitude_deg() + SAFETY_MARGIN_DEG
        self.min_moon_deg = np.nan_to_num(constraints.min_moon_separation_deg, nan=-1.0) + SAFETY_MARGIN_DEG
        self.has_moon_limit = ~np.isnan(constraints.min_moon_separation_deg)
        self.at_night = constraints.at_night.astype(bool)
        self.twilight_deg = twilight_deg - SAFETY_MARGIN_DEG

    def altitude_margin(self, rows: np.ndarray, t: np.ndarray) -> np.ndarray:
        return self.grid.altitude_deg(self.xyz[rows], t) - self.min_alt_deg[rows]

    def moon_margin(self, rows: np.ndarray, t: np.ndarray) -> np.ndarray:
        margin = np.full(rows.shape, np.inf)
        limited = self.has_moon_limit[rows]
        if limited.any():
            sub = rows[limited]
            margin[limited] = self.grid.moon_separation_deg(self.xyz[sub], t[limited]) - self.min_moon_deg[sub]
        return margin

    def night_margin(self, rows: np.ndarray, t: np.ndarray) -> np.ndarray:
        margin = np.full(rows.shape, np.inf)
        night = self.at_night[rows]
        if night.any():
            margin[night] = self.twilight_deg - self.grid.sun_altitude_deg(t[night])
        return margin

    def margin(self, rows: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Smallest margin (deg) over all constraints of each (row, t): >= 0 where all of them hold."""
        return np.minimum(
            np.minimum(self.altitude_margin(rows, t), self.moon_margin(rows, t)), self.night_margin(rows, t)
        )

    def intervals(self) -> list[list[tuple[float, float]]]:
        """Per target, the intervals (seconds) in which every constraint holds."""
        return good_intervals(self.margin, self.n, self.grid.t_s)


def start_intervals(
    good: list[tuple[float, float]], duration_s: float, earliest_start_s: float, latest_start_s: float
) -> list[tuple[float, float]]:
    """Feasible START intervals of a block of ``duration_s`` inside the ``good`` intervals, within a start window."""
    starts = []
    for good_start, good_end in good:
        lo = max(good_start, earliest_start_s)
        hi = min(good_end - duration_s, latest_start_s)
        if hi >= lo:
            starts.append((lo, hi))
    return starts


def _longest_run_s(intervals: list[tuple[float, float]]) -> float:
    return max((end - start for start, end in intervals), default=-1.0)


def _clip(intervals: list[tuple[float, float]], lo: float, hi: float) -> list[tuple[float, float]]:
    return [(max(a, lo), min(b, hi)) for a, b in intervals if min(b, hi) >= max(a, lo)]


@dataclass(frozen=True)
class UnobservableCause:
    """Why a sequence has no feasible start: a ``code`` and the values that say it (no words).

    Codes and values (times are aware UTC datetimes, durations seconds, angles degrees); every cause has
    ``duration_s``, ``window_start`` and ``window_end`` (the part of the window the grid covers):

    * ``window_too_short``: the block does not fit in its window.
    * ``not_dark``: no run of night as long as the block; ``twilight_deg``, ``dark_s`` (the longest run).
    * ``too_low``: never above its limit at night for the block's length; ``limit_deg``, ``max_airmass``
      (or None), ``highest_deg``/``highest_at`` (at night, None without night), ``above_from``/``above_until``/
      ``above_s`` (the longest run above the limit at night, None/0 when there is none), ``rises``/``sets``
      (whether that run begins/ends with the target crossing its limit).
    * ``moon_too_close``: never far enough from the Moon at night for the block; ``min_moon_deg``,
      ``moon_deg`` (the largest separation reached at night in the window).
    * ``altitude_and_moon``: high enough and far enough from the Moon, but never both at once; ``limit_deg``,
      ``max_airmass``, ``min_moon_deg``.
    * ``fragmented``: observable only in pieces shorter than the block.
    """

    code: str
    values: dict


def unobservable_cause(
    targets: TargetSet, row: int, duration_s: float, earliest_s: float, latest_s: float
) -> UnobservableCause:
    """Why sequence ``row`` has no feasible start: the first constraint that alone rules it out."""
    grid = targets.grid
    lo, hi = max(0.0, earliest_s), min(grid.span_s, latest_s + duration_s)
    common = {"duration_s": float(duration_s), "window_start": grid.utc(lo), "window_end": grid.utc(max(lo, hi))}
    if latest_s < earliest_s or hi - lo < duration_s:
        return UnobservableCause("window_too_short", common)
    rows = np.array([row])

    def single(margin_fn) -> list[tuple[float, float]]:
        return _clip(good_intervals(lambda _r, t: margin_fn(rows.repeat(t.size), t), 1, grid.t_s)[0], lo, hi)

    dark = single(targets.night_margin)
    if _longest_run_s(dark) < duration_s:
        return UnobservableCause("not_dark", {**common, "twilight_deg": float(targets.twilight_deg),
                                              "dark_s": max(0.0, _longest_run_s(dark))})
    # Samples of the window at night: the highest altitude and the farthest Moon are read on them.
    t_dark = np.linspace(lo, hi, 200)
    t_dark = t_dark[targets.night_margin(rows.repeat(t_dark.size), t_dark) >= 0]
    airmass = targets.constraints.max_airmass[row]
    limits = {"limit_deg": float(targets.min_alt_deg[row] - SAFETY_MARGIN_DEG),
              "max_airmass": None if np.isnan(airmass) else float(airmass)}
    high = single(lambda r, t: np.minimum(targets.altitude_margin(r, t), targets.night_margin(r, t)))
    if _longest_run_s(high) < duration_s:
        highest_deg = highest_at = None
        if t_dark.size:
            altitudes = grid.altitude_deg(targets.xyz[row], t_dark)
            highest_deg, highest_at = float(np.max(altitudes)), grid.utc(float(t_dark[int(np.argmax(altitudes))]))
        longest = max(high, key=lambda run: run[1] - run[0], default=None)
        run = {"above_from": None, "above_until": None, "above_s": 0.0, "rises": False, "sets": False}
        if longest is not None:
            # Whether the run begins because the target rises above its limit (not because the night or the
            # window begins), and ends because it sets below it.
            edges = np.array([longest[0] - 1.0, longest[1] + 1.0])
            below = targets.altitude_margin(rows.repeat(2), edges) < 0
            run = {"above_from": grid.utc(longest[0]), "above_until": grid.utc(longest[1]),
                   "above_s": longest[1] - longest[0], "rises": bool(below[0] and longest[0] > lo),
                   "sets": bool(below[1] and longest[1] < hi)}
        return UnobservableCause("too_low", {**common, **limits, "highest_deg": highest_deg,
                                             "highest_at": highest_at, **run})
    if targets.has_moon_limit[row]:
        min_moon_deg = float(targets.constraints.min_moon_separation_deg[row])
        far = single(lambda r, t: np.minimum(targets.moon_margin(r, t), targets.night_margin(r, t)))
        if _longest_run_s(far) < duration_s:
            separation = grid.moon_separation_deg(targets.xyz[row], t_dark) if t_dark.size else np.array([])
            return UnobservableCause("moon_too_close", {
                **common, "min_moon_deg": min_moon_deg,
                "moon_deg": float(np.max(separation)) if separation.size else None})
        return UnobservableCause("altitude_and_moon", {**common, **limits, "min_moon_deg": min_moon_deg})
    return UnobservableCause("fragmented", common)


def explain_unobservable(targets: TargetSet, row: int, duration_s: float, earliest_s: float, latest_s: float) -> str:
    """:func:`unobservable_cause` in a sentence (request validation's wording; the scheduler has its own)."""
    cause = unobservable_cause(targets, row, duration_s, earliest_s, latest_s)
    v = cause.values
    when = f"between {v['window_start']:%Y-%m-%d %H:%M} and {v['window_end']:%Y-%m-%d %H:%M} UTC"
    minutes = f"{duration_s / 60:.0f} min"
    if cause.code == "window_too_short":
        return f"window too short: a {minutes} block does not fit {when}"
    if cause.code == "not_dark":
        return f"not {minutes} of night (Sun below {v['twilight_deg']:.0f} deg) {when}"
    if cause.code == "fragmented":
        return f"observable only in pieces shorter than {minutes} {when}"
    limit_text = f"{v.get('limit_deg', 0.0):.1f} deg" + (f" (airmass {v['max_airmass']:g})"
                                                           if v.get("max_airmass") is not None else "")
    if cause.code == "too_low":
        best = v["highest_deg"] if v["highest_deg"] is not None else float("nan")
        return f"never above {limit_text} at night for {minutes} {when} (highest {best:.1f} deg)"
    if cause.code == "moon_too_close":
        return f"closer than {v['min_moon_deg']:g} deg to the Moon (no {minutes} away from it) {when}"
    return f"above {limit_text} at night and {v['min_moon_deg']:g} deg from the Moon never at once for {minutes} {when}"


@dataclass(frozen=True)
class Observability:
    """For one sequence: when it can START so that it runs whole with every constraint held."""

    start_intervals_utc: list[tuple[datetime, datetime]]
    reason: str | None  # why it is never observable, None when it is

    @property
    def observable(self) -> bool:
        return bool(self.start_intervals_utc)


def observable_windows(
    *,
    site: Site,
    ra_deg: Sequence[float] | np.ndarray,
    dec_deg: Sequence[float] | np.ndarray,
    earliest_start_utc: Sequence[datetime],
    latest_start_utc: Sequence[datetime],
    duration_s: Sequence[float] | np.ndarray,
    min_altitude_deg: Sequence[float] | np.ndarray | float = 0.0,
    max_airmass: Sequence[float | None] | np.ndarray | float | None = None,
    min_moon_separation_deg: Sequence[float | None] | np.ndarray | float | None = None,
    at_night: Sequence[bool] | np.ndarray | bool = True,
    twilight_deg: float = ASTRONOMICAL_TWILIGHT_DEG,
    grid_step_s: float = 60.0,
) -> list[Observability]:
    """For each sequence, the intervals of feasible START times in its window (bounds on the start).

    A start ``s`` is feasible when, at every instant of ``[s, s + duration]``: the target is above its
    altitude limit and below its airmass limit, at least ``min_moon_separation_deg`` from the Moon,
    and (if ``at_night``) the Sun is below ``twilight_deg``. A sequence with none gets a reason.
    Windows may span several nights (request validation): the grid covers all of them at once.
    """
    n = len(ra_deg)
    if not (len(dec_deg) == len(earliest_start_utc) == len(latest_start_utc) == len(duration_s) == n):
        raise ValueError("ra_deg, dec_deg, windows and durations must have the same length")
    if n == 0:
        return []
    durations = np.asarray(duration_s, dtype=float)
    if np.any(durations <= 0):
        raise ValueError("durations must be > 0")
    earliest = [_as_utc(t) for t in earliest_start_utc]
    latest = [_as_utc(t) for t in latest_start_utc]
    ends = [t + timedelta(seconds=float(d)) for t, d in zip(latest, durations, strict=True)]
    grid = SkyGrid(site, min(earliest), max(max(ends), min(earliest) + timedelta(seconds=grid_step_s)), grid_step_s)
    constraints = ConstraintArrays.build(n, min_altitude_deg, max_airmass, min_moon_separation_deg, at_night)
    targets = TargetSet(grid, ra_deg, dec_deg, constraints, twilight_deg)
    results = []
    for row, good in enumerate(targets.intervals()):
        earliest_s, latest_s = grid.seconds(earliest[row]), grid.seconds(latest[row])
        starts = start_intervals(good, float(durations[row]), earliest_s, latest_s)
        reason = None if starts else explain_unobservable(targets, row, float(durations[row]), earliest_s, latest_s)
        results.append(Observability([(grid.utc(a), grid.utc(b)) for a, b in starts], reason))
    return results
