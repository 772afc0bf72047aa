"""sky.sun against astropy's AltAz, and the rules every user of it relies on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from sky import sun
from sky.observability import Site

CALERN = Site(latitude_deg=43.7528, longitude_deg=6.9222, elevation_m=1270.0, name="Calern")


def _astropy_sun_alt(site: Site, when: datetime) -> float:
    from astropy import units as u
    from astropy.coordinates import AltAz, get_sun

    from sky.astro import earth_location, to_time

    loc = earth_location(latitude_deg=site.latitude_deg, longitude_deg=site.longitude_deg, elevation_m=site.elevation_m)
    t = to_time(when)
    return float(get_sun(t).transform_to(AltAz(obstime=t, location=loc, pressure=0 * u.hPa)).alt.deg)


@pytest.mark.parametrize("hours", [0.0, 5.5, 11.25, 17.0, 23.9, 24.1, 30.0])
def test_altitude_matches_astropy_across_days(hours):
    when = datetime(2026, 12, 4, 0, 0, tzinfo=UTC) + timedelta(hours=hours)
    assert sun.sun_altitude_deg(CALERN, when) == pytest.approx(_astropy_sun_alt(CALERN, when), abs=0.01)


def test_array_spanning_midnight_equals_scalar_calls():
    t0 = datetime(2026, 12, 4, 22, 0, tzinfo=UTC)
    times = [t0 + timedelta(minutes=m) for m in range(0, 240, 7)]
    array = sun.sun_altitudes_deg(CALERN, np.array([t.timestamp() for t in times]))
    assert array.tolist() == pytest.approx([sun.sun_altitude_deg(CALERN, t) for t in times], abs=1e-9)


def test_rising_in_the_morning_setting_in_the_evening():
    # Calern: the Sun rises around 07:00 UTC and sets around 16:00 UTC in December.
    assert sun.sun_position(CALERN, datetime(2026, 12, 4, 7, 0, tzinfo=UTC))[1] is True
    assert sun.sun_position(CALERN, datetime(2026, 12, 4, 16, 0, tzinfo=UTC))[1] is False


def test_night_follows_the_twilight_asked_for():
    when = datetime(2026, 12, 4, 22, 0, tzinfo=UTC)
    astro_start, astro_end = sun.night_of(CALERN, when, twilight_deg=-18.0)
    nautical_start, nautical_end = sun.night_of(CALERN, when, twilight_deg=-12.0)
    assert nautical_start < astro_start < when < astro_end < nautical_end
    assert sun.sun_altitude_deg(CALERN, astro_start) == pytest.approx(-18.0, abs=0.01)
    assert sun.sun_altitude_deg(CALERN, nautical_end) == pytest.approx(-12.0, abs=0.01)


def test_no_night_in_polar_summer_is_an_error_with_a_reason():
    north = Site(latitude_deg=78.2, longitude_deg=15.6, elevation_m=0.0)
    with pytest.raises(ValueError, match="no night"):
        sun.night_of(north, datetime(2026, 6, 21, 0, 0, tzinfo=UTC), twilight_deg=-18.0)


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="naive"):
        sun.sun_altitude_deg(CALERN, datetime(2026, 12, 4, 22, 0))  # noqa: DTZ001
