"""The reference catalogue, the plate solver and the ephemeris PyROS uses, chosen in the settings.

Like TOM Toolkit's facility registry: ``PYROS_CATALOG_CLASSES`` maps a name to a class (import path),
``PYROS_REFERENCE_CATALOG = {"NAME": ..., "OPTIONS": {...}}`` picks one and gives its options. A
missing or wrong setting raises ``ImproperlyConfigured`` naming the setting. Nothing here fetches
anything: only a configured online backend (``gaia-dr3``) queries the network, and only for a field
its cache does not have.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from devices.catalogs import CatalogError, ReferenceCatalog

DEFAULT_CATALOG_CLASSES = {
    "simulated": "devices.catalogs.SimulatedSkyCatalog",
    "local": "devices.catalogs.LocalCatalogFile",
    "gaia-dr3": "devices.catalogs.GaiaDR3Catalog",
}
# The options each registered backend cannot do without, named in the error message.
_REQUIRED_OPTIONS = {"local": ("path",), "gaia-dr3": ("cache_dir",)}


def _catalog_setting() -> dict[str, Any]:
    value = getattr(settings, "PYROS_REFERENCE_CATALOG", None) or {"NAME": "simulated", "OPTIONS": {}}
    if not isinstance(value, dict) or not value.get("NAME"):
        raise ImproperlyConfigured('PYROS_REFERENCE_CATALOG must be {"NAME": <a PYROS_CATALOG_CLASSES name>, '
                                   '"OPTIONS": {...}}')
    return value


def catalog_by_name(name: str, options: dict[str, Any] | None = None) -> ReferenceCatalog:
    classes = getattr(settings, "PYROS_CATALOG_CLASSES", None) or DEFAULT_CATALOG_CLASSES
    if name not in classes:
        raise ImproperlyConfigured(f"PYROS_REFERENCE_CATALOG names catalogue {name!r}, which is not in "
                                   f"PYROS_CATALOG_CLASSES ({', '.join(sorted(classes))})")
    options = dict(options or {})
    for option in _REQUIRED_OPTIONS.get(name, ()):
        if not options.get(option):
            raise ImproperlyConfigured(f"PYROS_REFERENCE_CATALOG['OPTIONS']['{option}'] is required by the {name!r} "
                                       f"catalogue (environment: PYROS_CATALOG_{option.upper()})")
    try:
        cls = import_string(classes[name])
    except ImportError as exc:
        raise ImproperlyConfigured(f"PYROS_CATALOG_CLASSES[{name!r}] = {classes[name]!r} cannot be imported: "
                                   f"{exc}") from exc
    try:
        return cls(**options)
    except (TypeError, CatalogError) as exc:
        raise ImproperlyConfigured(f"PYROS_REFERENCE_CATALOG['OPTIONS'] do not suit {name!r}: {exc}") from exc


@lru_cache(maxsize=4)
def _cached(name: str, frozen_options: tuple) -> ReferenceCatalog:
    return catalog_by_name(name, dict(frozen_options))


def reference_catalog() -> ReferenceCatalog:
    """The configured reference catalogue (one instance per configuration, per process)."""
    setting = _catalog_setting()
    options = setting.get("OPTIONS") or {}
    return _cached(setting["NAME"], tuple(sorted((k, str(v) if not isinstance(v, (int, float)) else v)
                                                 for k, v in options.items())))


def astrometry_index_dir() -> str:
    """Where astrometry.net's index files are (empty: blind solving is off)."""
    return str(getattr(settings, "PYROS_ASTROMETRY_INDEX_DIR", "") or "")


def skybot_moving_objects(ra_deg: float, dec_deg: float, radius_deg: float, when_utc) -> list[dict[str, Any]]:
    """Known solar-system objects in a cone at a time, from IMCCE's SkyBoT through astroquery (online)."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from astropy.time import Time
    from astroquery.imcce import Skybot

    try:
        table = Skybot.cone_search(SkyCoord(ra_deg, dec_deg, unit="deg"), radius_deg * u.deg, Time(when_utc),
                                   location="500")
    except RuntimeError:  # SkyBoT says "No solar system object was found"
        return []
    return [{"name": str(row["Name"]), "ra_deg": float(row["RA"].to_value(u.deg) if hasattr(row["RA"], "to_value")
                                                         else row["RA"]),
             "dec_deg": float(row["DEC"].to_value(u.deg) if hasattr(row["DEC"], "to_value") else row["DEC"]),
             "mag": float(row["V"]) if "V" in table.colnames else None} for row in table]


def moving_objects_backend():
    """The configured ephemeris (PYROS_EPHEMERIS): None, or a function (ra, dec, radius, when) -> objects."""
    name = str(getattr(settings, "PYROS_EPHEMERIS", "") or "").strip().lower()
    if not name:
        return None
    if name == "skybot":
        return skybot_moving_objects
    raise ImproperlyConfigured(f"PYROS_EPHEMERIS = {name!r}: use '' (none) or 'skybot'")
