"""The analysis of one science image, end to end, as plain data (no Django).

``analyze_image(fits)`` loads, calibrates, measures background/noise, extracts sources, measures
seeing, checks the WCS against the reference catalogue, fits the zero point, computes the limiting
magnitude and, for an alert, looks for afterglow candidates in the burst's error region. It never
raises for a bad file: the result says ``status="failed"`` with a ``failure_reason`` a person can
act on, plus whatever was measured before the failure. The same inputs give the same result, so
re-running an analysis is idempotent (the caller replaces the stored result).
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
from astropy.wcs import FITSFixedWarning

from analyzer import afterglow, measure
from analyzer.calibration import (
    AnalysisError,
    Masters,
    calibrate_frame,
    exposure_time_s,
    frame_kind,
    load_fits,
    parse_date_obs,
)

ANALYZER_VERSION = "1.0"
CatalogFn = Callable[[float, float, float], np.ndarray]
MAX_SOURCES_LISTED = 200
# The demo sky renders stars to V=21; asking the catalogue as deep means every star the camera can
# detect is in the reference, so an unmatched source is genuinely new (see afterglow.find_candidates
# for how a shallower catalogue is handled).
DEFAULT_CATALOG_MAG_LIMIT = 21.0


class _DefaultCatalog:
    """devices.sky.catalog_stars (imported lazily: the analyzer also runs on real catalogues)."""

    def __call__(self, ra_deg: float, dec_deg: float, radius_deg: float) -> np.ndarray:
        from devices.sky import catalog_stars

        return catalog_stars(ra_deg, dec_deg, radius_deg, mag_limit=DEFAULT_CATALOG_MAG_LIMIT)

    def __repr__(self) -> str:
        return "devices.sky.catalog_stars"


DEFAULT_CATALOG: CatalogFn = _DefaultCatalog()

# A telescope revisits the same field image after image: keep the last few catalogue queries.
_catalog_cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
_CATALOG_CACHE_SIZE = 16


def _query_catalog(catalog: CatalogFn, ra_deg: float, dec_deg: float, radius_deg: float) -> np.ndarray:
    # The callable itself is in the key (not its id()): the cache keeps it alive, so a new callable
    # can never inherit a dead one's id and its stars.
    try:
        key = (catalog, round(ra_deg, 4), round(dec_deg, 4), round(radius_deg, 4))
        hash(key)
    except TypeError:  # an unhashable callable object: no caching
        return _checked_catalog(catalog(ra_deg, dec_deg, radius_deg))
    if key in _catalog_cache:
        _catalog_cache.move_to_end(key)
        return _catalog_cache[key]
    stars = _checked_catalog(catalog(ra_deg, dec_deg, radius_deg))
    _catalog_cache[key] = stars
    if len(_catalog_cache) > _CATALOG_CACHE_SIZE:
        _catalog_cache.popitem(last=False)
    return stars


def _checked_catalog(stars: Any) -> np.ndarray:
    if not isinstance(stars, np.ndarray) or stars.dtype.names is None or not {"ra_deg", "dec_deg"} <= set(
        stars.dtype.names
    ):
        raise AnalysisError("the reference catalogue returned no ra_deg/dec_deg table")
    return stars


@dataclass
class AnalysisProducts:
    """The result dict plus the arrays a quick-look needs (not JSON-able, not stored)."""

    result: dict[str, Any]
    calibrated: np.ndarray | None = None


def _empty_result() -> dict[str, Any]:
    return {
        "status": "failed",
        "failure_reason": None,
        "analyzer_version": ANALYZER_VERSION,
        "warnings": [],
        "object": None,
        "filter": None,
        "exposure_s": None,
        "date_obs_utc": None,
        "mid_time_utc": None,
        "image_shape": None,
        "n_sources": None,
        "background_adu": None,
        "noise_adu": None,
        "fwhm_px": None,
        "fwhm_arcsec": None,
        "pixel_scale_arcsec": None,
        "wcs_offset_arcsec": None,
        "wcs_offset_ra_arcsec": None,
        "wcs_offset_dec_arcsec": None,
        "wcs_rms_arcsec": None,
        "n_matched": None,
        "catalog": None,
        "field": None,
        "zero_point_mag": None,
        "zero_point_err_mag": None,
        "zero_point_n_stars": None,
        "limiting_mag": None,
        "aperture_radius_px": None,
        "aperture_correction": None,
        "sources": [],
        "burst": None,
        "n_candidates": None,
        "candidates": [],
        "calibrated_with": [],
        "timings_s": {},
    }


def analyze_image(
    fits_source: bytes | bytearray | str | os.PathLike[str],
    *,
    masters: Masters | None = None,
    catalog: CatalogFn | None = DEFAULT_CATALOG,
    burst: afterglow.BurstRegion | None = None,
    max_sources: int = MAX_SOURCES_LISTED,
    min_candidate_snr: float = 7.0,
) -> dict[str, Any]:
    """Analyse one FITS image; returns a JSON-able dict (see module docstring).

    ``catalog=None`` skips the astrometric check, the zero point and the candidate search (the
    result says so in ``warnings``). ``burst`` enables the afterglow search.
    """
    return analyze_image_products(
        fits_source, masters=masters, catalog=catalog, burst=burst, max_sources=max_sources,
        min_candidate_snr=min_candidate_snr,
    ).result


def analyze_image_with_quicklook(
    fits_source: bytes | bytearray | str | os.PathLike[str],
    *,
    masters: Masters | None = None,
    catalog: CatalogFn | None = DEFAULT_CATALOG,
    burst: afterglow.BurstRegion | None = None,
    max_px: int = 1024,
) -> tuple[dict[str, Any], bytes | None]:
    """Like :func:`analyze_image`, plus a zscale PNG of the calibrated frame with the candidates
    circled (None when the file could not even be read)."""
    from analyzer.quicklook import render_png

    products = analyze_image_products(fits_source, masters=masters, catalog=catalog, burst=burst)
    if products.calibrated is None:
        return products.result, None
    started = time.perf_counter()
    marks = [(c["x"], c["y"], f"#{c['rank']} {c['mag']:.1f}") for c in products.result["candidates"][:10]]
    png = render_png(products.calibrated, max_px=max_px, marks=marks)
    products.result["timings_s"]["quicklook"] = round(time.perf_counter() - started, 4)
    return products.result, png


def analyze_image_products(
    fits_source: bytes | bytearray | str | os.PathLike[str],
    *,
    masters: Masters | None = None,
    catalog: CatalogFn | None = DEFAULT_CATALOG,
    burst: afterglow.BurstRegion | None = None,
    max_sources: int = MAX_SOURCES_LISTED,
    min_candidate_snr: float = 7.0,
) -> AnalysisProducts:
    result = _empty_result()
    products = AnalysisProducts(result=result)
    timings: dict[str, float] = result["timings_s"]
    started = time.perf_counter()
    try:
        _run(fits_source, masters, catalog, burst, max_sources, min_candidate_snr, products, timings)
        result["status"] = "ok"
    except AnalysisError as exc:
        result["status"] = "failed"
        result["failure_reason"] = str(exc)
    except _Skipped as exc:
        result["status"] = "skipped"
        result["failure_reason"] = str(exc)
    except Exception as exc:  # a bug or an input we did not foresee: record it, never crash the worker
        result["status"] = "failed"
        result["failure_reason"] = f"internal error while analysing ({type(exc).__name__}: {exc})"
    timings["total"] = round(time.perf_counter() - started, 4)
    return products


class _Skipped(Exception):
    """The file is valid but is not a science frame (bias/dark/flat go into masters instead)."""


def _lap(timings: dict[str, float], name: str, since: float) -> float:
    now = time.perf_counter()
    timings[name] = round(now - since, 4)
    return now


def _run(
    fits_source,
    masters: Masters | None,
    catalog: CatalogFn | None,
    burst: afterglow.BurstRegion | None,
    max_sources: int,
    min_candidate_snr: float,
    products: AnalysisProducts,
    timings: dict[str, float],
) -> None:
    result = products.result
    t = time.perf_counter()
    raw, header = load_fits(fits_source)
    kind = frame_kind(header)
    if kind != "LIGHT":
        raise _Skipped(f"not a science frame (IMAGETYP={header.get('IMAGETYP')!r}): calibration frames go into masters")
    if not str(header.get("FILTER", "")).strip():
        raise AnalysisError("missing FITS header FILTER (needed to pick the flat and the catalogue band)")
    sample = raw[::7, ::7]
    if float(sample.max()) == float(sample.min()) and float(raw.max()) == float(raw.min()):
        raise AnalysisError(f"the image is constant (every pixel {float(raw.flat[0]):g} ADU): no signal, camera fault?")
    exposure_s = exposure_time_s(header)
    if exposure_s <= 0:
        raise AnalysisError("EXPTIME is 0 s: a light frame needs a positive exposure time")
    date_obs = parse_date_obs(header)
    filter_name = str(header["FILTER"]).strip()
    gain = float(header.get("GAIN", header.get("EGAIN", 0.0)) or 0.0)
    if not gain > 0:
        result["warnings"].append("no GAIN header: 1 e-/ADU assumed for the zero point and noise")
        gain = 1.0
    result.update(
        object=str(header.get("OBJECT", "")) or None,
        filter=filter_name,
        exposure_s=exposure_s,
        date_obs_utc=date_obs.isoformat(),
        mid_time_utc=(date_obs + timedelta(seconds=exposure_s / 2.0)).isoformat(),
        image_shape=list(raw.shape),
    )
    t = _lap(timings, "load", t)

    calibrated, used, notes = calibrate_frame(raw, exposure_s=exposure_s, filter_name=filter_name, masters=masters)
    result["calibrated_with"] = used
    result["warnings"].extend(notes)
    products.calibrated = calibrated
    sat_mask = measure.saturation_mask(raw, header)
    t = _lap(timings, "calibrate", t)

    background = measure.estimate_background(calibrated)
    data_sub = calibrated - background.back
    result["background_adu"] = round(background.level_adu, 3)
    result["noise_adu"] = round(background.noise_adu, 4)
    products.calibrated = calibrated
    t = _lap(timings, "background", t)

    objects = measure.extract_sources(data_sub, background.noise_adu)
    result["n_sources"] = int(len(objects))
    t = _lap(timings, "extract", t)

    fwhm_px = measure.seeing_fwhm_px(data_sub, objects, background.noise_adu, sat_mask)
    if fwhm_px is None:
        result["warnings"].append("too few bright isolated stars to measure the seeing: FWHM assumed 2.5 px")
    fwhm_for_apertures = fwhm_px if fwhm_px is not None else 2.5
    sources, radius_px, aperture_correction = measure.photometry(
        data_sub, objects, noise_adu=background.noise_adu, gain_e_per_adu=gain, fwhm_px=fwhm_for_apertures,
        sat_mask=sat_mask,
    )
    result["fwhm_px"] = None if fwhm_px is None else round(fwhm_px, 3)
    result["aperture_radius_px"] = round(radius_px, 3)
    result["aperture_correction"] = round(aperture_correction, 4)
    t = _lap(timings, "photometry", t)

    if catalog is None:
        result["warnings"].append("no reference catalogue: astrometry, zero point and candidates not computed")
        result["sources"] = measure.sources_as_dicts(sources, max_sources, 1.0)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = measure.image_wcs(header)
    scale = measure.pixel_scale_arcsec(wcs)
    result["pixel_scale_arcsec"] = round(scale, 4)
    if fwhm_px is not None:
        result["fwhm_arcsec"] = round(fwhm_px * scale, 3)
    height, width = raw.shape
    (centre_ra, centre_dec), = wcs.all_pix2world([[(width - 1) / 2.0, (height - 1) / 2.0]], 0)
    # Half-diagonal plus the largest pointing error we accept, so edge stars are all there.
    search_radius_arcsec = 60.0
    radius_deg = (math.hypot(width, height) / 2.0 * scale + search_radius_arcsec) / 3600.0
    try:
        stars = _query_catalog(catalog, float(centre_ra), float(centre_dec), radius_deg)
    except AnalysisError:
        raise
    except Exception as exc:
        raise AnalysisError(f"the reference catalogue query failed ({type(exc).__name__}: {exc})") from exc
    band = measure.catalog_band(filter_name, stars.dtype.names or ())
    result["catalog"] = {"name": repr(catalog), "n_stars": int(len(stars)), "band": band}
    # Where the frame is on the sky (header WCS): tells which images of an event could have seen a source.
    result["field"] = {
        "ra_deg": round(float(centre_ra), 6),
        "dec_deg": round(float(centre_dec), 6),
        "half_width_deg": round(width / 2.0 * scale / 3600.0, 5),
        "half_height_deg": round(height / 2.0 * scale / 3600.0, 5),
    }
    cat_x, cat_y = wcs.all_world2pix(stars["ra_deg"], stars["dec_deg"], 0)
    cat_mag = np.asarray(stars[band], dtype=np.float64) if band else np.full(len(stars), np.nan)
    match_radius_px = max(2.0, 1.0 * fwhm_for_apertures)
    match = measure.match_catalog(
        sources.x, sources.y, sources.flux_adu, cat_x, cat_y,
        cat_mag if band else np.arange(len(stars), dtype=np.float64),
        scale_arcsec=scale, match_radius_px=match_radius_px, search_radius_px=search_radius_arcsec / scale,
    )
    sources.catalog_index = match.catalog_index
    result["n_matched"] = match.n_matched
    if match.n_matched < 3:
        result["warnings"].append(
            f"only {match.n_matched} sources matched the catalogue: WCS offset, zero point and candidates not computed"
        )
    else:
        result["wcs_offset_arcsec"] = round(match.offset_arcsec, 3)
        result["wcs_rms_arcsec"] = round(match.rms_arcsec, 3)
    # Sky positions corrected by the measured offset: a candidate's position must be the true one.
    shift_x = match.offset_x_px if match.n_matched >= 3 else 0.0
    shift_y = match.offset_y_px if match.n_matched >= 3 else 0.0
    ra_src, dec_src = wcs.all_pix2world(sources.x + shift_x, sources.y + shift_y, 0)
    sources.ra_deg, sources.dec_deg = np.asarray(ra_src), np.asarray(dec_src)
    if match.n_matched >= 3:
        # Offset of the header WCS on the sky (catalogue minus header position), east and north.
        (ra_hdr, dec_hdr) = wcs.all_pix2world([[width / 2.0, height / 2.0]], 0)[0]
        (ra_true, dec_true) = wcs.all_pix2world([[width / 2.0 + shift_x, height / 2.0 + shift_y]], 0)[0]
        result["wcs_offset_ra_arcsec"] = round(
            float(((ra_hdr - ra_true + 180.0) % 360.0 - 180.0) * math.cos(math.radians(dec_true)) * 3600.0), 3
        )
        result["wcs_offset_dec_arcsec"] = round(float((dec_hdr - dec_true) * 3600.0), 3)
    t = _lap(timings, "astrometry", t)

    zp = measure.ZeroPoint(None, None, 0, None)
    if band is None:
        result["warnings"].append(f"the catalogue has no magnitudes for filter {filter_name!r}: no zero point")
    elif match.n_matched >= 3:
        isolated = measure.isolated_in_catalog(cat_x, cat_y, cat_mag, radius_px + fwhm_for_apertures)
        zp = measure.zero_point(sources, cat_mag, exposure_s=exposure_s, gain_e_per_adu=gain, isolated_catalog=isolated)
        if zp.zero_point_mag is None:
            result["warnings"].append("too few well-measured catalogue stars for a zero point")
    result["zero_point_mag"] = None if zp.zero_point_mag is None else round(zp.zero_point_mag, 4)
    result["zero_point_err_mag"] = None if zp.zero_point_err_mag is None else round(zp.zero_point_err_mag, 4)
    result["zero_point_n_stars"] = zp.n_stars
    result["limiting_mag"] = _round(measure.limiting_mag(
        zp.zero_point_mag, noise_adu=background.noise_adu, radius_px=radius_px,
        aperture_correction=aperture_correction, gain_e_per_adu=gain, exposure_s=exposure_s,
    ), 3)
    if zp.zero_point_mag is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            sources.mag = np.where(
                sources.flux_adu > 0,
                zp.zero_point_mag - 2.5 * np.log10(np.maximum(sources.flux_adu, 1e-30) * gain / exposure_s),
                np.nan,
            )
            sources.mag_err = np.where(sources.snr > 0, 1.0857 / sources.snr, np.nan)
    else:
        sources.mag = np.full(len(sources), np.nan)
        sources.mag_err = np.full(len(sources), np.nan)
    result["sources"] = measure.sources_as_dicts(sources, max_sources, scale)
    t = _lap(timings, "zero_point", t)

    if burst is None:
        return
    result["burst"] = burst.as_dict()
    if zp.zero_point_mag is None or match.n_matched < 3:
        result["warnings"].append("no afterglow search: it needs a matched catalogue and a zero point")
        return
    # The catalogue's completeness in this band: its V limit shifted by the colours of its faint
    # stars (the median colour of the faintest 10%), so "absent from the catalogue" means something.
    depth = _catalog_depth(stars, band)
    result["candidates"] = afterglow.find_candidates(
        sources,
        catalog_ra_deg=np.asarray(stars["ra_deg"], dtype=np.float64),
        catalog_dec_deg=np.asarray(stars["dec_deg"], dtype=np.float64),
        catalog_mag=cat_mag,
        catalog_depth_mag=depth,
        burst=burst,
        fwhm_arcsec=fwhm_for_apertures * scale,
        wcs_rms_arcsec=match.rms_arcsec if math.isfinite(match.rms_arcsec) else 1.0,
        zero_point_err_mag=zp.zero_point_err_mag or 0.0,
        pixel_scale_arcsec=scale,
        min_snr=min_candidate_snr,
    )
    result["n_candidates"] = len(result["candidates"])
    _lap(timings, "candidates", t)


def _catalog_depth(stars: np.ndarray, band: str) -> float | None:
    mags = np.asarray(stars[band], dtype=np.float64)
    mags = mags[np.isfinite(mags)]
    if len(mags) < 20:
        return None
    faint = np.sort(mags)[int(0.9 * len(mags)):]
    return float(np.median(faint))


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)
