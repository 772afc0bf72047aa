"""Observability and night bounds, compared with astropy point by point."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from astropy.coordinates import AltAz, SkyCoord, get_body

from sky.astro import earth_location, to_time, u
from sky.observability import Site, SkyGrid, night_bounds, nights_between, observable_windows

OHP = Site(latitude_deg=43.9317, longitude_deg=5.7122, elevation_m=650.0)
LOCATION = earth_location(latitude_deg=43.9317, longitude_deg=5.7122, elevation_m=650.0)
EVENING = datetime(2026, 12, 16, 17, 45, tzinfo=UTC)
MORNING = datetime(2026, 12, 17, 5, 21, tzinfo=UTC)


def sun_altitude_deg(when: datetime) -> float:
    t = to_time(when)
    return float(get_body("sun", t, location=LOCATION).transform_to(AltAz(obstime=t, location=LOCATION)).alt.deg)


def test_night_bounds_match_astropy_within_a_minute() -> None:
    start, end = night_bounds(OHP, datetime(2026, 12, 16, 12, 0, tzinfo=UTC))
    # The shared benchmark's astroplan twilights for this night: 17:44:42.8 and 05:21:20.2 UTC.
    assert abs((start - datetime(2026, 12, 16, 17, 44, 42, tzinfo=UTC)).total_seconds()) < 60
    assert abs((end - datetime(2026, 12, 17, 5, 21, 20, tzinfo=UTC)).total_seconds()) < 60
    assert sun_altitude_deg(start - timedelta(minutes=1)) > -18.0 > sun_altitude_deg(start + timedelta(minutes=1))
    assert sun_altitude_deg(end - timedelta(minutes=1)) < -18.0 < sun_altitude_deg(end + timedelta(minutes=1))


def test_night_bounds_inside_the_night_returns_that_night() -> None:
    assert night_bounds(OHP, datetime(2026, 12, 17, 1, 0, tzinfo=UTC)) == night_bounds(OHP, EVENING)


def test_nights_between_lists_each_night_once() -> None:
    nights = nights_between(OHP, datetime(2026, 12, 16, 12, tzinfo=UTC), datetime(2026, 12, 19, 12, tzinfo=UTC))
    assert len(nights) == 3
    assert all(end - start > timedelta(hours=11) for start, end in nights)


def test_no_night_at_the_pole_in_summer_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no night"):
        night_bounds(Site(80.0, 0.0, 0.0), datetime(2026, 6, 21, tzinfo=UTC))


@pytest.mark.filterwarnings("ignore::astropy.coordinates.NonRotationTransformationWarning")
def test_altitude_and_moon_separation_agree_with_astropy() -> None:
    grid = SkyGrid(OHP, EVENING, MORNING, 60)
    rng = np.random.default_rng(3)
    ra, dec = rng.uniform(0, 360, 15), rng.uniform(-40, 89, 15)
    t_s = np.linspace(0, grid.span_s, 25)
    times = to_time(EVENING) + t_s * u.s
    frame = AltAz(obstime=times[None, :], location=LOCATION, pressure=0 * u.hPa)
    targets = SkyCoord(ra[:, None] * u.deg, dec[:, None] * u.deg)
    reference = targets.transform_to(frame)
    xyz = grid.targets_cirs(ra, dec)[:, None, :]
    assert np.abs(grid.altitude_deg(xyz, t_s[None, :]) - reference.alt.deg).max() < 2 / 3600
    moon = get_body("moon", times, location=LOCATION)
    assert np.abs(grid.moon_separation_deg(xyz, t_s[None, :]) - moon[None, :].separation(targets).deg).max() < 2 / 3600


def test_feasible_starts_hold_at_every_instant() -> None:
    """A block starting anywhere in a returned interval stays above its limit (checked every 10 s)."""
    (result,) = observable_windows(
        site=OHP,
        ra_deg=[94.45657],
        dec_deg=[-11.52073],
        earliest_start_utc=[EVENING],
        latest_start_utc=[MORNING],
        duration_s=[3360],
        min_altitude_deg=30.0,
    )
    assert result.observable and result.reason is None
    for first, last in result.start_intervals_utc:
        for start in (first, last):
            offsets = np.arange(0, 3361, 10.0)
            frame = AltAz(obstime=to_time(start) + offsets * u.s, location=LOCATION, pressure=0 * u.hPa)
            alt = SkyCoord(94.45657 * u.deg, -11.52073 * u.deg).transform_to(frame).alt.deg
            assert alt.min() >= 30.0
        # One minute earlier than the first start, the block would dip below 30 deg at its start.
        frame = AltAz(obstime=to_time(first - timedelta(minutes=1)), location=LOCATION, pressure=0 * u.hPa)
        assert SkyCoord(94.45657 * u.deg, -11.52073 * u.deg).transform_to(frame).alt.deg < 30.0


def test_reasons_name_the_constraint_that_fails() -> None:
    results = observable_windows(
        site=OHP,
        ra_deg=[94.0, 94.0, 94.0],
        dec_deg=[-60.0, 20.0, 20.0],
        earliest_start_utc=[EVENING] * 3,
        latest_start_utc=[MORNING, MORNING, EVENING + timedelta(minutes=10)],
        duration_s=[600, 600, 1200],
        min_altitude_deg=[30.0, 30.0, 30.0],
        max_airmass=[None, 1.01, None],
    )
    assert not any(r.observable for r in results)
    assert results[0].reason.startswith("never above 30.0 deg")
    assert "airmass 1.01" in results[1].reason
    assert "highest" in results[1].reason
    assert results[2].reason.startswith("never above") or "window" in results[2].reason
