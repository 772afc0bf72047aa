"""Plate solving (pure: numpy + astropy, no Django): where a frame is on the sky.

Two ways, the fast one first:

* :func:`refine_wcs` - the pointing is roughly known (the header's WCS, or RA/DEC and the plate
  scale): the offset between the detected sources and the catalogue stars projected with that WCS
  is the peak of the histogram of their pair offsets (up to ``max_offset_arcsec``, 5' by default),
  then sources and stars are matched and a polynomial from pixels to the tangent plane is fitted by
  linear least squares, iterating the tangent point: order 1 is a TAN WCS (scale, rotation, skew),
  orders 2-3 are SIP distortion terms, kept only when they lower the residual by more than 10% with
  enough stars per coefficient. About 20 ms for a 1280x1024 frame.
* :func:`blind_solve` - no pointing, or one too wrong to refine: astrometry.net's ``solve-field`` on
  our source list (no second source extraction), with the index files of ``index_dir`` (Debian's
  ``astrometry.net`` package; ``astrometry-data-tycho2`` for real-sky fields of 22' and more, or
  indexes built from the local catalogue with ``build-astrometry-index``); its WCS is then refined
  against the catalogue as above.

Both give a :class:`Solution`: the WCS, the method, how many stars matched and the residual.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning, Sip
from scipy.spatial import cKDTree

from analyzer import measure

SOLVE_FIELD = "solve-field"
_MIN_MATCHES = 6
# A solution must match this fraction of the stars that both the frame and the catalogue should have.
MIN_MATCHED_FRACTION = 0.25


class SolveFailed(Exception):
    """The frame could not be placed on the sky; ``str()`` is the reason shown with the analysis."""


@dataclass
class Solution:
    wcs: WCS
    method: str  # "refine" or "astrometry.net"
    n_matched: int
    rms_arcsec: float
    sip_order: int  # 1: no distortion terms
    source_index: np.ndarray  # matched source indices
    catalog_index: np.ndarray  # their catalogue stars

    @property
    def distortion(self) -> str | None:
        return None if self.sip_order <= 1 else f"SIP order {self.sip_order}"


# --------------------------------------------------------------------------------------------
# Tangent plane
# --------------------------------------------------------------------------------------------


def _to_standard(ra_deg, dec_deg, ra0_deg: float, dec0_deg: float) -> np.ndarray:
    """Gnomonic projection about (ra0, dec0): standard coordinates (xi east, eta north) in degrees."""
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    ra0, dec0 = math.radians(ra0_deg), math.radians(dec0_deg)
    cos_c = math.sin(dec0) * np.sin(dec) + math.cos(dec0) * np.cos(dec) * np.cos(ra - ra0)
    xi = np.cos(dec) * np.sin(ra - ra0) / cos_c
    eta = (math.cos(dec0) * np.sin(dec) - math.sin(dec0) * np.cos(dec) * np.cos(ra - ra0)) / cos_c
    return np.degrees(np.column_stack([xi, eta]))


def _from_standard(xi_deg, eta_deg, ra0_deg: float, dec0_deg: float) -> tuple[np.ndarray, np.ndarray]:
    xi, eta = np.radians(xi_deg), np.radians(eta_deg)
    ra0, dec0 = math.radians(ra0_deg), math.radians(dec0_deg)
    denom = math.cos(dec0) - eta * math.sin(dec0)
    ra = ra0 + np.arctan2(xi, denom)
    dec = np.arctan2(math.sin(dec0) + eta * math.cos(dec0), np.hypot(xi, denom))
    return np.degrees(ra) % 360.0, np.degrees(dec)


def _terms(order: int) -> list[tuple[int, int]]:
    return [(p, q) for total in range(order + 1) for p in range(total + 1) for q in range(total + 1) if p + q == total]


def _design(u: np.ndarray, v: np.ndarray, terms: list[tuple[int, int]]) -> np.ndarray:
    return np.column_stack([u**p * v**q for p, q in terms])


@dataclass
class _Fit:
    ra0: float
    dec0: float
    terms: list[tuple[int, int]]
    coeffs: np.ndarray  # (n_terms, 2): xi, eta in degrees as polynomials of (u, v) pixels from CRPIX
    crpix0: tuple[float, float]  # 0-based

    def standard(self, x, y) -> np.ndarray:
        u, v = np.asarray(x) - self.crpix0[0], np.asarray(y) - self.crpix0[1]
        return _design(u, v, self.terms) @ self.coeffs

    def sky(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        s = self.standard(x, y)
        return _from_standard(s[:, 0], s[:, 1], self.ra0, self.dec0)


def _fit_polynomial(x, y, ra, dec, ra0, dec0, crpix0, order: int, weights=None) -> _Fit:
    """Least squares pixels -> tangent plane, re-centring the tangent point until it is the CRPIX's sky."""
    terms = _terms(order)
    u, v = x - crpix0[0], y - crpix0[1]
    design = _design(u, v, terms)
    w = np.ones(len(x)) if weights is None else weights
    coeffs = np.zeros((len(terms), 2))
    for _ in range(3):
        target = _to_standard(ra, dec, ra0, dec0)
        coeffs, *_ = np.linalg.lstsq(design * w[:, None], target * w[:, None], rcond=None)
        # The constant term is where CRPIX lands: move the tangent point there and fit again.
        ra_c, dec_c = _from_standard(np.array([coeffs[0, 0]]), np.array([coeffs[0, 1]]), ra0, dec0)
        ra0, dec0 = float(ra_c[0]), float(dec_c[0])
        if abs(coeffs[0, 0]) < 1e-9 and abs(coeffs[0, 1]) < 1e-9:
            break
    target = _to_standard(ra, dec, ra0, dec0)
    coeffs, *_ = np.linalg.lstsq(design * w[:, None], target * w[:, None], rcond=None)
    return _Fit(ra0, dec0, terms, coeffs, crpix0)


def _residual_arcsec(fit: _Fit, x, y, ra, dec) -> np.ndarray:
    predicted = fit.standard(x, y)
    target = _to_standard(ra, dec, fit.ra0, fit.dec0)
    return np.hypot(*(predicted - target).T) * 3600.0


def _fit_to_wcs(fit: _Fit, shape: tuple[int, int]) -> WCS:
    """A TAN (or TAN-SIP, with the inverse AP/BP fitted on a grid so viewers need not iterate) WCS."""
    terms = fit.terms
    lin = {t: i for i, t in enumerate(terms)}
    cd = np.array([[fit.coeffs[lin[(1, 0)], 0], fit.coeffs[lin[(0, 1)], 0]],
                   [fit.coeffs[lin[(1, 0)], 1], fit.coeffs[lin[(0, 1)], 1]]])
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.cunit = ["deg", "deg"]
    wcs.wcs.crpix = [fit.crpix0[0] + 1.0, fit.crpix0[1] + 1.0]
    wcs.wcs.crval = [fit.ra0, fit.dec0]
    wcs.wcs.cd = cd
    wcs.wcs.radesys = "ICRS"
    wcs.wcs.equinox = 2000.0
    order = max(p + q for p, q in terms)
    if order >= 2:
        cd_inv = np.linalg.inv(cd)
        a = np.zeros((order + 1, order + 1))
        b = np.zeros((order + 1, order + 1))
        for (p, q), i in lin.items():
            if p + q >= 2:
                a[p, q], b[p, q] = cd_inv @ fit.coeffs[i]
        height, width = shape
        gy, gx = np.mgrid[0:height:24j, 0:width:24j]
        u, v = gx.ravel() - fit.crpix0[0], gy.ravel() - fit.crpix0[1]
        f = sum(a[p, q] * u**p * v**q for p in range(order + 1) for q in range(order + 1))
        g = sum(b[p, q] * u**p * v**q for p in range(order + 1) for q in range(order + 1))
        up, vp = u + f, v + g  # intermediate (distortion-free) pixel coordinates
        inv_order = order + 1
        inv_terms = [t for t in _terms(inv_order) if t[0] + t[1] >= 1]
        design = _design(up, vp, inv_terms)
        sol, *_ = np.linalg.lstsq(design, np.column_stack([u - up, v - vp]), rcond=None)
        ap = np.zeros((inv_order + 1, inv_order + 1))
        bp = np.zeros((inv_order + 1, inv_order + 1))
        for (p, q), row in zip(inv_terms, sol, strict=True):
            ap[p, q], bp[p, q] = row
        wcs.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
        wcs.sip = Sip(a, b, ap, bp, wcs.wcs.crpix)
    wcs.pixel_shape = (shape[1], shape[0])
    return wcs


# --------------------------------------------------------------------------------------------
# Refinement
# --------------------------------------------------------------------------------------------


def _one_to_one(src_xy: np.ndarray, cat_xy: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-neighbour pairs within ``radius``, each catalogue star claimed by its closest source."""
    if len(src_xy) == 0 or len(cat_xy) == 0:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    dist, j = cKDTree(cat_xy).query(src_xy, k=1, distance_upper_bound=radius)
    ok = np.flatnonzero(np.isfinite(dist))
    order = ok[np.argsort(dist[ok])]
    _, first = np.unique(j[order], return_index=True)
    keep = np.sort(order[first])
    return keep, j[keep]


def refine_wcs(
    src_x: np.ndarray,
    src_y: np.ndarray,
    src_flux: np.ndarray,
    cat_ra: np.ndarray,
    cat_dec: np.ndarray,
    cat_mag: np.ndarray,
    initial: WCS,
    *,
    shape: tuple[int, int],
    fwhm_px: float,
    max_offset_arcsec: float = 300.0,
    max_sip_order: int = 3,
    usable: np.ndarray | None = None,
) -> Solution:
    """Refine ``initial`` (a WCS that is off by up to ``max_offset_arcsec`` and a fraction of a degree
    in rotation) against the catalogue. Raises SolveFailed with the reason."""
    height, width = shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scale = measure.pixel_scale_arcsec(initial)
        cat_x, cat_y = initial.all_world2pix(cat_ra, cat_dec, 0, quiet=True)
    margin = max_offset_arcsec / scale
    inside = (cat_x > -margin) & (cat_x < width + margin) & (cat_y > -margin) & (cat_y < height + margin)
    inside &= np.isfinite(cat_x) & np.isfinite(cat_y)
    cat_idx = np.flatnonzero(inside)
    if len(cat_idx) < _MIN_MATCHES:
        raise SolveFailed(f"only {len(cat_idx)} catalogue stars around the header's pointing")
    good = np.ones(len(src_x), dtype=bool) if usable is None else usable
    src_idx = np.flatnonzero(good)
    if len(src_idx) < _MIN_MATCHES:
        raise SolveFailed(f"only {len(src_idx)} usable sources in the frame")
    mags = np.where(np.isfinite(cat_mag[cat_idx]), cat_mag[cat_idx], 99.0)
    match_radius_px = max(2.0, 1.0 * fwhm_px)
    coarse = measure.match_catalog(
        src_x[src_idx], src_y[src_idx], src_flux[src_idx], cat_x[cat_idx], cat_y[cat_idx], mags,
        scale_arcsec=scale, match_radius_px=max(match_radius_px, 3.0), search_radius_px=margin,
    )
    if coarse.n_matched < _MIN_MATCHES:
        raise SolveFailed(f"only {coarse.n_matched} sources matched the catalogue within {max_offset_arcsec:.0f}\" "
                          "of the header's pointing")
    m = coarse.catalog_index >= 0
    s_sel, c_sel = src_idx[m], cat_idx[coarse.catalog_index[m]]
    crpix0 = ((width - 1) / 2.0, (height - 1) / 2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (ra0, dec0), = initial.all_pix2world([[crpix0[0] - coarse.offset_x_px, crpix0[1] - coarse.offset_y_px]], 0)
    fit = _fit_polynomial(src_x[s_sel], src_y[s_sel], cat_ra[c_sel], cat_dec[c_sel], float(ra0), float(dec0), crpix0, 1)
    # Re-match everything with the fitted WCS, tighter each time; clip outliers (blends, high proper motion).
    cat_std_all = None
    order = 1
    for radius_arcsec in (4.0 * match_radius_px * scale, 2.0 * match_radius_px * scale, match_radius_px * scale):
        cat_std_all = _to_standard(cat_ra[cat_idx], cat_dec[cat_idx], fit.ra0, fit.dec0) * 3600.0
        src_std = fit.standard(src_x[src_idx], src_y[src_idx]) * 3600.0
        keep, j = _one_to_one(src_std, cat_std_all, radius_arcsec)
        s_sel, c_sel = src_idx[keep], cat_idx[j]
        if len(s_sel) < _MIN_MATCHES:
            raise SolveFailed(f"only {len(s_sel)} sources matched the catalogue after the first fit")
        fit, order = _best_order(src_x[s_sel], src_y[s_sel], cat_ra[c_sel], cat_dec[c_sel], fit, crpix0, max_sip_order)
    residual = _residual_arcsec(fit, src_x[s_sel], src_y[s_sel], cat_ra[c_sel], cat_dec[c_sel])
    clip = residual <= max(3.0 * 1.4826 * np.median(residual), 0.05)
    s_sel, c_sel = s_sel[clip], c_sel[clip]
    fit, order = _best_order(src_x[s_sel], src_y[s_sel], cat_ra[c_sel], cat_dec[c_sel], fit, crpix0, max_sip_order)
    residual = _residual_arcsec(fit, src_x[s_sel], src_y[s_sel], cat_ra[c_sel], cat_dec[c_sel])
    rms = float(np.sqrt(np.mean(residual**2)))
    # A chance alignment matches a handful of stars; the right sky matches most of what both see.
    wcs = _fit_to_wcs(fit, shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fx, fy = wcs.all_world2pix(cat_ra[cat_idx], cat_dec[cat_idx], 0, quiet=True)
    n_cat_inside = int(((fx >= 0) & (fx < width) & (fy >= 0) & (fy < height)).sum())
    expected = min(n_cat_inside, len(src_idx))
    if len(s_sel) < max(_MIN_MATCHES, MIN_MATCHED_FRACTION * expected):
        raise SolveFailed(f"only {len(s_sel)} of {expected} stars matched: no reliable solution within "
                          f"{max_offset_arcsec:.0f}\" of the pointing")
    return Solution(wcs=wcs, method="refine", n_matched=int(len(s_sel)), rms_arcsec=rms,
                    sip_order=order, source_index=s_sel, catalog_index=c_sel)


def _best_order(x, y, ra, dec, previous: _Fit, crpix0, max_order: int) -> tuple[_Fit, int]:
    """The polynomial order with the lowest rms, a higher order kept only when it lowers the rms by
    10% (order 2 alone does not describe a radial, odd, distortion: order 3 is always tried); each
    coefficient needs >= 8 stars (a distortion fitted on few stars bends the field where it has none)."""
    best = _fit_polynomial(x, y, ra, dec, previous.ra0, previous.dec0, crpix0, 1)
    best_rms = float(np.sqrt(np.mean(_residual_arcsec(best, x, y, ra, dec) ** 2)))
    best_order = 1
    for order in range(2, max_order + 1):
        if len(x) < 8 * len(_terms(order)):
            break
        candidate = _fit_polynomial(x, y, ra, dec, best.ra0, best.dec0, crpix0, order)
        rms = float(np.sqrt(np.mean(_residual_arcsec(candidate, x, y, ra, dec) ** 2)))
        if rms < 0.9 * best_rms:
            best, best_rms, best_order = candidate, rms, order
    return best, best_order


# --------------------------------------------------------------------------------------------
# Blind solving with astrometry.net
# --------------------------------------------------------------------------------------------


def solve_field_available() -> bool:
    return shutil.which(SOLVE_FIELD) is not None


def blind_solve(
    src_x: np.ndarray,
    src_y: np.ndarray,
    src_flux: np.ndarray,
    *,
    shape: tuple[int, int],
    index_dir: str | Path,
    scale_arcsec: float | None = None,
    hint: tuple[float, float, float] | None = None,
    timeout_s: float = 60.0,
    max_sources: int = 150,
) -> WCS:
    """astrometry.net's solve-field on a source list (0-based pixel positions, brightest kept).

    ``scale_arcsec`` (the plate scale, +-10%) and ``hint`` (ra, dec, radius in degrees) make it much
    faster; without them it searches every index at every scale. Raises SolveFailed with the reason."""
    if not solve_field_available():
        raise SolveFailed("astrometry.net's solve-field is not installed (Debian: apt-get install astrometry.net)")
    index_dir = Path(index_dir)
    if not index_dir.is_dir() or not any(index_dir.glob("*.fits")):
        raise SolveFailed(f"no astrometry.net index files in {index_dir} (PYROS_ASTROMETRY_INDEX_DIR)")
    if len(src_x) < 5:
        raise SolveFailed(f"only {len(src_x)} sources: too few to solve blind")
    height, width = shape
    order = np.argsort(-np.asarray(src_flux))[:max_sources]
    with tempfile.TemporaryDirectory(prefix="pyros-solve-") as tmp:
        tmp_path = Path(tmp)
        columns = [fits.Column(name="X", format="D", array=np.asarray(src_x)[order] + 1.0),
                   fits.Column(name="Y", format="D", array=np.asarray(src_y)[order] + 1.0),
                   fits.Column(name="FLUX", format="D", array=np.asarray(src_flux)[order])]
        fits.BinTableHDU.from_columns(columns).writeto(tmp_path / "sources.xyls")
        (tmp_path / "astrometry.cfg").write_text(f"inparallel\nadd_path {index_dir.resolve()}\nautoindex\n")
        command = [SOLVE_FIELD, str(tmp_path / "sources.xyls"), "--config", str(tmp_path / "astrometry.cfg"),
                   "--width", str(width), "--height", str(height), "--x-column", "X", "--y-column", "Y",
                   "--sort-column", "FLUX", "--no-plots", "--overwrite", "--dir", str(tmp_path),
                   "--cpulimit", str(int(timeout_s)), "--crpix-center", "--tweak-order", "2",
                   "--new-fits", "none", "--index-xyls", "none", "--rdls", "none", "--corr", "none",
                   "--match", "none", "--solved", str(tmp_path / "solved"), "--wcs", str(tmp_path / "solution.wcs")]
        if scale_arcsec:
            command += ["--scale-units", "arcsecperpix", "--scale-low", f"{0.9 * scale_arcsec:.4f}",
                        "--scale-high", f"{1.1 * scale_arcsec:.4f}"]
        if hint is not None:
            command += ["--ra", f"{hint[0]:.6f}", "--dec", f"{hint[1]:.6f}", "--radius", f"{hint[2]:.3f}"]
        try:
            completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s + 30.0, check=False)
        except subprocess.TimeoutExpired as exc:
            raise SolveFailed(f"solve-field did not finish within {timeout_s + 30.0:.0f} s") from exc
        wcs_file = tmp_path / "solution.wcs"
        if not wcs_file.is_file():
            tail = (completed.stderr or completed.stdout or "").strip().splitlines()[-1:] or [""]
            raise SolveFailed(f"astrometry.net found no solution ({tail[0][:160]})".replace(" ()", ""))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            header = fits.getheader(wcs_file)
            wcs = WCS(header, naxis=2)
    wcs.pixel_shape = (width, height)
    return wcs


# --------------------------------------------------------------------------------------------
# The pointing a header gives
# --------------------------------------------------------------------------------------------


def _float(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def pointing_wcs(header: fits.Header, shape: tuple[int, int]) -> WCS | None:
    """The header's celestial WCS, else a north-up TAN WCS from RA/DEC (degrees) and PIXSCALE
    (arcsec/px); None when the header says neither where nor how big."""
    try:
        return measure.image_wcs(header)
    except Exception:  # AnalysisError: no or broken WCS; fall back on the pointing
        pass
    ra, dec = _float(header.get("RA")), _float(header.get("DEC"))
    scale = _float(header.get("PIXSCALE", header.get("SECPIX")))
    if ra is None or dec is None or scale is None or scale <= 0:
        return None
    height, width = shape
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crpix = [width / 2.0 + 0.5, height / 2.0 + 0.5]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.cd = np.array([[-scale / 3600.0, 0.0], [0.0, scale / 3600.0]])
    wcs.pixel_shape = (width, height)
    return wcs


def plate_scale_hint(header: fits.Header) -> float | None:
    scale = _float(header.get("PIXSCALE", header.get("SECPIX")))
    return scale if scale and scale > 0 else None
