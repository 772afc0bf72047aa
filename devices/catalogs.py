"""Reference star catalogues behind one interface (pure: numpy + astropy, no Django).

A :class:`ReferenceCatalog` answers a cone search with one numpy structured array
(:data:`CONE_DTYPE`): positions at the epoch of the frame (proper motion applied), and for each
band PyROS's filters use (:data:`BANDS`) a magnitude and its error, NaN where the catalogue has none.
Magnitudes are Vega-like Johnson-Cousins (``Clear`` is an unfiltered CCD, close to Gaia G);
:data:`AB_MINUS_VEGA` converts them to AB.

Backends:

* :class:`SimulatedSkyCatalog` - the simulator's synthetic sky (:func:`devices.sky.catalog_stars`):
  the demo default, complete to V=21 so every detectable star is in it;
* :class:`LocalCatalogFile` - a cone kept on disk (FITS, CSV/ECSV, or Parquet with pyarrow), the
  form an observatory without internet keeps: PyROS columns (``ra_deg``, ``dec_deg``, ``mag_R``,
  ``mag_R_err``...) or Gaia's (``ra``, ``dec``, ``pmra``, ``pmdec``, ``ref_epoch``,
  ``phot_g_mean_mag``, ``phot_bp_mean_mag``, ``phot_rp_mean_mag`` and their flux-over-error);
* :class:`GaiaDR3Catalog` - Gaia DR3 online through astroquery, with a per-field cache on disk:
  a field is fetched once, then read from the cache like a local file.

Gaia's G, BP, RP become V, R, I with the polynomials in (BP-RP) of Riello et al. 2021 (A&A 649,
A3, table C.2; valid for -0.5 < BP-RP < 2.75, scatter 0.030/0.032/0.038 mag, added to the errors);
Clear is G itself (0.1 mag added: an unfiltered CCD's band is only close to G). Gaia gives no
U or B of that quality: those stay NaN and the analyzer says so instead of inventing a zero point.
"""

from __future__ import annotations

import abc
import hashlib
import json
import math
import os
import threading
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

BANDS = ("U", "B", "V", "R", "I", "Clear")
# AB minus Vega magnitudes: Blanton & Roweis 2007 (AJ 133, 734) for UBVRI; Gaia G for Clear
# (the Gaia DR3 G zero points, 25.7934 AB - 25.6874 Vega).
AB_MINUS_VEGA = {"U": 0.79, "B": -0.09, "V": 0.02, "R": 0.21, "I": 0.45, "Clear": 0.11}
CONE_DTYPE = np.dtype(
    [("ra_deg", "f8"), ("dec_deg", "f8"), ("pm_ra_mas_yr", "f4"), ("pm_dec_mas_yr", "f4")]
    + [item for band in BANDS for item in ((f"mag_{band}", "f4"), (f"mag_{band}_err", "f4"))]
)
GAIA_DR3_EPOCH = 2016.0
J2000_EPOCH = 2000.0
# Riello et al. 2021, table C.2: G - X = sum c_k (BP-RP)^k, and the scatter of the relation.
_GAIA_TO_JOHNSON = {
    "V": ((-0.02704, 0.01424, -0.2156, 0.01426), 0.03017),
    "R": ((-0.02275, 0.3961, -0.1243, -0.01396, 0.003775), 0.03167),
    "I": ((0.01753, 0.76, -0.0991), 0.03765),
}
_GAIA_COLOUR_RANGE = (-0.5, 2.75)
_CLEAR_FROM_G_ERR = 0.1
_SIMULATED_MAG_ERR = 0.01


class CatalogError(Exception):
    """A catalogue cannot answer (file unreadable, columns missing, service down); the message says why."""


def julian_year(mjd: float) -> float:
    """Julian epoch (J2000.0 = MJD 51544.5) of an MJD."""
    return J2000_EPOCH + (mjd - 51544.5) / 365.25


class ReferenceCatalog(abc.ABC):
    """A cone search returning :data:`CONE_DTYPE` rows, brightest first (in V, else R, else Clear)."""

    name: str = "catalogue"
    #: The band the catalogue is complete to ``depth_mag`` in, when it is known (a source fainter than
    #: that and absent from the catalogue is not news). None: estimated from the stars returned.
    depth_mag: float | None = None

    @abc.abstractmethod
    def cone(self, ra_deg: float, dec_deg: float, radius_deg: float, *, epoch_jyear: float | None = None) -> np.ndarray:
        """Stars within ``radius_deg`` of (ra_deg, dec_deg) ICRS, positions at ``epoch_jyear``
        (the catalogue's own epoch when None)."""

    def __repr__(self) -> str:
        return self.name


def empty_cone() -> np.ndarray:
    return np.zeros(0, dtype=CONE_DTYPE)


def propagate(ra_deg, dec_deg, pm_ra_mas_yr, pm_dec_mas_yr, years: float):
    """Linear proper motion over ``years`` (pmra includes cos(dec), as Gaia's): good to a few mas over
    decades away from the poles, far below a pixel."""
    if years == 0:
        return np.asarray(ra_deg, dtype=np.float64), np.asarray(dec_deg, dtype=np.float64)
    pm_ra = np.nan_to_num(np.asarray(pm_ra_mas_yr, dtype=np.float64))
    pm_dec = np.nan_to_num(np.asarray(pm_dec_mas_yr, dtype=np.float64))
    dec = np.asarray(dec_deg, dtype=np.float64) + pm_dec * years / 3.6e6
    cos_dec = np.maximum(np.cos(np.radians(dec)), 1e-6)
    ra = (np.asarray(ra_deg, dtype=np.float64) + pm_ra * years / 3.6e6 / cos_dec) % 360.0
    return ra, dec


def _unit_vectors(ra_deg, dec_deg) -> np.ndarray:
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    return np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])


def _sort_brightest_first(stars: np.ndarray) -> np.ndarray:
    for band in ("V", "R", "Clear"):
        mags = stars[f"mag_{band}"]
        if len(mags) and np.isfinite(mags).any():
            return stars[np.argsort(np.where(np.isfinite(mags), mags, np.inf), kind="stable")]
    return stars


# --------------------------------------------------------------------------------------------
# Simulator
# --------------------------------------------------------------------------------------------


class SimulatedSkyCatalog(ReferenceCatalog):
    """The simulator's synthetic sky through the catalogue interface (no proper motions)."""

    name = "simulated sky"

    def __init__(self, *, mag_limit: float = 21.0) -> None:
        self.mag_limit = float(mag_limit)
        self.depth_mag = None

    def cone(self, ra_deg: float, dec_deg: float, radius_deg: float, *, epoch_jyear: float | None = None) -> np.ndarray:
        from devices.sky import catalog_stars

        stars = catalog_stars(ra_deg, dec_deg, radius_deg, mag_limit=self.mag_limit)
        out = np.zeros(len(stars), dtype=CONE_DTYPE)
        out["ra_deg"], out["dec_deg"] = stars["ra_deg"], stars["dec_deg"]
        for band in BANDS:
            out[f"mag_{band}"] = stars[f"mag_{band}"]
            out[f"mag_{band}_err"] = _SIMULATED_MAG_ERR
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SimulatedSkyCatalog) and other.mag_limit == self.mag_limit

    def __hash__(self) -> int:
        return hash(("simulated", self.mag_limit))

    def __repr__(self) -> str:
        return f"simulated sky (V<={self.mag_limit:g})"


# --------------------------------------------------------------------------------------------
# Tables: PyROS columns or Gaia's, standardised
# --------------------------------------------------------------------------------------------


def _column(table, *names: str):
    lower = {name.lower(): name for name in table.colnames}
    for name in names:
        if name.lower() in lower:
            column = table[lower[name.lower()]]
            return np.ma.filled(np.ma.asarray(column, dtype=np.float64), np.nan)
    return None


def gaia_to_johnson(g, bp, rp, g_err=None, bp_err=None, rp_err=None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """V, R, I and Clear (mag, err) from Gaia G, BP, RP (Riello et al. 2021, table C.2); NaN outside
    the colour range the relations were fitted on."""
    g, bp, rp = (np.asarray(v, dtype=np.float64) for v in (g, bp, rp))
    zeros = np.zeros_like(g)
    g_err = zeros if g_err is None else np.nan_to_num(np.asarray(g_err, dtype=np.float64))
    colour = bp - rp
    colour_err = np.hypot(zeros if bp_err is None else np.nan_to_num(bp_err),
                          zeros if rp_err is None else np.nan_to_num(rp_err))
    valid = np.isfinite(colour) & (colour > _GAIA_COLOUR_RANGE[0]) & (colour < _GAIA_COLOUR_RANGE[1])
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for band, (coeffs, scatter) in _GAIA_TO_JOHNSON.items():
        poly = np.polynomial.polynomial.polyval(colour, coeffs)
        slope = np.polynomial.polynomial.polyval(colour, np.polynomial.polynomial.polyder(coeffs))
        mag = np.where(valid, g - poly, np.nan)
        err = np.where(valid, np.sqrt(g_err**2 + (slope * colour_err) ** 2 + scatter**2), np.nan)
        out[band] = (mag, err)
    out["Clear"] = (g, np.sqrt(g_err**2 + _CLEAR_FROM_G_ERR**2))
    return out


def _mag_err_from_flux_over_error(value) -> np.ndarray | None:
    if value is None:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(value > 0, 1.0857 / value, np.nan)


def standardise_table(table, *, default_epoch: float | None = None) -> tuple[np.ndarray, float]:
    """An astropy Table with PyROS or Gaia columns -> (CONE_DTYPE array, reference epoch)."""
    ra = _column(table, "ra_deg", "ra", "RA_ICRS", "RAJ2000", "RA")
    dec = _column(table, "dec_deg", "dec", "DE_ICRS", "DEJ2000", "DEC")
    if ra is None or dec is None:
        raise CatalogError(f"no RA/Dec columns (ra_deg/dec_deg or Gaia's ra/dec) among {table.colnames[:12]}")
    out = np.zeros(len(ra), dtype=CONE_DTYPE)
    for band in BANDS:
        out[f"mag_{band}"] = np.nan
        out[f"mag_{band}_err"] = np.nan
    out["ra_deg"], out["dec_deg"] = ra, dec
    g = _column(table, "phot_g_mean_mag")
    is_gaia = g is not None
    pm_ra = _column(table, "pm_ra_mas_yr", "pmra", "pmRA")
    pm_dec = _column(table, "pm_dec_mas_yr", "pmdec", "pmDE")
    out["pm_ra_mas_yr"] = np.nan_to_num(pm_ra) if pm_ra is not None else 0.0
    out["pm_dec_mas_yr"] = np.nan_to_num(pm_dec) if pm_dec is not None else 0.0
    epochs = _column(table, "ref_epoch", "epoch")
    if epochs is not None and np.isfinite(epochs).any():
        epoch = float(np.nanmedian(epochs))
    else:
        epoch = default_epoch if default_epoch is not None else (GAIA_DR3_EPOCH if is_gaia else J2000_EPOCH)
    for band in BANDS:
        mag = _column(table, f"mag_{band}")
        if mag is not None:
            out[f"mag_{band}"] = mag
            err = _column(table, f"mag_{band}_err", f"e_mag_{band}")
            out[f"mag_{band}_err"] = err if err is not None else np.nan
    if is_gaia:
        transformed = gaia_to_johnson(
            g, _column(table, "phot_bp_mean_mag"), _column(table, "phot_rp_mean_mag"),
            _mag_err_from_flux_over_error(_column(table, "phot_g_mean_flux_over_error")),
            _mag_err_from_flux_over_error(_column(table, "phot_bp_mean_flux_over_error")),
            _mag_err_from_flux_over_error(_column(table, "phot_rp_mean_flux_over_error")),
        )
        for band, (mag, err) in transformed.items():
            if not np.isfinite(out[f"mag_{band}"]).any():  # a PyROS column, when present, wins
                out[f"mag_{band}"], out[f"mag_{band}_err"] = mag, err
    keep = np.isfinite(out["ra_deg"]) & np.isfinite(out["dec_deg"])
    return out[keep], epoch


def read_table(path: Path):
    """A catalogue file as an astropy Table: FITS, CSV/ECSV (any astropy text format) or Parquet."""
    from astropy.table import Table

    suffix = "".join(path.suffixes[-2:]).lower()
    try:
        if suffix.endswith((".fits", ".fit", ".fits.gz", ".fts")):
            return Table.read(path, format="fits")
        if suffix.endswith(".parquet"):
            return Table.read(path, format="parquet")
        if suffix.endswith(".ecsv"):
            return Table.read(path, format="ascii.ecsv")
        if suffix.endswith((".csv", ".csv.gz")):
            return Table.read(path, format="ascii.csv")
        return Table.read(path)
    except FileNotFoundError as exc:
        raise CatalogError(f"catalogue file {path} does not exist") from exc
    except ImportError as exc:
        raise CatalogError(f"cannot read {path}: {exc} (Parquet needs pyarrow: pip install pyros[catalogs])") from exc
    except Exception as exc:
        raise CatalogError(f"cannot read catalogue file {path}: {type(exc).__name__}: {exc}") from exc


class _IndexedStars:
    """A standardised table with a KD-tree on unit vectors: a cone is a ball query on the chord."""

    def __init__(self, stars: np.ndarray, epoch: float) -> None:
        self.stars = stars
        self.epoch = epoch
        self.tree = cKDTree(_unit_vectors(stars["ra_deg"], stars["dec_deg"])) if len(stars) else None
        # Stars move: widen each query by the largest motion over a century.
        pm = np.hypot(stars["pm_ra_mas_yr"], stars["pm_dec_mas_yr"]) if len(stars) else np.zeros(1)
        self.margin_deg = float(np.nanmax(pm, initial=0.0)) * 100.0 / 3.6e6

    def cone(self, ra_deg: float, dec_deg: float, radius_deg: float, epoch_jyear: float | None) -> np.ndarray:
        if self.tree is None or radius_deg <= 0:
            return empty_cone()
        wide = math.radians(min(radius_deg + self.margin_deg, 180.0))
        chord = 2.0 * math.sin(wide / 2.0)
        idx = self.tree.query_ball_point(_unit_vectors([ra_deg], [dec_deg])[0], chord)
        stars = self.stars[np.sort(np.asarray(idx, dtype=int))].copy()
        if epoch_jyear is not None and len(stars):
            stars["ra_deg"], stars["dec_deg"] = propagate(stars["ra_deg"], stars["dec_deg"], stars["pm_ra_mas_yr"],
                                                          stars["pm_dec_mas_yr"], epoch_jyear - self.epoch)
        if len(stars):
            sep = _separation_deg(ra_deg, dec_deg, stars["ra_deg"], stars["dec_deg"])
            stars = stars[sep <= radius_deg]
        return _sort_brightest_first(stars)


def _separation_deg(ra1, dec1, ra2, dec2) -> np.ndarray:
    ra1, dec1, ra2, dec2 = (np.radians(np.asarray(v, dtype=np.float64)) for v in (ra1, dec1, ra2, dec2))
    h = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0))))


@lru_cache(maxsize=8)
def _load_indexed(path: str, mtime_ns: int, default_epoch: float | None) -> _IndexedStars:
    stars, epoch = standardise_table(read_table(Path(path)), default_epoch=default_epoch)
    return _IndexedStars(stars, epoch)


class LocalCatalogFile(ReferenceCatalog):
    """A catalogue file on disk, read once per process (again when the file changes)."""

    def __init__(self, path: str | os.PathLike[str], *, epoch: float | None = None,
                 depth_mag: float | None = None) -> None:
        self.path = Path(path)
        self.epoch = epoch
        self.depth_mag = depth_mag
        self.name = f"local catalogue {self.path.name}"

    def _indexed(self) -> _IndexedStars:
        try:
            mtime_ns = self.path.stat().st_mtime_ns
        except OSError as exc:
            raise CatalogError(f"catalogue file {self.path} is not readable: {exc}") from exc
        return _load_indexed(str(self.path.resolve()), mtime_ns, self.epoch)

    def cone(self, ra_deg: float, dec_deg: float, radius_deg: float, *, epoch_jyear: float | None = None) -> np.ndarray:
        return self._indexed().cone(ra_deg, dec_deg, radius_deg, epoch_jyear)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LocalCatalogFile) and (other.path, other.epoch) == (self.path, self.epoch)

    def __hash__(self) -> int:
        return hash(("local", str(self.path), self.epoch))


# --------------------------------------------------------------------------------------------
# Gaia DR3, online, cached per field
# --------------------------------------------------------------------------------------------

GaiaQuery = Callable[[float, float, float, float], Any]  # (ra, dec, radius, G limit) -> astropy Table
_GAIA_COLUMNS = ("source_id, ra, dec, pmra, pmdec, ref_epoch, phot_g_mean_mag, phot_bp_mean_mag, phot_rp_mean_mag, "
                 "phot_g_mean_flux_over_error, phot_bp_mean_flux_over_error, phot_rp_mean_flux_over_error")


def gaia_archive_query(ra_deg: float, dec_deg: float, radius_deg: float, g_limit: float):
    """One ADQL cone on the ESA Gaia archive through astroquery (the network: never called by tests)."""
    try:
        from astroquery.gaia import Gaia
    except ImportError as exc:
        raise CatalogError("the Gaia DR3 catalogue needs astroquery: pip install pyros[catalogs]") from exc
    adql = (f"SELECT {_GAIA_COLUMNS} FROM gaiadr3.gaia_source WHERE 1=CONTAINS(POINT('ICRS', ra, dec), "
            f"CIRCLE('ICRS', {ra_deg:.6f}, {dec_deg:.6f}, {radius_deg:.5f})) AND phot_g_mean_mag < {g_limit:.2f}")
    try:
        return Gaia.launch_job_async(adql, verbose=False).get_results()
    except Exception as exc:
        raise CatalogError(f"Gaia archive query failed: {type(exc).__name__}: {exc}") from exc


class GaiaDR3Catalog(ReferenceCatalog):
    """Gaia DR3 cones fetched once per field into ``cache_dir`` (FITS, Gaia's columns), then read locally.

    A query is answered from any cached field that contains it; otherwise a cone 20% wider than asked
    (rounded up to 0.05 deg, so the next frame of a dithered or slightly offset pointing is covered)
    is fetched and stored. ``query`` replaces the archive call (tests, a mirror)."""

    name = "Gaia DR3"

    def __init__(self, cache_dir: str | os.PathLike[str], *, g_limit: float = 20.5,
                 query: GaiaQuery | None = None) -> None:
        self.cache_dir = Path(cache_dir)
        self.g_limit = float(g_limit)
        self.query = query or gaia_archive_query
        self.depth_mag = None
        self._lock = threading.Lock()

    def _fields(self) -> list[dict[str, Any]]:
        index = self.cache_dir / "fields.json"
        try:
            return json.loads(index.read_text())
        except (OSError, ValueError):
            return []

    def cached_field(self, ra_deg: float, dec_deg: float, radius_deg: float) -> Path | None:
        for field in self._fields():
            if field.get("g_limit", 0.0) < self.g_limit:
                continue
            if float(_separation_deg(ra_deg, dec_deg, field["ra_deg"], field["dec_deg"])) + radius_deg <= field["radius_deg"]:
                path = self.cache_dir / field["file"]
                if path.is_file():
                    return path
        return None

    def fetch_field(self, ra_deg: float, dec_deg: float, radius_deg: float) -> Path:
        """Fetch one cone into the cache (also usable ahead of time, to prepare an offline night)."""
        radius = math.ceil(radius_deg * 1.2 / 0.05) * 0.05
        table = self.query(ra_deg, dec_deg, radius, self.g_limit)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        key = hashlib.sha1(f"{ra_deg:.5f},{dec_deg:.5f},{radius:.3f},{self.g_limit:.2f}".encode()).hexdigest()[:12]
        name = f"gaia_dr3_{ra_deg:08.4f}_{dec_deg:+08.4f}_{key}.fits"
        tmp = self.cache_dir / f".{name}.tmp"
        table.write(tmp, format="fits", overwrite=True)
        os.replace(tmp, self.cache_dir / name)
        fields = self._fields()
        fields.append({"ra_deg": ra_deg, "dec_deg": dec_deg, "radius_deg": radius, "g_limit": self.g_limit,
                       "file": name, "n_stars": len(table)})
        index_tmp = self.cache_dir / ".fields.json.tmp"
        index_tmp.write_text(json.dumps(fields, indent=1))
        os.replace(index_tmp, self.cache_dir / "fields.json")
        return self.cache_dir / name

    def cone(self, ra_deg: float, dec_deg: float, radius_deg: float, *, epoch_jyear: float | None = None) -> np.ndarray:
        with self._lock:
            path = self.cached_field(ra_deg, dec_deg, radius_deg) or self.fetch_field(ra_deg, dec_deg, radius_deg)
        return LocalCatalogFile(path, epoch=GAIA_DR3_EPOCH).cone(ra_deg, dec_deg, radius_deg, epoch_jyear=epoch_jyear)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GaiaDR3Catalog) and (other.cache_dir, other.g_limit) == (self.cache_dir, self.g_limit)

    def __hash__(self) -> int:
        return hash(("gaia", str(self.cache_dir), self.g_limit))


class CallableCatalog(ReferenceCatalog):
    """Adapts a plain ``f(ra_deg, dec_deg, radius_deg) -> structured array`` (ra_deg, dec_deg, mag_<band>)."""

    def __init__(self, function: Callable[[float, float, float], np.ndarray]) -> None:
        self.function = function
        self.name = getattr(function, "__name__", repr(function))

    def cone(self, ra_deg: float, dec_deg: float, radius_deg: float, *, epoch_jyear: float | None = None) -> np.ndarray:
        stars = self.function(ra_deg, dec_deg, radius_deg)
        if not isinstance(stars, np.ndarray) or stars.dtype.names is None or not {"ra_deg", "dec_deg"} <= set(
            stars.dtype.names
        ):
            raise CatalogError("the reference catalogue returned no ra_deg/dec_deg table")
        out = np.zeros(len(stars), dtype=CONE_DTYPE)
        for name in CONE_DTYPE.names:
            if name in stars.dtype.names:
                out[name] = stars[name]
            elif name.startswith("mag_"):
                out[name] = np.nan if not name.endswith("_err") else _SIMULATED_MAG_ERR
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CallableCatalog) and other.function is self.function

    def __hash__(self) -> int:
        return hash(("callable", id(self.function)))


def catalog_from_spec(spec: str) -> ReferenceCatalog:
    """``simulated`` | ``local:PATH`` | ``gaia:CACHE_DIR``: how the simulator's command line and
    environment name a catalogue (PyROS itself uses the settings' registry)."""
    kind, _, argument = spec.strip().partition(":")
    kind = kind.lower()
    if kind in ("", "simulated"):
        return SimulatedSkyCatalog()
    if kind == "local" and argument:
        return LocalCatalogFile(argument)
    if kind in ("gaia", "gaia-dr3") and argument:
        return GaiaDR3Catalog(argument)
    raise CatalogError(f"unknown catalogue {spec!r}: use simulated, local:PATH or gaia:CACHE_DIR")
