"""A simulated sky and CCD camera, in pure numpy (no Django, no INDI).

This is the physics behind the simulated observatory's camera, and the "reference catalogue" the
analyzer checks its astrometry and photometry against:

* :func:`catalog_stars` - a deterministic star catalogue: the sky is cut into fixed tiles
  (0.5 deg in Dec, about 0.5 deg in RA), each tile and each 1-mag slice has its own RNG seed, so the
  same position always has the same stars whatever the query radius or magnitude limit.
  Number counts follow a power law (log N(<m) grows 0.3 per magnitude), denser towards the
  Galactic plane: 60-400 stars brighter than V=18 in the demo camera's 21'x17' field.
* :func:`render_frame` - a raw frame as the demo camera would record it: Gaussian PSF of the
  seeing FWHM integrated over each pixel, sky background (Moon and twilight), bias with a column
  pattern, dark current with hot pixels, per-filter vignetting and dust (multiplicative flat
  field), Poisson and read noise, 16-bit saturation. The FITS header carries a TAN WCS.
* :func:`write_fits` - the frame as FITS bytes.

Conventions: magnitudes are Vega-like per filter; a camera zero point is the magnitude that gives
1 e-/s. Pixel coordinates in comments are FITS 1-based unless called "index" (numpy, 0-based).
"""

from __future__ import annotations

import io
import math
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import numpy as np
from astropy.io import fits

FILTERS = ("U", "B", "V", "R", "I", "Clear")
FRAME_TYPES = ("LIGHT", "BIAS", "DARK", "FLAT")
IMAGETYP = {"LIGHT": "Light Frame", "BIAS": "Bias Frame", "DARK": "Dark Frame", "FLAT": "Flat Field"}

# Zero points of the demo camera (a 60 cm-class telescope with a back-illuminated CCD):
# the magnitude of a star giving 1 e-/s in total.
_DEFAULT_ZERO_POINTS = {"U": 22.0, "B": 23.3, "V": 23.5, "R": 23.5, "I": 22.9, "Clear": 24.5}
# Dark-site moonless zenith sky brightness, mag/arcsec^2 (typical values for a good site).
_DARK_SKY_MAG = {"U": 22.0, "B": 22.7, "V": 21.8, "R": 20.9, "I": 19.9, "Clear": 20.8}
# Moonlight is bluer than the dark night sky: relative brightening per filter (V = 1).
_MOON_COLOUR = {"U": 1.6, "B": 1.35, "V": 1.0, "R": 0.8, "I": 0.6, "Clear": 0.9}
# Vignetting depth at the field corner, per filter (filters sit at different distances in the beam).
_VIGNETTING_CORNER = {"U": 0.24, "B": 0.20, "V": 0.18, "R": 0.17, "I": 0.16, "Clear": 0.15}

_TILE_DEC_DEG = 0.5
_MAG_SLICE_BRIGHTEST = 3  # slices [3,4), [4,5), ... ; brighter stars are too rare to matter here
_RENDER_MAG_LIMIT = 21.0  # render stars fainter than any detection limit, as a real sky has them
# Stars per square degree brighter than V=18 at the Galactic pole; the plane multiplies it.
_DENSITY_V18_POLE_PER_DEG2 = 600.0
_COUNT_SLOPE = 0.3  # d log10 N(<m) / dm
_STAMP_PIXELS_PER_BATCH = 4_000_000  # PSF stamp pixels rendered at once (~100 MB of temporaries)


@dataclass(frozen=True)
class CameraModel:
    """Detector and optics of a camera. The defaults are the demo camera (1280x1024, 1"/px)."""

    width_px: int = 1280
    height_px: int = 1024
    pixel_scale_arcsec: float = 1.0
    gain_e_per_adu: float = 1.5
    read_noise_e: float = 8.0
    bias_adu: float = 1000.0
    dark_e_per_s: float = 0.05
    saturation_adu: int = 65535
    readout_s: float = 0.5
    zero_points: dict = field(default_factory=lambda: dict(_DEFAULT_ZERO_POINTS))
    # Flat-field lamp (dome screen) rate in V, e-/s/pixel unbinned: a 1 s V flat is ~13000 ADU.
    flat_lamp_e_per_s: float = 20000.0
    hot_pixel_count: int = 60
    telescope: str = "PyROS Simulated Telescope"
    instrument: str = "PyROS Simulated Camera"


@dataclass(frozen=True)
class SkyConditions:
    """Observing conditions. The Moon only adds light when ``moon_illumination`` > 0 (set it to 0
    when the Moon is below the horizon); twilight adds light when the Sun is above -18 deg."""

    seeing_fwhm_arcsec: float = 2.0
    sky_mag_per_arcsec2: dict = field(default_factory=lambda: dict(_DARK_SKY_MAG))
    moon_illumination: float = 0.0
    moon_separation_deg: float = 90.0
    sun_alt_deg: float = -30.0

    def sky_brightness_mag_per_arcsec2(self, filter_name: str) -> float:
        """Sky surface brightness including Moon and twilight, mag/arcsec^2."""
        dark_flux = 10 ** (-0.4 * self.sky_mag_per_arcsec2[filter_name])
        v_dark_flux = 10 ** (-0.4 * self.sky_mag_per_arcsec2.get("V", _DARK_SKY_MAG["V"]))
        # Moon: scattered light ~ illumination^2 (phase law), strongest close to the Moon;
        # a full Moon 30 deg away makes V ~18.3 mag/arcsec^2, 90 deg away ~18.9.
        illum = min(max(self.moon_illumination, 0.0), 1.0)
        sep_factor = 0.3 + 0.7 * math.exp(-max(self.moon_separation_deg, 0.0) / 40.0)
        moon_flux = 40.0 * illum**2 * sep_factor * _MOON_COLOUR[filter_name] * v_dark_flux
        # Twilight: ~0.9 mag/arcsec^2 brighter per degree of Sun altitude above -18 deg.
        twilight_flux = 0.0
        if self.sun_alt_deg > -18.0:
            twilight_flux = dark_flux * (10 ** (0.4 * 0.9 * (min(self.sun_alt_deg, 0.0) + 18.0)) - 1.0)
        return -2.5 * math.log10(dark_flux + moon_flux + twilight_flux)


@dataclass(frozen=True)
class Transient:
    """A point source whose magnitude fades as a power law of time since ``t0_utc``
    (a GRB afterglow: F ~ t^-alpha), constant during the first ``t_ref_s`` seconds, absent before t0."""

    ra_deg: float
    dec_deg: float
    mag0: float
    t0_utc: datetime
    decay_index: float = 1.0
    t_ref_s: float = 60.0
    filter_offsets: dict = field(default_factory=dict)  # mag added per filter (colour), default 0

    def magnitude_at(self, when_utc: datetime, filter_name: str) -> float:
        """mag0 + 2.5*alpha*log10(max(dt, t_ref)/t_ref) + offset(filter); +inf before t0."""
        dt_s = (when_utc - self.t0_utc).total_seconds()
        if dt_s < 0:
            return math.inf
        offset = float(self.filter_offsets.get(filter_name, 0.0))
        return self.mag0 + 2.5 * self.decay_index * math.log10(max(dt_s, self.t_ref_s) / self.t_ref_s) + offset

    def mean_magnitude(self, start_utc: datetime, exposure_s: float, filter_name: str) -> float:
        """The magnitude of the flux averaged over an exposure (what a frame records)."""
        if exposure_s <= 0:
            return self.magnitude_at(start_utc, filter_name)
        samples = 32
        fluxes = [
            10 ** (-0.4 * m)
            for m in (
                self.magnitude_at(start_utc + timedelta(seconds=exposure_s * (i + 0.5) / samples), filter_name)
                for i in range(samples)
            )
        ]
        mean_flux = sum(fluxes) / samples
        return math.inf if mean_flux <= 0 else -2.5 * math.log10(mean_flux)


# --------------------------------------------------------------------------------------------
# Catalogue
# --------------------------------------------------------------------------------------------

_CATALOG_DTYPE = np.dtype([("ra_deg", "f8"), ("dec_deg", "f8")] + [(f"mag_{f}", "f4") for f in FILTERS])

# Equatorial (J2000) -> Galactic rotation matrix (IAU 1958 / Hipparcos definition).
_EQ_TO_GAL = np.array(
    [
        [-0.0548755604, -0.8734370902, -0.4838350155],
        [+0.4941094279, -0.4448296300, +0.7469822445],
        [-0.8676661490, -0.1980763734, +0.4559837762],
    ]
)


def _galactic_latitude_deg(ra_deg: float, dec_deg: float) -> float:
    ra, dec = math.radians(ra_deg), math.radians(dec_deg)
    v = np.array([math.cos(dec) * math.cos(ra), math.cos(dec) * math.sin(ra), math.sin(dec)])
    return math.degrees(math.asin(float(np.clip(_EQ_TO_GAL[2] @ v, -1.0, 1.0))))


def _n_dec_bands() -> int:
    return int(round(180.0 / _TILE_DEC_DEG))


def _n_ra_tiles(band: int) -> int:
    dec_lo = -90.0 + band * _TILE_DEC_DEG
    dec_hi = dec_lo + _TILE_DEC_DEG
    widest = max(math.cos(math.radians(dec_lo)), math.cos(math.radians(dec_hi)))
    return max(1, int(360.0 * widest / _TILE_DEC_DEG))


@lru_cache(maxsize=512)
def _tile_slice(band: int, ra_index: int, mag_slice: int) -> np.ndarray:
    """Stars of one tile and one 1-mag slice: fixed forever by (band, ra_index, mag_slice)."""
    n_ra = _n_ra_tiles(band)
    dec_lo = -90.0 + band * _TILE_DEC_DEG
    dec_hi = dec_lo + _TILE_DEC_DEG
    ra_lo = 360.0 * ra_index / n_ra
    ra_hi = 360.0 * (ra_index + 1) / n_ra
    sin_lo, sin_hi = math.sin(math.radians(dec_lo)), math.sin(math.radians(dec_hi))
    area_deg2 = (ra_hi - ra_lo) * math.degrees(sin_hi - sin_lo)
    b_deg = _galactic_latitude_deg(0.5 * (ra_lo + ra_hi), 0.5 * (dec_lo + dec_hi))
    plane_factor = 1.0 + 5.0 * math.exp(-abs(b_deg) / 12.0)
    density_v18 = _DENSITY_V18_POLE_PER_DEG2 * plane_factor
    m_lo, m_hi = float(mag_slice), float(mag_slice + 1)
    expected = density_v18 * area_deg2 * (10 ** (_COUNT_SLOPE * (m_hi - 18.0)) - 10 ** (_COUNT_SLOPE * (m_lo - 18.0)))
    seed = zlib.crc32(f"pyros-sky/{band}/{ra_index}/{mag_slice}".encode())
    rng = np.random.default_rng(seed)
    n = int(rng.poisson(expected))
    stars = np.zeros(n, dtype=_CATALOG_DTYPE)
    if n == 0:
        return stars
    stars["ra_deg"] = rng.uniform(ra_lo, ra_hi, n)
    stars["dec_deg"] = np.degrees(np.arcsin(rng.uniform(sin_lo, sin_hi, n)))  # uniform on the sphere
    # V magnitude from the power law inside the slice (inverse CDF of 10^(slope*m)).
    u = rng.uniform(0.0, 1.0, n)
    a, b = 10 ** (_COUNT_SLOPE * m_lo), 10 ** (_COUNT_SLOPE * m_hi)
    mag_v = np.log10(a + u * (b - a)) / _COUNT_SLOPE
    # Colours of main-sequence-like stars: B-V between ~0.0 and 1.6, other colours follow it.
    b_v = np.clip(rng.normal(0.75, 0.35, n), -0.2, 1.8)
    stars["mag_V"] = mag_v
    stars["mag_B"] = mag_v + b_v
    stars["mag_U"] = mag_v + b_v + (0.9 * b_v - 0.35)
    stars["mag_R"] = mag_v - (0.55 * b_v + 0.02)
    stars["mag_I"] = mag_v - (1.1 * b_v + 0.03)
    stars["mag_Clear"] = mag_v - (0.35 * b_v + 0.05)  # a broad red-sensitive unfiltered band
    return stars


def _angular_separation_deg(ra1, dec1, ra2, dec2):
    ra1, dec1, ra2, dec2 = (np.radians(x) for x in (ra1, dec1, ra2, dec2))
    sdlat = np.sin((dec2 - dec1) / 2)
    sdlon = np.sin((ra2 - ra1) / 2)
    h = sdlat**2 + np.cos(dec1) * np.cos(dec2) * sdlon**2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0, 1))))


def catalog_stars(ra_deg: float, dec_deg: float, radius_deg: float, *, mag_limit: float = 19.0) -> np.ndarray:
    """Catalogue stars within ``radius_deg`` of (ra_deg, dec_deg) J2000 with V <= ``mag_limit``.

    Returns a numpy structured array with fields ``ra_deg``, ``dec_deg`` and ``mag_<filter>`` for
    every filter of :data:`FILTERS`, sorted by V magnitude. Deterministic: any query overlapping the
    same sky returns the same stars with the same magnitudes.
    """
    if radius_deg <= 0:
        return np.zeros(0, dtype=_CATALOG_DTYPE)
    radius_deg = min(radius_deg, 10.0)
    dec_lo = max(-90.0, dec_deg - radius_deg)
    dec_hi = min(90.0, dec_deg + radius_deg)
    band_lo = max(0, int(math.floor((dec_lo + 90.0) / _TILE_DEC_DEG)))
    band_hi = min(_n_dec_bands() - 1, int(math.floor((dec_hi + 90.0) / _TILE_DEC_DEG)))
    top_slice = int(math.ceil(mag_limit)) - 1
    parts = []
    for band in range(band_lo, band_hi + 1):
        n_ra = _n_ra_tiles(band)
        band_dec_lo = -90.0 + band * _TILE_DEC_DEG
        band_dec_hi = band_dec_lo + _TILE_DEC_DEG
        # RA half-width of the search circle at the band's Dec closest to the pole.
        cos_min = min(math.cos(math.radians(max(abs(band_dec_lo), abs(band_dec_hi)))), math.cos(math.radians(dec_deg)))
        if dec_hi >= 90.0 or dec_lo <= -90.0 or cos_min < 1e-6 or radius_deg / cos_min >= 180.0:
            ra_indices = range(n_ra)
        else:
            half_width = math.degrees(math.asin(min(1.0, math.sin(math.radians(radius_deg)) / cos_min)))
            first = int(math.floor(((ra_deg - half_width) % 360.0) * n_ra / 360.0))
            count = int(math.ceil(2 * half_width * n_ra / 360.0)) + 1
            ra_indices = sorted({(first + k) % n_ra for k in range(count + 1)})
        for ra_index in ra_indices:
            for mag_slice in range(_MAG_SLICE_BRIGHTEST, top_slice + 1):
                part = _tile_slice(band, ra_index, mag_slice)
                if len(part):
                    parts.append(part)
    if not parts:
        return np.zeros(0, dtype=_CATALOG_DTYPE)
    stars = np.concatenate(parts)
    keep = (stars["mag_V"] <= mag_limit) & (
        _angular_separation_deg(ra_deg, dec_deg, stars["ra_deg"], stars["dec_deg"]) <= radius_deg
    )
    stars = stars[keep]
    return stars[np.argsort(stars["mag_V"], kind="stable")]


# --------------------------------------------------------------------------------------------
# Projection (TAN, the same as the header WCS)
# --------------------------------------------------------------------------------------------


def sky_to_pixel(
    ra_deg, dec_deg, *, center_ra_deg: float, center_dec_deg: float, scale_arcsec_px: float, crpix: tuple[float, float]
):
    """Gnomonic projection to FITS 1-based pixel (x, y), north up (+y), east left (-x).

    Returns (x, y, in_front) arrays; ``in_front`` is False for points 90 deg or more away."""
    ra = np.radians(np.asarray(ra_deg, dtype=float))
    dec = np.radians(np.asarray(dec_deg, dtype=float))
    ra0, dec0 = math.radians(center_ra_deg), math.radians(center_dec_deg)
    cos_c = math.sin(dec0) * np.sin(dec) + math.cos(dec0) * np.cos(dec) * np.cos(ra - ra0)
    in_front = cos_c > 1e-6
    safe = np.where(in_front, cos_c, 1.0)
    xi = np.cos(dec) * np.sin(ra - ra0) / safe  # standard coordinates, radians; xi points east
    eta = (math.cos(dec0) * np.sin(dec) - math.sin(dec0) * np.cos(dec) * np.cos(ra - ra0)) / safe
    scale_rad = math.radians(scale_arcsec_px / 3600.0)
    x = crpix[0] - xi / scale_rad
    y = crpix[1] + eta / scale_rad
    return x, y, in_front


# --------------------------------------------------------------------------------------------
# Detector maps (deterministic, cached per geometry)
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=32)
def _flat_map(width: int, height: int, binning: int, filter_name: str) -> np.ndarray:
    """Relative sensitivity: vignetting (per filter) x dust donuts x 0.5% pixel response noise."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    r2 = ((xx - cx) ** 2 + (yy - cy) ** 2) / (cx**2 + cy**2)
    flat = 1.0 - _VIGNETTING_CORNER[filter_name] * r2
    # Dust on the filter: out-of-focus rings, placed per filter, fixed forever.
    rng = np.random.default_rng(zlib.crc32(f"pyros-dust/{filter_name}".encode()))
    for _ in range(3):
        dx, dy = rng.uniform(0.1, 0.9) * width, rng.uniform(0.1, 0.9) * height
        radius = rng.uniform(15, 35) / binning
        depth = rng.uniform(0.02, 0.05)
        r = np.hypot(xx - dx, yy - dy)
        ring = np.exp(-0.5 * ((r - radius) / (0.25 * radius)) ** 2)
        flat *= 1.0 - depth * ring
    prnu = np.random.default_rng(zlib.crc32(f"pyros-prnu/{width}x{height}".encode())).normal(
        1.0, 0.005, (height, width)
    )
    return (flat * prnu).astype(np.float32)


@lru_cache(maxsize=8)
def _bias_pattern_adu(width: int, height: int) -> np.ndarray:
    """Fixed bias structure: a few-ADU column pattern and a gentle gradient along rows."""
    rng = np.random.default_rng(zlib.crc32(f"pyros-bias/{width}x{height}".encode()))
    columns = rng.normal(0.0, 1.5, width).astype(np.float32)
    rows = np.linspace(0.0, 4.0, height, dtype=np.float32)
    return rows[:, None] + columns[None, :]


@lru_cache(maxsize=8)
def _hot_pixels(width: int, height: int, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fixed hot pixels: flat indices and their dark current (e-/s), 2-200 e-/s."""
    rng = np.random.default_rng(zlib.crc32(f"pyros-hot/{width}x{height}".encode()))
    idx = rng.choice(width * height, size=min(count, width * height), replace=False)
    rate = 10 ** rng.uniform(np.log10(2.0), np.log10(200.0), len(idx))
    return idx // width, idx % width, rate


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def _add_point_sources(
    image_e: np.ndarray, x_index: np.ndarray, y_index: np.ndarray, flux_e: np.ndarray, sigma_px: float
) -> None:
    """Add Gaussian PSFs integrated over pixels, in small stamps, with one bincount."""
    height, width = image_e.shape
    half = int(math.ceil(4.5 * sigma_px)) + 1
    ok = (x_index > -half) & (x_index < width + half) & (y_index > -half) & (y_index < height + half) & (flux_e > 0)
    x_index, y_index, flux_e = x_index[ok], y_index[ok], flux_e[ok]
    if len(flux_e) == 0:
        return
    from scipy.special import erf

    offsets = np.arange(-half, half + 1)
    k = 1.0 / (math.sqrt(2.0) * sigma_px)
    # stamps of S x S pixels per star: in batches, so a blurred (defocused) field stays within memory
    batch = max(1, _STAMP_PIXELS_PER_BATCH // len(offsets) ** 2)
    total = np.zeros(height * width, dtype=np.float64)
    for start in range(0, len(flux_e), batch):
        xs, ys, fs = x_index[start : start + batch], y_index[start : start + batch], flux_e[start : start + batch]
        px = np.rint(xs).astype(np.int64)[:, None] + offsets[None, :]  # (N, S) pixel indices
        py = np.rint(ys).astype(np.int64)[:, None] + offsets[None, :]
        gx = 0.5 * (erf((px + 0.5 - xs[:, None]) * k) - erf((px - 0.5 - xs[:, None]) * k))
        gy = 0.5 * (erf((py + 0.5 - ys[:, None]) * k) - erf((py - 0.5 - ys[:, None]) * k))
        weights = fs[:, None, None] * gy[:, :, None] * gx[:, None, :]  # (N, S, S)
        rows = np.broadcast_to(py[:, :, None], weights.shape)
        cols = np.broadcast_to(px[:, None, :], weights.shape)
        inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
        total += np.bincount(rows[inside] * width + cols[inside], weights=weights[inside], minlength=height * width)
    image_e += total.reshape(height, width)


def _wcs_header(header: fits.Header, *, ra_deg: float, dec_deg: float, scale_arcsec_px: float, crpix) -> None:
    header["WCSAXES"] = 2
    header["CTYPE1"] = "RA---TAN"
    header["CTYPE2"] = "DEC--TAN"
    header["CUNIT1"] = "deg"
    header["CUNIT2"] = "deg"
    header["CRVAL1"] = (float(ra_deg), "[deg] RA of the reference pixel (J2000)")
    header["CRVAL2"] = (float(dec_deg), "[deg] Dec of the reference pixel (J2000)")
    header["CRPIX1"] = float(crpix[0])
    header["CRPIX2"] = float(crpix[1])
    scale_deg = scale_arcsec_px / 3600.0
    header["CD1_1"] = -scale_deg  # east left
    header["CD1_2"] = 0.0
    header["CD2_1"] = 0.0
    header["CD2_2"] = scale_deg  # north up
    header["RADESYS"] = "ICRS"
    header["EQUINOX"] = 2000.0


def render_frame(
    *,
    ra_deg: float,
    dec_deg: float,
    exposure_s: float,
    frame_type: str = "LIGHT",
    filter_name: str = "V",
    binning: int = 1,
    when_utc: datetime,
    camera: CameraModel | None = None,
    conditions: SkyConditions | None = None,
    transients=(),
    seed: int | None = None,
    object_name: str = "",
    catalog=None,
    pointing_error_arcsec: tuple[float, float] = (0.0, 0.0),
    distortion_corner_px: float = 0.0,
) -> tuple[np.ndarray, fits.Header]:
    """Render one raw frame; returns (uint16 array of shape (height//binning, width//binning), header).

    ``when_utc`` is the start of the exposure (DATE-OBS). Stars come from :func:`catalog_stars`
    (down to V=21), or from ``catalog`` (a :class:`devices.catalogs.ReferenceCatalog`: a local file
    or a Gaia cache gives a real star field, at the epoch of the frame); transients get their flux
    averaged over the exposure. ``seed`` fixes the noise (the star field is fixed anyway).

    The header (RA/DEC and its WCS) says (``ra_deg``, ``dec_deg``); the sky is rendered
    ``pointing_error_arcsec`` (east, north) away from it, as a mount's pointing model leaves it, and
    with a radial (barrel > 0, pincushion < 0) distortion moving stars ``distortion_corner_px`` at
    the corners (cubic in the distance from the centre). Raises ``ValueError`` on an unknown frame
    type or filter, a negative exposure or a binning that is not 1-4.
    """
    camera = camera or CameraModel()
    conditions = conditions or SkyConditions()
    frame_type = frame_type.upper()
    if frame_type not in FRAME_TYPES:
        raise ValueError(f"unknown frame type {frame_type!r}; expected one of {FRAME_TYPES}")
    if filter_name not in FILTERS:
        raise ValueError(f"unknown filter {filter_name!r}; expected one of {FILTERS}")
    if exposure_s < 0 or not math.isfinite(exposure_s):
        raise ValueError(f"exposure_s must be >= 0, got {exposure_s}")
    if binning not in (1, 2, 3, 4):
        raise ValueError(f"binning must be 1-4, got {binning}")
    if when_utc.tzinfo is None:
        raise ValueError("when_utc must be an aware UTC datetime")
    exposure_s = 0.0 if frame_type == "BIAS" else float(exposure_s)

    width, height = camera.width_px // binning, camera.height_px // binning
    scale = camera.pixel_scale_arcsec * binning
    crpix = (width / 2.0 + 0.5, height / 2.0 + 0.5)  # the image centre
    pixel_area_arcsec2 = scale * scale
    rng = np.random.default_rng(seed)

    signal_e = np.zeros((height, width), dtype=np.float64)
    if frame_type == "LIGHT" and exposure_s > 0:
        zp = camera.zero_points[filter_name]
        sky_mag = conditions.sky_brightness_mag_per_arcsec2(filter_name)
        signal_e += 10 ** (-0.4 * (sky_mag - zp)) * pixel_area_arcsec2 * exposure_s
        radius_deg = math.hypot(width, height) * scale / 3600.0 / 2.0 + 0.02
        true_dec = dec_deg + pointing_error_arcsec[1] / 3600.0
        true_ra = (ra_deg + pointing_error_arcsec[0] / 3600.0 / max(math.cos(math.radians(true_dec)), 1e-6)) % 360.0
        ras, decs, mags = _field_stars(catalog, true_ra, true_dec, radius_deg, filter_name, when_utc)
        for t in transients:
            mag = t.mean_magnitude(when_utc, exposure_s, filter_name)
            if math.isfinite(mag):
                ras.append(np.array([t.ra_deg]))
                decs.append(np.array([t.dec_deg]))
                mags.append(np.array([mag]))
        ra_all, dec_all, mag_all = np.concatenate(ras), np.concatenate(decs), np.concatenate(mags)
        x, y, in_front = sky_to_pixel(
            ra_all, dec_all, center_ra_deg=true_ra, center_dec_deg=true_dec, scale_arcsec_px=scale, crpix=crpix
        )
        if distortion_corner_px:
            dx, dy = x - crpix[0], y - crpix[1]
            r_corner = math.hypot(width, height) / 2.0
            factor = 1.0 - distortion_corner_px / r_corner * (np.hypot(dx, dy) / r_corner) ** 2
            x, y = crpix[0] + dx * factor, crpix[1] + dy * factor
        flux_e = np.where(in_front, 10 ** (-0.4 * (mag_all - zp)) * exposure_s, 0.0)
        sigma_px = conditions.seeing_fwhm_arcsec / scale / (2.0 * math.sqrt(2.0 * math.log(2.0)))
        _add_point_sources(signal_e, x - 1.0, y - 1.0, flux_e, max(sigma_px, 0.3))
    elif frame_type == "FLAT" and exposure_s > 0:
        throughput = 10 ** (0.4 * (camera.zero_points[filter_name] - camera.zero_points["V"]))
        signal_e += camera.flat_lamp_e_per_s * throughput * binning * binning * exposure_s

    if frame_type in ("LIGHT", "FLAT"):
        signal_e *= _flat_map(width, height, binning, filter_name)
    if exposure_s > 0:
        # Dark current (binning sums binning^2 pixels' charge), with the fixed hot pixels.
        signal_e += camera.dark_e_per_s * binning * binning * exposure_s
        hot_rows, hot_cols, hot_rate = _hot_pixels(camera.width_px, camera.height_px, camera.hot_pixel_count)
        signal_e[hot_rows // binning % height, hot_cols // binning % width] += hot_rate * exposure_s

    electrons = rng.poisson(signal_e).astype(np.float32)
    electrons += rng.standard_normal((height, width), dtype=np.float32) * np.float32(camera.read_noise_e)
    adu = electrons / np.float32(camera.gain_e_per_adu)
    adu += np.float32(camera.bias_adu)
    adu += _bias_pattern_adu(width, height)
    np.clip(adu, 0, camera.saturation_adu, out=adu)
    data = np.rint(adu).astype(np.uint16)

    header = fits.Header()
    when = when_utc.astimezone(UTC)
    header["DATE-OBS"] = (when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3], "UTC start of exposure")
    header["MJD-OBS"] = (_mjd(when), "UTC start of exposure")
    header["EXPTIME"] = (float(exposure_s), "[s] exposure time")
    header["EXPOSURE"] = (float(exposure_s), "[s] exposure time")
    header["FILTER"] = filter_name
    header["IMAGETYP"] = IMAGETYP[frame_type]
    header["FRAME"] = IMAGETYP[frame_type]
    header["OBJECT"] = object_name
    header["RA"] = (float(ra_deg), "[deg] telescope pointing RA (J2000)")
    header["DEC"] = (float(dec_deg), "[deg] telescope pointing Dec (J2000)")
    header["TELESCOP"] = camera.telescope
    header["INSTRUME"] = camera.instrument
    header["XBINNING"] = binning
    header["YBINNING"] = binning
    header["GAIN"] = (camera.gain_e_per_adu, "[e-/ADU]")
    header["EGAIN"] = (camera.gain_e_per_adu, "[e-/ADU]")
    header["RDNOISE"] = (camera.read_noise_e, "[e-] read noise")
    header["SATURATE"] = (camera.saturation_adu, "[ADU] saturation level")
    header["PIXSCALE"] = (scale, "[arcsec/px] binned pixel scale")
    if frame_type == "LIGHT":
        header["SEEING"] = (conditions.seeing_fwhm_arcsec, "[arcsec] simulated seeing FWHM")
    _wcs_header(header, ra_deg=ra_deg, dec_deg=dec_deg, scale_arcsec_px=scale, crpix=crpix)
    return data, header


def _field_stars(catalog, ra_deg: float, dec_deg: float, radius_deg: float, filter_name: str, when_utc: datetime):
    """([ra], [dec], [mag]) of the stars to render: the synthetic sky, or a catalogue's stars at the
    frame's epoch in the filter's band (its Clear, V or R magnitude when it has none in that band)."""
    if catalog is None:
        stars = catalog_stars(ra_deg, dec_deg, radius_deg, mag_limit=_RENDER_MAG_LIMIT)
        return [stars["ra_deg"]], [stars["dec_deg"]], [stars[f"mag_{filter_name}"].astype(np.float64)]
    epoch = 2000.0 + (_mjd(when_utc) - 51544.5) / 365.25
    stars = catalog.cone(ra_deg, dec_deg, radius_deg, epoch_jyear=epoch)
    mags = np.full(len(stars), np.nan)
    for band in (filter_name, "Clear", "V", "R"):
        column = f"mag_{band}"
        if column in (stars.dtype.names or ()):
            values = np.asarray(stars[column], dtype=np.float64)
            mags = np.where(np.isfinite(mags), mags, values)
    ok = np.isfinite(mags)
    return [np.asarray(stars["ra_deg"])[ok]], [np.asarray(stars["dec_deg"])[ok]], [mags[ok]]


def _mjd(when_utc: datetime) -> float:
    epoch = datetime(1858, 11, 17, tzinfo=UTC)
    return (when_utc - epoch).total_seconds() / 86400.0


def write_fits(data: np.ndarray, header: fits.Header) -> bytes:
    """The frame as the bytes of a single-HDU FITS file (uint16 stored with BZERO=32768)."""
    hdu = fits.PrimaryHDU(data=data, header=header)
    buffer = io.BytesIO()
    hdu.writeto(buffer, output_verify="silentfix")
    return buffer.getvalue()
