"""Coordinate conversions between ICRS/J2000 (what PyROS uses) and INDI's apparent "EOD" coordinates
(true equator and equinox of date, with aberration: astropy's TETE frame), plus a fast local sidereal
time for the simulators. astropy comes from ``common.astro`` (offline configuration)."""

from __future__ import annotations

import math
from datetime import datetime

from common.astro import configure_astropy_offline

configure_astropy_offline()

from astropy import units as u  # noqa: E402
from astropy.coordinates import ICRS, TETE, SkyCoord  # noqa: E402
from astropy.time import Time  # noqa: E402


def j2000_to_apparent(ra_deg: float, dec_deg: float, when_utc: datetime) -> tuple[float, float]:
    """ICRS (deg) -> apparent RA (hours) and Dec (deg) of date, as INDI's EQUATORIAL_EOD_COORD wants."""
    t = Time(when_utc, scale="utc")
    c = SkyCoord(ra=ra_deg * u.deg, dec=dec_deg * u.deg, frame=ICRS()).transform_to(TETE(obstime=t))
    return float(c.ra.hour), float(c.dec.deg)


def apparent_to_j2000(ra_hours: float, dec_deg: float, when_utc: datetime) -> tuple[float, float]:
    """Apparent RA (hours)/Dec (deg) of date -> ICRS (deg)."""
    t = Time(when_utc, scale="utc")
    c = SkyCoord(ra=ra_hours * u.hourangle, dec=dec_deg * u.deg, frame=TETE(obstime=t)).transform_to(ICRS())
    return float(c.ra.deg) % 360.0, float(c.dec.deg)


def local_sidereal_time_deg(when_utc: datetime, longitude_deg: float) -> float:
    """Local mean sidereal time (IAU 1982 GMST, good to ~0.1 s over decades), degrees."""
    jd = when_utc.timestamp() / 86400.0 + 2440587.5
    d = jd - 2451545.0
    gmst = 280.46061837 + 360.98564736629 * d
    return (gmst + longitude_deg) % 360.0


def altaz_deg(ra_deg: float, dec_deg: float, *, lst_deg: float, latitude_deg: float) -> tuple[float, float]:
    """Altitude and azimuth (from north through east) of an apparent position, no refraction."""
    ha = math.radians(lst_deg - ra_deg)
    dec, lat = math.radians(dec_deg), math.radians(latitude_deg)
    sin_alt = math.sin(dec) * math.sin(lat) + math.cos(dec) * math.cos(lat) * math.cos(ha)
    alt = math.asin(max(-1.0, min(1.0, sin_alt)))
    az = math.atan2(
        -math.cos(dec) * math.sin(ha), math.sin(dec) * math.cos(lat) - math.cos(dec) * math.sin(lat) * math.cos(ha)
    )
    return math.degrees(alt), math.degrees(az) % 360.0


def radec_from_altaz(alt_deg: float, az_deg: float, *, lst_deg: float, latitude_deg: float) -> tuple[float, float]:
    """Apparent RA/Dec (deg) of an alt/az direction."""
    alt, az, lat = math.radians(alt_deg), math.radians(az_deg), math.radians(latitude_deg)
    sin_dec = math.sin(alt) * math.sin(lat) + math.cos(alt) * math.cos(lat) * math.cos(az)
    dec = math.asin(max(-1.0, min(1.0, sin_dec)))
    ha = math.atan2(
        -math.sin(az) * math.cos(alt), math.cos(lat) * math.sin(alt) - math.sin(lat) * math.cos(alt) * math.cos(az)
    )
    return (lst_deg - math.degrees(ha)) % 360.0, math.degrees(dec)
