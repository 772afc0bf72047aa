"""ICRS <-> apparent-of-date conversions (what INDI's EQUATORIAL_EOD_COORD speaks), erfa against astropy."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta

from devices import coords
from devices.coords import apparent_to_j2000, j2000_to_apparent
from devices.testing import scaled_s
from sky.astro import to_time, u


def j2000_to_apparent_astropy(ra_deg: float, dec_deg: float, when_utc: datetime) -> tuple[float, float]:
    """The reference: astropy's TETE frame (true equator and equinox of date)."""
    from astropy.coordinates import ICRS, TETE, SkyCoord

    c = SkyCoord(ra=ra_deg * u.deg, dec=dec_deg * u.deg, frame=ICRS()).transform_to(TETE(obstime=to_time(when_utc)))
    return float(c.ra.hour), float(c.dec.deg)


def apparent_to_j2000_astropy(ra_hours: float, dec_deg: float, when_utc: datetime) -> tuple[float, float]:
    from astropy.coordinates import ICRS, TETE, SkyCoord

    c = SkyCoord(ra=ra_hours * u.hourangle, dec=dec_deg * u.deg, frame=TETE(obstime=to_time(when_utc)))
    icrs = c.transform_to(ICRS())
    return float(icrs.ra.deg) % 360.0, float(icrs.dec.deg)


def _sep_arcsec(ra1_deg: float, dec1_deg: float, ra2_deg: float, dec2_deg: float) -> float:
    from alert_manager.grouping import angular_separation_deg

    return angular_separation_deg(ra1_deg, dec1_deg, ra2_deg, dec2_deg) * 3600.0


def test_erfa_matches_astropys_tete_frame_both_ways() -> None:
    rng = random.Random(7)
    start = datetime(2020, 1, 1, tzinfo=UTC)
    for _ in range(40):
        when = start + timedelta(seconds=rng.uniform(0, 5 * 365.25 * 86400))  # within the bundled IERS tables
        ra, dec = rng.uniform(0, 360), rng.uniform(-89.5, 89.5)
        ra_h, dec_app = j2000_to_apparent(ra, dec, when)
        ref_h, ref_dec = j2000_to_apparent_astropy(ra, dec, when)
        assert _sep_arcsec(ra_h * 15, dec_app, ref_h * 15, ref_dec) < 1e-3  # 1 mas (they agree to ~1 uas)
        # Precession alone moves a position by ~50"/yr from J2000: the conversion does something.
        assert _sep_arcsec(ra_h * 15, dec_app, ra, dec) > 100.0
        back = apparent_to_j2000(ra_h, dec_app, when)
        assert _sep_arcsec(*back, ra, dec) < 1e-3
        assert _sep_arcsec(*back, *apparent_to_j2000_astropy(ra_h, dec_app, when)) < 1e-3


def test_a_conversion_is_fast_from_the_first_call() -> None:
    """The first slew of a process must not pay astropy's ~0.85 s frame set-up (the alert latency path)."""
    started = time.perf_counter()
    j2000_to_apparent(56.2, 9.8, datetime.now(UTC))
    assert time.perf_counter() - started < scaled_s(0.05)
    started = time.perf_counter()
    for i in range(100):
        coords.j2000_to_apparent(10.0 + i, -20.0, datetime.now(UTC))
    assert (time.perf_counter() - started) / 100 < scaled_s(0.002)
