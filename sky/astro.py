"""The one place where astropy is configured for an observatory with no internet.

Every module that uses astropy time, coordinates or ephemerides imports it from here (or calls
:func:`configure_astropy_offline` first), so that nothing ever tries to download IERS tables,
site registries or JPL ephemerides. See ../shared/FIELD-NOTES.md, "astropy offline".

This module imports no Django: it is used by ``devices`` and the pure scheduling code too.
"""

from __future__ import annotations

import warnings
from datetime import UTC, datetime

_configured = False


def configure_astropy_offline() -> None:
    """Switch astropy to offline mode (idempotent, cheap after the first call)."""
    global _configured
    if _configured:
        return
    from astropy.coordinates import solar_system_ephemeris
    from astropy.utils import data as astropy_data
    from astropy.utils import iers

    # auto_download=False alone is not enough: with a bundled table older than 30 days astropy
    # raises for predictive values; auto_max_age=None accepts the bundled predictions.
    iers.conf.auto_download = False
    iers.conf.auto_max_age = None
    iers.conf.iers_degraded_accuracy = "warn"
    astropy_data.conf.allow_internet = False
    solar_system_ephemeris.set("builtin")
    try:
        from astropy.coordinates import NonRotationTransformationWarning

        # get_body('moon') in GCRS compared with ICRS targets warns on every call.
        warnings.filterwarnings("ignore", category=NonRotationTransformationWarning)
    except ImportError:  # older astropy
        pass
    from astropy.utils.exceptions import AstropyWarning

    warnings.filterwarnings("ignore", message=".*dubious year.*", category=AstropyWarning)
    _configured = True


configure_astropy_offline()

from astropy import units as u  # noqa: E402
from astropy.coordinates import EarthLocation  # noqa: E402
from astropy.time import Time  # noqa: E402


def earth_location(*, latitude_deg: float, longitude_deg: float, elevation_m: float) -> EarthLocation:
    """A site from its coordinates (never ``EarthLocation.of_site``, which may download)."""
    return EarthLocation.from_geodetic(lon=longitude_deg * u.deg, lat=latitude_deg * u.deg, height=elevation_m * u.m)


def utc_now() -> datetime:
    return datetime.now(UTC)


def to_time(value: datetime | Time | float) -> Time:
    """An astropy ``Time`` (UTC scale) from an aware datetime, a Time, or a JD float."""
    if isinstance(value, Time):
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime: PyROS works in aware UTC datetimes only")
        return Time(value.astimezone(UTC), scale="utc")
    return Time(float(value), format="jd", scale="utc")


def to_datetime(value: Time) -> datetime:
    """An aware UTC datetime from an astropy Time."""
    return value.to_datetime(timezone=UTC)
