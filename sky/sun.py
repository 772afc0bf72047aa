"""The Sun at a site: the one Sun altitude computation and cache of PyROS.

The majordome's phase (day / dusk / night / dawn), the alert visibility check, the dashboard's night
and the demo site all ask here. Each (site, UTC day) gets one :class:`sky.observability.SkyGrid`
(the Sun only: topocentric CIRS directions on 3-hourly nodes, splined, and the Earth rotation angle),
built once per process and day (~20 ms of astropy) and then evaluated for any instant or array of
instants in microseconds. The scheduler's grids use the same code, so every part of PyROS agrees on
when the night starts (measured against astropy's AltAz in ``sky/tests/test_sun.py``).
"""

from __future__ import annotations

import math
import threading
from datetime import UTC, datetime, timedelta

import numpy as np

from sky.observability import Site, SkyGrid, night_bounds

__all__ = ["sun_altitude_deg", "sun_altitudes_deg", "sun_position", "night_of", "sky_site", "Site"]

_DAY_S = 86400
# Each day's grid overlaps its neighbours so that a time near midnight never needs two grids.
_MARGIN_S = 3 * 3600
_lock = threading.Lock()
_grids: dict[tuple[float, float, float, int], SkyGrid] = {}


def sky_site(site) -> Site:  # noqa: ANN001 - any object with latitude_deg / longitude_deg / elevation_m
    """A :class:`Site` from anything that has the three coordinates (a Django ``Site`` row, a device site)."""
    if isinstance(site, Site):
        return site
    return Site(latitude_deg=float(site.latitude_deg), longitude_deg=float(site.longitude_deg),
                elevation_m=float(getattr(site, "elevation_m", 0.0) or 0.0), name=str(getattr(site, "name", "") or ""))


def _grid(site: Site, day: int) -> SkyGrid:
    key = (site.latitude_deg, site.longitude_deg, site.elevation_m, day)
    with _lock:
        grid = _grids.get(key)
    if grid is None:
        start = datetime.fromtimestamp(day * _DAY_S - _MARGIN_S, tz=UTC)
        grid = SkyGrid(site, start, start + timedelta(seconds=_DAY_S + 2 * _MARGIN_S), step_s=3600.0, moon=False)
        with _lock:
            if len(_grids) > 32:  # a long-running worker: days go by
                _grids.clear()
            _grids[key] = grid
    return grid


def sun_altitudes_deg(site, times_unix_s: np.ndarray) -> np.ndarray:  # noqa: ANN001
    """Geometric altitude (deg) of the Sun at each instant (seconds since 1970, UTC)."""
    site = sky_site(site)
    times = np.asarray(times_unix_s, dtype=float)
    out = np.empty(times.shape, dtype=float)
    days = np.floor(times / _DAY_S).astype(np.int64)
    for day in np.unique(days):
        grid = _grid(site, int(day))
        mask = days == day
        out[mask] = grid.sun_altitude_deg(times[mask] - grid.start_utc.timestamp())
    return out


def sun_altitude_deg(site, when: datetime) -> float:  # noqa: ANN001
    """Altitude of the Sun (deg) at ``when`` (aware UTC)."""
    if when.tzinfo is None:
        raise ValueError("naive datetime: PyROS works in aware UTC datetimes only")
    return float(sun_altitudes_deg(site, np.array([when.timestamp()]))[0])


def sun_position(site, when: datetime) -> tuple[float, bool]:  # noqa: ANN001
    """(altitude in degrees, rising?) of the Sun at ``when``."""
    if when.tzinfo is None:
        raise ValueError("naive datetime: PyROS works in aware UTC datetimes only")
    t = when.timestamp()
    alt = sun_altitudes_deg(site, np.array([t, t + 120.0]))
    return float(alt[0]), bool(alt[1] > alt[0])


_night_lock = threading.Lock()
_nights: dict[tuple, tuple[datetime, datetime] | str] = {}
_NIGHT_CACHE_S = 600


def night_of(site, around_utc: datetime, *, twilight_deg: float) -> tuple[datetime, datetime]:  # noqa: ANN001
    """The night containing ``around_utc`` or else the next one (Sun below ``twilight_deg``), cached per
    10 minutes; raises ValueError where there is none within a day (polar summer)."""
    site = sky_site(site)
    key = (site.latitude_deg, site.longitude_deg, site.elevation_m, twilight_deg,
           math.floor(around_utc.timestamp() / _NIGHT_CACHE_S))
    with _night_lock:
        cached = _nights.get(key)
    if cached is None:
        try:
            cached = night_bounds(site, around_utc, twilight_deg=twilight_deg)
        except ValueError as exc:
            cached = str(exc)
        with _night_lock:
            if len(_nights) > 64:
                _nights.clear()
            _nights[key] = cached
    if isinstance(cached, str):
        raise ValueError(cached)
    return cached
