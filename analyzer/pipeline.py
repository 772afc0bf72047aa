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
from astropy.time import Time
from astropy.wcs import FITSFixedWarning

from analyzer import afterglow, astrometry, measure
from analyzer.calibration import (
    AnalysisError,
    Masters,
    calibrate_frame,
    exposure_time_s,
    frame_kind,
    load_fits,
    parse_date_obs,
)
from devices.catalogs import AB_MINUS_VEGA, CallableCatalog, ReferenceCatalog, SimulatedSkyCatalog, julian_year

ANALYZER_VERSION = "2.0"
CatalogFn = Callable[[float, float, float], np.ndarray]
CatalogLike = ReferenceCatalog | CatalogFn
MAX_SOURCES_LISTED = 200
# The demo sky renders stars to V=21; asking the catalogue as deep means every star the camera can
# detect is in the reference, so an unmatched source is genuinely new (see afterglow.find_candidates
# for how a shallower catalogue is handled).
DEFAULT_CATALOG_MAG_LIMIT = 21.0
DEFAULT_CATALOG: ReferenceCatalog = SimulatedSkyCatalog(mag_limit=DEFAULT_CATALOG_MAG_LIMIT)
# The largest header pointing error the refinement looks for; beyond it the blind solve takes over.
MAX_POINTING_ERROR_ARCSEC = 300.0

# A telescope revisits the same field image after image: keep the last few catalogue queries.
_catalog_cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
_CATALOG_CACHE_SIZE = 16


def as_reference_catalog(catalog: CatalogLike) -> ReferenceCatalog:
    return catalog if isinstance(catalog, ReferenceCatalog) else CallableCatalog(catalog)


def _query_catalog(catalog: ReferenceCatalog, ra_deg: float, dec_deg: float, radius_deg: float,
                   epoch_jyear: float) -> np.ndarray:
    # The catalogue object itself is in the key (not its id()): the cache keeps it alive, so a new one
    # can never inherit a dead one's id and its stars.
    key = (catalog, round(ra_deg, 4), round(dec_deg, 4), round(radius_deg, 4), round(epoch_jyear, 1))
    if key in _catalog_cache:
        _catalog_cache.move_to_end(key)
        return _catalog_cache[key]
    try:
        stars = catalog.cone(ra_deg, dec_deg, radius_deg, epoch_jyear=epoch_jyear)
    except Exception as exc:
        raise AnalysisError(f"the reference catalogue query failed ({type(exc).__name__}: {exc})") from exc
    _catalog_cache[key] = stars
    if len(_catalog_cache) > _CATALOG_CACHE_SIZE:
        _catalog_cache.popitem(last=False)
    return stars


def _usable_band(filter_name: str, stars: np.ndarray) -> str | None:
    """The catalogue column for the filter, if the catalogue has magnitudes in it for these stars."""
    band = measure.catalog_band(filter_name, stars.dtype.names or ())
    if band is None or not np.isfinite(np.asarray(stars[band], dtype=np.float64)).any():
        return None
    return band


def _solve(header, shape, sources: measure.SourceTable, fwhm_px: float, catalog: ReferenceCatalog, date_obs,
           index_dir: str | None, result: dict[str, Any]):
    """Refine the header's pointing against the catalogue, else solve blind; fills result["astrometry"].

    Returns (solution or None, catalogue stars of the field, the header's WCS or None)."""
    height, width = shape
    epoch = julian_year(Time(date_obs).mjd)
    info: dict[str, Any] = {"method": None, "n_matched": None, "residual_arcsec": None, "distortion": None,
                            "header_offset_arcsec": None, "reason": None}
    result["astrometry"] = info
    usable = (sources.snr >= 5) & ~sources.saturated & ~sources.hot_pixel_like & (sources.flags <= 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        header_wcs = astrometry.pointing_wcs(header, shape)
    scale_hint = astrometry.plate_scale_hint(header)
    if scale_hint is None and header_wcs is not None:
        scale_hint = measure.pixel_scale_arcsec(header_wcs)
    result["pixel_scale_arcsec"] = None if scale_hint is None else round(scale_hint, 4)
    reasons: list[str] = []
    solution = None
    stars = np.zeros(0)

    def field_stars(wcs) -> np.ndarray:
        scale = measure.pixel_scale_arcsec(wcs)
        (ra, dec), = wcs.all_pix2world([[(width - 1) / 2.0, (height - 1) / 2.0]], 0)
        radius_deg = (math.hypot(width, height) / 2.0 * scale + MAX_POINTING_ERROR_ARCSEC) / 3600.0
        return _query_catalog(catalog, float(ra), float(dec), radius_deg, epoch)

    def refine(wcs, max_offset: float):
        band = _usable_band(str(header.get("FILTER", "")), found) or next(
            (f"mag_{b}" for b in ("R", "V", "Clear") if _usable_band(b, found)), None)
        mags = np.asarray(found[band], dtype=np.float64) if band else np.zeros(len(found))
        return astrometry.refine_wcs(sources.x, sources.y, sources.flux_adu, found["ra_deg"], found["dec_deg"], mags,
                                     wcs, shape=shape, fwhm_px=fwhm_px, max_offset_arcsec=max_offset, usable=usable)

    if header_wcs is not None:
        found = field_stars(header_wcs)
        stars = found
        try:
            solution = refine(header_wcs, MAX_POINTING_ERROR_ARCSEC)
        except astrometry.SolveFailed as exc:
            reasons.append(f"refinement: {exc}")
    else:
        reasons.append("no pointing in the header (no WCS, nor RA/DEC with PIXSCALE)")
    if solution is None:
        if not index_dir:
            reasons.append("blind solving is off (PYROS_ASTROMETRY_INDEX_DIR is not set)")
        else:
            hint = None
            if header_wcs is not None:
                (ra, dec), = header_wcs.all_pix2world([[(width - 1) / 2.0, (height - 1) / 2.0]], 0)
                hint = (float(ra), float(dec), 5.0)
            try:
                ok = usable & ((sources.flags & 0b11111100) == 0)
                blind = astrometry.blind_solve(sources.x[ok], sources.y[ok], sources.flux_adu[ok], shape=shape,
                                               index_dir=index_dir, scale_arcsec=scale_hint, hint=hint)
                found = field_stars(blind)
                stars = found
                solution = refine(blind, 30.0)
                solution.method = "astrometry.net"
            except astrometry.SolveFailed as exc:
                reasons.append(f"astrometry.net: {exc}")
    if solution is None:
        info["reason"] = "; ".join(reasons)
        return None, stars, header_wcs
    info.update(method=solution.method, n_matched=solution.n_matched, residual_arcsec=round(solution.rms_arcsec, 3),
                distortion=solution.distortion)
    result["wcs_header"] = wcs_cards(solution)
    return solution, stars, header_wcs


def wcs_cards(solution: astrometry.Solution) -> dict[str, Any]:
    """The solved WCS as FITS cards (JSON-able), with where it came from, to write into the file."""
    header = solution.wcs.to_header(relax=True)
    cards = {key: header[key] for key in header if key not in ("DATE-OBS", "MJD-OBS", "DATEREF", "MJDREF",
                                                               "TIMESYS", "COMMENT", "HISTORY", "")}
    for key in ("PC1_1", "PC1_2", "PC2_1", "PC2_2"):
        cards.pop(key, None)
    cdelt = cards.pop("CDELT1", None), cards.pop("CDELT2", None)
    if solution.wcs.wcs.has_cd():
        cd = solution.wcs.wcs.cd
    else:
        cd = solution.wcs.wcs.get_pc() * np.array(cdelt if None not in cdelt else solution.wcs.wcs.cdelt)[:, None]
    cards.update({"CD1_1": float(cd[0, 0]), "CD1_2": float(cd[0, 1]), "CD2_1": float(cd[1, 0]),
                  "CD2_2": float(cd[1, 1]), "WCSSRC": solution.method, "WCSRMS": round(solution.rms_arcsec, 4),
                  "WCSNSTAR": solution.n_matched})
    return {key: (float(value) if isinstance(value, np.floating) else value) for key, value in cards.items()}


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
        "astrometry": None,
        "wcs_header": None,
        "n_matched": None,
        "catalog": None,
        "field": None,
        "zero_point_mag": None,
        "zero_point_err_mag": None,
        "zero_point_n_stars": None,
        "limiting_mag": None,
        "limiting_mag_ab": None,
        "upper_limit_mag_ab": None,
        "aperture_radius_px": None,
        "aperture_correction": None,
        "sources": [],
        "burst": None,
        "n_candidates": None,
        "candidates": [],
        "rejected_candidates": [],
        "calibrated_with": [],
        "timings_s": {},
    }


def analyze_image(
    fits_source: bytes | bytearray | str | os.PathLike[str],
    *,
    masters: Masters | None = None,
    catalog: CatalogLike | None = DEFAULT_CATALOG,
    burst: afterglow.BurstRegion | None = None,
    max_sources: int = MAX_SOURCES_LISTED,
    min_candidate_snr: float = 7.0,
    astrometry_index_dir: str | None = None,
    moving_objects: afterglow.MovingObjectsFn | None = None,
) -> dict[str, Any]:
    """Analyse one FITS image; returns a JSON-able dict (see module docstring).

    ``catalog=None`` skips the astrometric check, the zero point and the candidate search (the
    result says so in ``warnings``). ``burst`` enables the afterglow search.
    """
    return analyze_image_products(
        fits_source, masters=masters, catalog=catalog, burst=burst, max_sources=max_sources,
        min_candidate_snr=min_candidate_snr, astrometry_index_dir=astrometry_index_dir, moving_objects=moving_objects,
    ).result


def analyze_image_with_quicklook(
    fits_source: bytes | bytearray | str | os.PathLike[str],
    *,
    masters: Masters | None = None,
    catalog: CatalogLike | None = DEFAULT_CATALOG,
    burst: afterglow.BurstRegion | None = None,
    max_px: int = 1024,
    astrometry_index_dir: str | None = None,
    moving_objects: afterglow.MovingObjectsFn | None = None,
) -> tuple[dict[str, Any], bytes | None]:
    """Like :func:`analyze_image`, plus a zscale PNG of the calibrated frame with the candidates
    circled (None when the file could not even be read)."""
    from analyzer.quicklook import render_png

    products = analyze_image_products(fits_source, masters=masters, catalog=catalog, burst=burst,
                                      astrometry_index_dir=astrometry_index_dir, moving_objects=moving_objects)
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
    catalog: CatalogLike | None = DEFAULT_CATALOG,
    burst: afterglow.BurstRegion | None = None,
    max_sources: int = MAX_SOURCES_LISTED,
    min_candidate_snr: float = 7.0,
    astrometry_index_dir: str | None = None,
    moving_objects: afterglow.MovingObjectsFn | None = None,
) -> AnalysisProducts:
    result = _empty_result()
    products = AnalysisProducts(result=result)
    timings: dict[str, float] = result["timings_s"]
    started = time.perf_counter()
    try:
        reference = None if catalog is None else as_reference_catalog(catalog)
        _run(fits_source, masters, reference, burst, max_sources, min_candidate_snr, products, timings,
             astrometry_index_dir, moving_objects)
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
    catalog: ReferenceCatalog | None,
    burst: afterglow.BurstRegion | None,
    max_sources: int,
    min_candidate_snr: float,
    products: AnalysisProducts,
    timings: dict[str, float],
    astrometry_index_dir: str | None,
    moving_objects: afterglow.MovingObjectsFn | None,
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
    height, width = raw.shape
    solution, stars, header_wcs = _solve(header, raw.shape, sources, fwhm_for_apertures, catalog, date_obs,
                                         astrometry_index_dir, result)
    t = _lap(timings, "astrometry", t)
    if solution is None:
        result["warnings"].append(f"not solved ({result['astrometry']['reason']}): measured without astrometry, "
                                  "zero point and candidates")
        result["sources"] = measure.sources_as_dicts(sources, max_sources, result["pixel_scale_arcsec"] or 1.0)
        return
    wcs = solution.wcs
    scale = measure.pixel_scale_arcsec(wcs)
    result["pixel_scale_arcsec"] = round(scale, 4)
    if fwhm_px is not None:
        result["fwhm_arcsec"] = round(fwhm_px * scale, 3)
    band = _usable_band(filter_name, stars)
    result["catalog"] = {"name": repr(catalog), "n_stars": int(len(stars)), "band": band,
                         "ab_minus_vega": AB_MINUS_VEGA.get(band[4:]) if band else None}
    (centre_ra, centre_dec), = wcs.all_pix2world([[(width - 1) / 2.0, (height - 1) / 2.0]], 0)
    # Where the frame is on the sky (solved WCS): tells which images of an event could have seen a source.
    result["field"] = {
        "ra_deg": round(float(centre_ra), 6),
        "dec_deg": round(float(centre_dec), 6),
        "half_width_deg": round(width / 2.0 * scale / 3600.0, 5),
        "half_height_deg": round(height / 2.0 * scale / 3600.0, 5),
    }
    cat_x, cat_y = wcs.all_world2pix(stars["ra_deg"], stars["dec_deg"], 0, quiet=True)
    cat_mag = np.asarray(stars[band], dtype=np.float64) if band else np.full(len(stars), np.nan)
    cat_mag_err = np.asarray(stars[band + "_err"], dtype=np.float64) if band else np.full(len(stars), np.nan)
    match_radius_px = max(2.0, 1.0 * fwhm_for_apertures)
    match = measure.match_catalog(
        sources.x, sources.y, sources.flux_adu, cat_x, cat_y,
        np.where(np.isfinite(cat_mag), cat_mag, 99.0) if band else np.arange(len(stars), dtype=np.float64),
        scale_arcsec=scale, match_radius_px=match_radius_px, search_radius_px=2.0 * match_radius_px,
    )
    sources.catalog_index = match.catalog_index
    result["n_matched"] = match.n_matched
    result["wcs_rms_arcsec"] = round(solution.rms_arcsec, 3)
    ra_src, dec_src = wcs.all_pix2world(sources.x, sources.y, 0)
    sources.ra_deg, sources.dec_deg = np.asarray(ra_src), np.asarray(dec_src)
    if header_wcs is not None:
        # How far the header's WCS (the pointing) was from the sky, at the frame centre, east and north.
        (ra_hdr, dec_hdr), = header_wcs.all_pix2world([[(width - 1) / 2.0, (height - 1) / 2.0]], 0)
        east = ((ra_hdr - centre_ra + 180.0) % 360.0 - 180.0) * math.cos(math.radians(centre_dec)) * 3600.0
        north = (dec_hdr - centre_dec) * 3600.0
        result["wcs_offset_ra_arcsec"] = round(float(east), 3)
        result["wcs_offset_dec_arcsec"] = round(float(north), 3)
        result["wcs_offset_arcsec"] = round(float(math.hypot(east, north)), 3)
        result["astrometry"]["header_offset_arcsec"] = result["wcs_offset_arcsec"]

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
    ab_minus_vega = result["catalog"]["ab_minus_vega"] or 0.0
    if result["limiting_mag"] is not None:
        result["limiting_mag_ab"] = round(result["limiting_mag"] + ab_minus_vega, 3)
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
    depth = catalog.depth_mag if catalog.depth_mag is not None else _catalog_depth(stars, band)
    candidates = afterglow.find_candidates(
        sources,
        catalog_ra_deg=np.asarray(stars["ra_deg"], dtype=np.float64),
        catalog_dec_deg=np.asarray(stars["dec_deg"], dtype=np.float64),
        catalog_mag=cat_mag,
        catalog_mag_err=cat_mag_err,
        catalog_depth_mag=depth,
        burst=burst,
        fwhm_arcsec=fwhm_for_apertures * scale,
        wcs_rms_arcsec=match.rms_arcsec if math.isfinite(match.rms_arcsec) else 1.0,
        zero_point_err_mag=zp.zero_point_err_mag or 0.0,
        pixel_scale_arcsec=scale,
        min_snr=min_candidate_snr,
    )
    if moving_objects is not None and candidates:
        try:
            known = moving_objects(burst.ra_deg, burst.dec_deg, burst.error_deg + 0.05,
                                   date_obs + timedelta(seconds=exposure_s / 2.0))
        except Exception as exc:  # an ephemeris service down must not hide the candidates
            result["warnings"].append(f"ephemeris not consulted ({type(exc).__name__}: {exc}): moving objects "
                                      "not removed")
        else:
            candidates, rejected = afterglow.remove_moving_objects(candidates, known)
            result["rejected_candidates"] = rejected
    for candidate in candidates:
        candidate["band"] = band[4:]
        candidate["mag_ab"] = round(candidate["mag"] + ab_minus_vega, 3)
    result["candidates"] = candidates
    result["n_candidates"] = len(candidates)
    if not candidates and result["limiting_mag_ab"] is not None:
        # Nothing at the alert's position down to the 5-sigma limit: that limit is the upper limit.
        result["upper_limit_mag_ab"] = result["limiting_mag_ab"]
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
