"""Measurements on a calibrated frame: background, sources, seeing, astrometry check, zero point.

Pure functions on numpy arrays (sep for background/extraction/apertures, astropy for the WCS,
scipy's KD-tree for catalogue matching); no Django.

Conventions:
* pixel coordinates are numpy 0-based (sep and ``WCS.*(…, 0)`` agree), x along columns;
* fluxes are ADU in the calibrated frame; ``gain`` (e-/ADU, header GAIN) converts to electrons;
* the zero point is the magnitude of a source giving 1 e-/s in total (the simulator's convention,
  so it can be compared with the camera's), i.e. ``mag = zp - 2.5 log10(flux_e / exptime_s)``;
* photometry is in a circular aperture of radius 1 FWHM (close to the best signal-to-noise for a
  sky-limited star) corrected to total flux with an aperture correction measured on bright stars.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import sep
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning
from scipy.spatial import cKDTree

from analyzer.calibration import AnalysisError

# sep keeps its pixel stack small by default; a crowded Galactic-plane field overflows it.
sep.set_extract_pixstack(2_000_000)
sep.set_sub_object_limit(4096)

_GAUSS_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


@dataclass
class BackgroundEstimate:
    level_adu: float  # global median of the background map
    noise_adu: float  # global rms of the background
    back: np.ndarray  # background map (same shape as the frame)


@dataclass
class SourceTable:
    """Detected sources with their photometry (all arrays have one entry per source)."""

    x: np.ndarray
    y: np.ndarray
    flux_adu: np.ndarray  # aperture-corrected total flux
    flux_err_adu: np.ndarray
    snr: np.ndarray
    peak_adu: np.ndarray
    a_px: np.ndarray
    b_px: np.ndarray
    flags: np.ndarray
    saturated: np.ndarray  # bool
    pos_err_px: np.ndarray  # 1-sigma centroid error (quadratic mean of the two axes)
    hot_pixel_like: np.ndarray  # bool: the light sits in one pixel (hot pixel, cosmic ray), not a PSF
    ra_deg: np.ndarray = field(default_factory=lambda: np.zeros(0))
    dec_deg: np.ndarray = field(default_factory=lambda: np.zeros(0))
    mag: np.ndarray = field(default_factory=lambda: np.zeros(0))
    mag_err: np.ndarray = field(default_factory=lambda: np.zeros(0))
    catalog_index: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))  # -1: unmatched

    def __len__(self) -> int:
        return len(self.x)


@dataclass
class CatalogMatch:
    n_matched: int
    offset_x_px: float  # catalogue position minus measured position, median over matches
    offset_y_px: float
    offset_arcsec: float  # |offset|: how far the header WCS is off
    rms_arcsec: float  # scatter of the matched pairs after removing the offset
    catalog_index: np.ndarray  # per source, index into the catalogue or -1


@dataclass
class ZeroPoint:
    zero_point_mag: float | None
    zero_point_err_mag: float | None
    n_stars: int
    scatter_mag: float | None


def estimate_background(data: np.ndarray, *, box_px: int = 64, filter_px: int = 3) -> BackgroundEstimate:
    """Mesh background (SExtractor algorithm): smooth sky level and a global rms."""
    background = sep.Background(data, bw=box_px, bh=box_px, fw=filter_px, fh=filter_px)
    return BackgroundEstimate(
        level_adu=float(background.globalback), noise_adu=float(background.globalrms), back=background.back()
    )


def extract_sources(data_sub: np.ndarray, noise_adu: float, *, threshold_sigma: float = 1.5, min_area_px: int = 5):
    """sep/SExtractor detection on the background-subtracted frame; returns sep's object array.

    1.5 sigma per (filtered) pixel over 5 pixels is SExtractor's default and reaches sources of
    aperture SNR ~5 (2 sigma stops near SNR 6, above the 5-sigma limiting magnitude we report).
    """
    if not noise_adu > 0:
        raise AnalysisError("the background noise is zero: the frame is empty or constant")
    try:
        return sep.extract(data_sub, threshold_sigma, err=noise_adu, minarea=min_area_px)
    except Exception as exc:  # sep raises a bare Exception on pixel-stack or deblending overflow
        raise AnalysisError(f"source extraction failed: {exc}") from exc


def peak_concentration(data_sub: np.ndarray, objects) -> np.ndarray:
    """Fraction of the 3x3 flux around each object's brightest pixel that is in that pixel.

    A star sampled at >= 1 px per arcsec in >= 1" seeing keeps it below ~0.6; a hot pixel or a
    cosmic-ray hit (no PSF: the charge is in one pixel) is near 1.
    """
    if len(objects) == 0:
        return np.zeros(0)
    h, w = data_sub.shape
    xp = np.clip(np.asarray(objects["xpeak"], dtype=int), 1, w - 2)
    yp = np.clip(np.asarray(objects["ypeak"], dtype=int), 1, h - 2)
    total = np.zeros(len(xp))
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            total += data_sub[yp + dy, xp + dx]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, data_sub[yp, xp] / total, 1.0)


HOT_PIXEL_CONCENTRATION = 0.75


def seeing_fwhm_px(data_sub: np.ndarray, objects, noise_adu: float, saturation_mask: np.ndarray | None) -> float | None:
    """Median FWHM of bright, isolated, unsaturated, round point sources, in pixels.

    Uses the half-light radius (sep.flux_radius), which for a Gaussian is FWHM/2, and removes the
    pixel box (variance 1/12 px^2 per axis) that integration over pixels adds to the profile.
    """
    if len(objects) == 0:
        return None
    x, y = objects["x"], objects["y"]
    snr_iso = objects["flux"] / (noise_adu * np.sqrt(np.maximum(objects["npix"], 1)))
    round_enough = objects["b"] > 0.7 * objects["a"]
    good = (objects["flag"] == 0) & (snr_iso > 20) & round_enough & (objects["npix"] >= 5)
    good &= peak_concentration(data_sub, objects) < HOT_PIXEL_CONCENTRATION
    if saturation_mask is not None:
        good &= ~saturation_mask[np.clip(np.rint(y).astype(int), 0, data_sub.shape[0] - 1),
                                 np.clip(np.rint(x).astype(int), 0, data_sub.shape[1] - 1)]
    if len(x) > 1:
        dist, _ = cKDTree(np.column_stack([x, y])).query(np.column_stack([x, y]), k=2)
        good &= dist[:, 1] > 12.0
    h, w = data_sub.shape
    good &= (x > 15) & (x < w - 16) & (y > 15) & (y < h - 16)
    idx = np.flatnonzero(good)
    if len(idx) < 3:
        return None
    idx = idx[np.argsort(-objects["flux"][idx])][:200]
    fwhm = None
    rmax = np.clip(6.0 * objects["a"][idx], 5.0, 15.0)
    for _ in range(2):  # the second pass uses the aperture the calibration table was built with
        r_half, flag = sep.flux_radius(data_sub, x[idx], y[idx], rmax, 0.5, subpix=5)
        r_half = r_half[(flag == 0) & np.isfinite(r_half) & (r_half > 0.3)]
        if len(r_half) < 3:
            return fwhm
        fwhm = _fwhm_from_half_light_radius(float(np.median(r_half)))
        rmax = np.full(len(idx), _rmax_for_fwhm(fwhm))
    return fwhm


def _rmax_for_fwhm(fwhm_px: float) -> float:
    return float(np.clip(3.5 * fwhm_px, 5.0, 20.0))


@lru_cache(maxsize=1)
def _half_light_radius_table() -> tuple[np.ndarray, np.ndarray]:
    """sep's half-light radius of pixel-integrated Gaussians vs their FWHM, at random sub-pixel
    phases. sep.flux_radius is biased for a few-pixel PSF (+5% at 2 px FWHM, +12% at 1.2 px, measured),
    so the seeing is read off this table rather than from the continuous-profile formula r = FWHM/2."""
    from scipy.special import erf

    fwhms = np.concatenate([np.linspace(0.6, 4.0, 35), np.linspace(4.25, 14.0, 20)])
    radii = np.empty_like(fwhms)
    size = 72
    grid = np.arange(size, dtype=np.float64)
    rng = np.random.default_rng(12345)
    phases = rng.uniform(-0.5, 0.5, (5, 2))
    for k, fwhm in enumerate(fwhms):
        s = fwhm / _GAUSS_FWHM_PER_SIGMA * math.sqrt(2.0)
        rmax = _rmax_for_fwhm(fwhm)
        measured = []
        for px, py in phases:
            cx, cy = size / 2 + px, size / 2 + py
            gx = 0.5 * (erf((grid + 0.5 - cx) / s) - erf((grid - 0.5 - cx) / s))
            gy = 0.5 * (erf((grid + 0.5 - cy) / s) - erf((grid - 0.5 - cy) / s))
            stamp = np.ascontiguousarray(np.outer(gy, gx))
            r, _ = sep.flux_radius(stamp, np.array([cx]), np.array([cy]), np.array([rmax]), 0.5, subpix=5)
            measured.append(r[0])
        radii[k] = np.median(measured)
    return radii, fwhms


def _fwhm_from_half_light_radius(r_half_px: float) -> float:
    radii, fwhms = _half_light_radius_table()
    if r_half_px >= radii[-1]:  # beyond the table: the pixel no longer matters
        return float(2.0 * r_half_px)
    return float(np.interp(r_half_px, radii, fwhms))


def saturation_mask(raw: np.ndarray, header: fits.Header) -> np.ndarray:
    """Pixels at or near full well in the raw frame (SATURATE header, else the 16-bit limit)."""
    level = float(header.get("SATURATE", 65535.0))
    return raw >= 0.97 * level


def photometry(
    data_sub: np.ndarray,
    objects,
    *,
    noise_adu: float,
    gain_e_per_adu: float,
    fwhm_px: float,
    sat_mask: np.ndarray | None,
) -> tuple[SourceTable, float, float]:
    """Aperture photometry (radius = 1 FWHM) of every object, corrected to total flux.

    Returns (sources, aperture radius px, aperture correction factor >= 1).
    """
    n = len(objects)
    radius_px = max(1.5, fwhm_px)
    x = np.ascontiguousarray(objects["x"], dtype=np.float64)
    y = np.ascontiguousarray(objects["y"], dtype=np.float64)
    if n:
        # Windowed centroids (SExtractor XWIN) are several times more precise than the isophotal
        # barycentre for faint sources, which is what a transient position needs.
        sig = np.full(n, fwhm_px / _GAUSS_FWHM_PER_SIGMA)
        xw, yw, wflag = sep.winpos(data_sub, x, y, sig)
        ok = (wflag == 0) & (np.hypot(xw - x, yw - y) < fwhm_px)
        x = np.where(ok, xw, x)
        y = np.where(ok, yw, y)
    flux, flux_err, flag = sep.sum_circle(data_sub, x, y, radius_px, err=noise_adu, gain=gain_e_per_adu, subpix=5)
    saturated = np.zeros(n, dtype=bool)
    if sat_mask is not None and n and sat_mask.any():
        sat_sum, _, _ = sep.sum_circle(sat_mask.astype(np.float32), x, y, radius_px + 1.0, subpix=1)
        saturated = sat_sum > 0
    aperture_correction = _aperture_correction(data_sub, x, y, flux, flux_err, objects, radius_px, saturated, fwhm_px)
    flux = flux * aperture_correction
    flux_err = flux_err * aperture_correction
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.where(flux_err > 0, flux / flux_err, 0.0)
    # Centroid error of a Gaussian star: sigma_psf / SNR per axis (a standard approximation that
    # also holds for the windowed centroid).
    with np.errstate(divide="ignore", invalid="ignore"):
        pos_err = np.where(snr > 0, (fwhm_px / _GAUSS_FWHM_PER_SIGMA) / snr, np.inf)
    table = SourceTable(
        x=x,
        y=y,
        flux_adu=flux,
        flux_err_adu=flux_err,
        snr=snr,
        peak_adu=np.asarray(objects["peak"], dtype=np.float64),
        a_px=np.asarray(objects["a"], dtype=np.float64),
        b_px=np.asarray(objects["b"], dtype=np.float64),
        flags=np.asarray(objects["flag"], dtype=np.int64) | np.asarray(flag, dtype=np.int64),
        saturated=saturated,
        pos_err_px=pos_err,
        hot_pixel_like=peak_concentration(data_sub, objects) >= HOT_PIXEL_CONCENTRATION,
        catalog_index=np.full(n, -1, dtype=int),
    )
    return table, radius_px, aperture_correction


def _aperture_correction(data_sub, x, y, flux, flux_err, objects, radius_px, saturated, fwhm_px) -> float:
    """Median ratio of the flux in a 3-FWHM aperture to the flux in the photometry aperture, over
    bright isolated unsaturated stars; falls back to the Gaussian value when there are too few."""
    gaussian_fraction = 1.0 - math.exp(-0.5 * (radius_px * _GAUSS_FWHM_PER_SIGMA / fwhm_px) ** 2)
    fallback = 1.0 / gaussian_fraction
    if len(x) < 5:
        return fallback
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.where(flux_err > 0, flux / flux_err, 0.0)
    big_px = 3.0 * fwhm_px
    good = (snr > 50) & ~saturated & (objects["flag"] == 0)
    good &= peak_concentration(data_sub, objects) < HOT_PIXEL_CONCENTRATION
    dist, _ = cKDTree(np.column_stack([x, y])).query(np.column_stack([x, y]), k=2)
    good &= dist[:, 1] > 2.0 * big_px
    h, w = data_sub.shape
    good &= (x > big_px + 2) & (x < w - big_px - 3) & (y > big_px + 2) & (y < h - big_px - 3)
    idx = np.flatnonzero(good)
    if len(idx) < 5:
        return fallback
    idx = idx[np.argsort(-snr[idx])][:100]
    big, _, _ = sep.sum_circle(data_sub, x[idx], y[idx], big_px, subpix=5)
    ratio = big / flux[idx]
    ratio = ratio[np.isfinite(ratio) & (ratio > 0.9) & (ratio < 2.0)]
    if len(ratio) < 5:
        return fallback
    return float(np.median(ratio))


# --------------------------------------------------------------------------------------------
# Astrometry check
# --------------------------------------------------------------------------------------------


def image_wcs(header: fits.Header) -> WCS:
    """The celestial WCS of the header; AnalysisError if there is none (astrometry impossible)."""
    ctype1, ctype2 = str(header.get("CTYPE1", "")), str(header.get("CTYPE2", ""))
    if not (ctype1.startswith("RA") and ctype2.startswith("DEC")):
        raise AnalysisError("no celestial WCS in the FITS header (CTYPE1/CTYPE2 RA---/DEC--): cannot check astrometry")
    for key in ("CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2"):
        if key not in header:
            raise AnalysisError(f"incomplete WCS in the FITS header: {key} missing")
    if not (("CD1_1" in header and "CD2_2" in header) or ("CDELT1" in header and "CDELT2" in header)):
        raise AnalysisError("incomplete WCS in the FITS header: no CD matrix nor CDELT")
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(header, naxis=2)
    except Exception as exc:
        raise AnalysisError(f"invalid WCS in the FITS header: {exc}") from exc
    if not wcs.has_celestial:
        raise AnalysisError("no celestial WCS in the FITS header: cannot check astrometry")
    return wcs


def pixel_scale_arcsec(wcs: WCS) -> float:
    from astropy.wcs.utils import proj_plane_pixel_scales

    return float(np.mean(proj_plane_pixel_scales(wcs.celestial)) * 3600.0)


def match_catalog(
    src_x: np.ndarray,
    src_y: np.ndarray,
    src_flux: np.ndarray,
    cat_x: np.ndarray,
    cat_y: np.ndarray,
    cat_mag: np.ndarray,
    *,
    scale_arcsec: float,
    match_radius_px: float,
    search_radius_px: float,
) -> CatalogMatch:
    """Match sources to catalogue stars (both in pixel coordinates), tolerating a WCS offset.

    First the offset: the histogram of all bright-source/bright-star pair offsets within
    ``search_radius_px`` peaks at the true shift (chance pairs spread evenly), then every source is
    matched to its nearest catalogue star within ``match_radius_px`` after that shift, and the shift is
    refined as the median of the matched pairs.
    """
    n_src = len(src_x)
    unmatched = CatalogMatch(0, 0.0, 0.0, float("nan"), float("nan"), np.full(n_src, -1, dtype=int))
    if n_src == 0 or len(cat_x) == 0:
        return unmatched
    bright_src = np.argsort(-src_flux)[:150]
    bright_cat = np.argsort(cat_mag)[:300]
    cat_tree_bright = cKDTree(np.column_stack([cat_x[bright_cat], cat_y[bright_cat]]))
    pairs = cat_tree_bright.query_ball_point(np.column_stack([src_x[bright_src], src_y[bright_src]]), search_radius_px)
    dx_list, dy_list = [], []
    for i, neighbours in zip(bright_src, pairs, strict=True):
        if neighbours:
            j = bright_cat[np.asarray(neighbours)]
            dx_list.append(cat_x[j] - src_x[i])
            dy_list.append(cat_y[j] - src_y[i])
    if not dx_list:
        return unmatched
    dx_all, dy_all = np.concatenate(dx_list), np.concatenate(dy_list)
    bin_px = max(1.0, match_radius_px)
    edges = np.arange(-search_radius_px, search_radius_px + bin_px, bin_px)
    hist, xe, ye = np.histogram2d(dx_all, dy_all, bins=[edges, edges])
    ix, iy = np.unravel_index(np.argmax(hist), hist.shape)
    near = (np.abs(dx_all - 0.5 * (xe[ix] + xe[ix + 1])) <= 1.5 * bin_px) & (
        np.abs(dy_all - 0.5 * (ye[iy] + ye[iy + 1])) <= 1.5 * bin_px
    )
    shift_x, shift_y = float(np.median(dx_all[near])), float(np.median(dy_all[near]))

    cat_tree = cKDTree(np.column_stack([cat_x, cat_y]))
    catalog_index = np.full(n_src, -1, dtype=int)
    for _ in range(2):
        dist, j = cat_tree.query(np.column_stack([src_x + shift_x, src_y + shift_y]), k=1,
                                 distance_upper_bound=match_radius_px)
        ok = np.isfinite(dist)
        # One catalogue star claims at most one source: keep the closest (a deblended fragment of a
        # bright star must not be counted as that star, nor be flagged as "absent from the catalogue").
        catalog_index[:] = -1
        order = np.argsort(np.where(ok, dist, np.inf))
        taken: set[int] = set()
        for i in order:
            if not ok[i]:
                break
            if j[i] not in taken:
                taken.add(int(j[i]))
                catalog_index[i] = j[i]
        m = catalog_index >= 0
        if m.sum() < 3:
            break
        shift_x = float(np.median(cat_x[catalog_index[m]] - src_x[m]))
        shift_y = float(np.median(cat_y[catalog_index[m]] - src_y[m]))
    m = catalog_index >= 0
    n_matched = int(m.sum())
    if n_matched < 3:
        return CatalogMatch(n_matched, shift_x, shift_y, float("nan"), float("nan"), catalog_index)
    rx = cat_x[catalog_index[m]] - src_x[m] - shift_x
    ry = cat_y[catalog_index[m]] - src_y[m] - shift_y
    rms = float(np.sqrt(np.median(rx**2 + ry**2))) * scale_arcsec
    return CatalogMatch(
        n_matched=n_matched,
        offset_x_px=shift_x,
        offset_y_px=shift_y,
        offset_arcsec=float(math.hypot(shift_x, shift_y) * scale_arcsec),
        rms_arcsec=rms,
        catalog_index=catalog_index,
    )


def zero_point(
    sources: SourceTable,
    catalog_mag: np.ndarray,
    *,
    exposure_s: float,
    gain_e_per_adu: float,
    isolated_catalog: np.ndarray,
    min_snr: float = 10.0,
) -> ZeroPoint:
    """Zero point from matched, unsaturated, well-measured stars with uncontaminated apertures.

    Each star gives ``zp_i = m_cat + 2.5 log10(flux_e / t)``; a 3-sigma clip around the median
    rejects variables and blends, then the inverse-variance mean of the rest is the zero point.
    """
    idx = sources.catalog_index
    m = (idx >= 0) & ~sources.saturated & ~sources.hot_pixel_like & (sources.snr >= min_snr) & (sources.flux_adu > 0) & (sources.flags <= 1)
    m &= np.where(idx >= 0, isolated_catalog[np.maximum(idx, 0)], False)
    m &= np.isfinite(np.where(idx >= 0, catalog_mag[np.maximum(idx, 0)], np.nan))
    if m.sum() < 3 or exposure_s <= 0:
        return ZeroPoint(None, None, int(m.sum()), None)
    flux_e_s = sources.flux_adu[m] * gain_e_per_adu / exposure_s
    zp_i = catalog_mag[idx[m]] + 2.5 * np.log10(flux_e_s)
    err_i = np.hypot(1.0857 / sources.snr[m], 0.01)  # 1% floor: flat-field and catalogue errors
    keep = np.ones(len(zp_i), dtype=bool)
    for _ in range(3):
        med = np.median(zp_i[keep])
        mad = 1.4826 * np.median(np.abs(zp_i[keep] - med))
        new_keep = np.abs(zp_i - med) <= 3.0 * max(mad, 0.02)
        if new_keep.sum() < 3 or (new_keep == keep).all():
            break
        keep = new_keep
    w = 1.0 / err_i[keep] ** 2
    zp = float(np.sum(w * zp_i[keep]) / np.sum(w))
    scatter = float(np.std(zp_i[keep]))
    zp_err = float(max(scatter / math.sqrt(keep.sum()), 1.0 / math.sqrt(np.sum(w))))
    return ZeroPoint(zp, zp_err, int(keep.sum()), scatter)


def isolated_in_catalog(cat_x: np.ndarray, cat_y: np.ndarray, cat_mag: np.ndarray, radius_px: float) -> np.ndarray:
    """True for catalogue stars whose aperture gets < 2% of their flux from other catalogue stars."""
    if len(cat_x) == 0:
        return np.zeros(0, dtype=bool)
    tree = cKDTree(np.column_stack([cat_x, cat_y]))
    neighbours = tree.query_ball_point(np.column_stack([cat_x, cat_y]), radius_px)
    flux = 10 ** (-0.4 * np.nan_to_num(cat_mag, nan=99.0))
    out = np.ones(len(cat_x), dtype=bool)
    for i, nb in enumerate(neighbours):
        if len(nb) > 1:
            out[i] = (flux[nb].sum() - flux[i]) < 0.02 * flux[i]
    return out


def limiting_mag(
    zp_mag: float | None, *, noise_adu: float, radius_px: float, aperture_correction: float, gain_e_per_adu: float,
    exposure_s: float, n_sigma: float = 5.0,
) -> float | None:
    """Magnitude of a point source detected at ``n_sigma`` in the photometry aperture (sky-limited)."""
    if zp_mag is None or exposure_s <= 0 or noise_adu <= 0:
        return None
    flux_adu = n_sigma * noise_adu * math.sqrt(math.pi * radius_px**2) * aperture_correction
    return float(zp_mag - 2.5 * math.log10(flux_adu * gain_e_per_adu / exposure_s))


def catalog_band(filter_name: str | None, names: tuple[str, ...] | list[str]) -> str | None:
    """The catalogue column for a filter (``mag_R`` for "R"); unfiltered falls back to Clear, then R."""
    candidates = []
    if filter_name:
        candidates += [f"mag_{filter_name}", f"mag_{filter_name.upper()}", f"mag_{filter_name.capitalize()}"]
        if filter_name.lower() in ("clear", "c", "l", "lum", "luminance", "none", "open"):
            candidates += ["mag_Clear"]
    for name in candidates:
        if name in names:
            return name
    return None


def sources_as_dicts(sources: SourceTable, limit: int, scale_arcsec: float) -> list[dict[str, Any]]:
    """The brightest ``limit`` sources as plain dicts (JSON-able)."""
    order = np.argsort(-sources.flux_adu)[:limit]
    out = []
    has_sky = len(sources.ra_deg) == len(sources)
    has_mag = len(sources.mag) == len(sources)
    for i in order:
        out.append(
            {
                "x": round(float(sources.x[i]), 2),
                "y": round(float(sources.y[i]), 2),
                "ra_deg": round(float(sources.ra_deg[i]), 7) if has_sky else None,
                "dec_deg": round(float(sources.dec_deg[i]), 7) if has_sky else None,
                "flux_adu": round(float(sources.flux_adu[i]), 1),
                "snr": round(float(sources.snr[i]), 1),
                "mag": _round_or_none(sources.mag[i], 3) if has_mag else None,
                "mag_err": _round_or_none(sources.mag_err[i], 3) if has_mag else None,
                "fwhm_arcsec": round(float(_GAUSS_FWHM_PER_SIGMA * math.sqrt(
                    0.5 * (sources.a_px[i] ** 2 + sources.b_px[i] ** 2))) * scale_arcsec, 2),
                "saturated": bool(sources.saturated[i]),
                "in_catalog": bool(sources.catalog_index[i] >= 0),
            }
        )
    return out


def _round_or_none(value: float, digits: int) -> float | None:
    return round(float(value), digits) if np.isfinite(value) else None
