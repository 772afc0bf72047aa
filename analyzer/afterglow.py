"""Afterglow candidates in one image, followed across an event's images, and their light curve.

Pure functions on numpy arrays and plain dicts (no Django):

* :func:`find_candidates` - sources inside the burst's error region that the reference catalogue
  does not have (down to its depth) or has much fainter, with position error, magnitude and a score;
* :func:`match_candidates_across_images` - groups one event's candidates by position into tracks,
  each with its light curve; tracks seen in several images and fading rank first;
* :func:`light_curve` - magnitude vs time since the burst and the power-law decay index alpha
  (F ~ t^-alpha, i.e. m = m0 + 2.5 alpha log10 t), the usual description of a GRB afterglow.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from analyzer.measure import SourceTable

# sep flags that make a position or a flux untrustworthy: object truncated at the frame edge,
# deblending overflow, aperture truncated, masked or with a non-positive sum.
_BAD_FLAGS = 2 | 4 | 16 | 32 | 64 | 128
_KIND_WEIGHT = {"new": 1.0, "brightened": 0.7}
# (ra_deg, dec_deg, radius_deg, when_utc) -> known solar-system objects there then:
# [{"name", "ra_deg", "dec_deg", "mag" (or None)}] (an ephemeris backend, e.g. IMCCE SkyBoT).
MovingObjectsFn = Callable[[float, float, float, datetime], list[dict[str, Any]]]
# A candidate this close to a predicted asteroid position is that asteroid (ephemerides of numbered
# asteroids are good to a few arcseconds; fainter, poorly-known ones to ~10").
MOVING_OBJECT_RADIUS_ARCSEC = 10.0


@dataclass(frozen=True)
class BurstRegion:
    """A burst's localisation: centre, error radius (the alert's error circle) and trigger time."""

    ra_deg: float
    dec_deg: float
    error_deg: float
    t0_utc: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ra_deg": self.ra_deg,
            "dec_deg": self.dec_deg,
            "error_deg": self.error_deg,
            "t0_utc": None if self.t0_utc is None else self.t0_utc.isoformat(),
        }


def angular_separation_deg(ra1_deg, dec1_deg, ra2_deg, dec2_deg) -> np.ndarray:
    """Great-circle distance (haversine, accurate at arcsecond scales)."""
    ra1, dec1, ra2, dec2 = (np.radians(np.asarray(v, dtype=np.float64)) for v in (ra1_deg, dec1_deg, ra2_deg, dec2_deg))
    h = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0))))


def _tangent_xy_arcsec(ra_deg, dec_deg, ra0_deg: float, dec0_deg: float) -> np.ndarray:
    """Local flat coordinates (arcsec) around (ra0, dec0), good for arcminute-scale matching."""
    dra = (np.asarray(ra_deg, dtype=np.float64) - ra0_deg + 180.0) % 360.0 - 180.0
    x = dra * math.cos(math.radians(dec0_deg)) * 3600.0
    y = (np.asarray(dec_deg, dtype=np.float64) - dec0_deg) * 3600.0
    return np.column_stack([x, y])


def find_candidates(
    sources: SourceTable,
    *,
    catalog_ra_deg: np.ndarray,
    catalog_dec_deg: np.ndarray,
    catalog_mag: np.ndarray | None,
    catalog_depth_mag: float | None,
    burst: BurstRegion,
    fwhm_arcsec: float,
    wcs_rms_arcsec: float,
    zero_point_err_mag: float,
    pixel_scale_arcsec: float,
    min_snr: float = 7.0,
    brighter_by_mag: float = 0.75,
    catalog_mag_err: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """Afterglow candidates among ``sources`` (whose ra/dec/mag are already astrometrically and
    photometrically calibrated), ranked by score (best first).

    A source qualifies when it is inside the error region, well measured (SNR >= ``min_snr``: 7 keeps
    noise peaks out, as a 1280x1024 frame holds ~1e5 independent apertures and the windowed centroid
    climbs onto each noise peak; not
    saturated, not cut by the frame edge), point-like (not a hot pixel or a cosmic ray, which are
    sharper than the seeing), and either
    * *new*: no catalogue star within the match radius, and brighter than the catalogue's depth in
      this band (a fainter unmatched source may simply be a star the catalogue does not list), or
    * *brightened*: brighter than all catalogue stars within the match radius together by more than
      ``brighter_by_mag`` and by more than 5 sigma in flux, sigma combining the measurement's error
      and the catalogue's (``catalog_mag_err``, when given).
    """
    n = len(sources)
    if n == 0 or len(sources.ra_deg) != n:
        return []
    sep_deg = angular_separation_deg(burst.ra_deg, burst.dec_deg, sources.ra_deg, sources.dec_deg)
    inside = sep_deg <= burst.error_deg
    if not inside.any():
        return []
    match_radius_arcsec = max(2.0, 1.0 * fwhm_arcsec, 3.0 * wcs_rms_arcsec)
    ra0, dec0 = float(np.median(sources.ra_deg)), float(np.median(sources.dec_deg))
    src_xy = _tangent_xy_arcsec(sources.ra_deg, sources.dec_deg, ra0, dec0)
    cat_xy = _tangent_xy_arcsec(catalog_ra_deg, catalog_dec_deg, ra0, dec0)
    cat_tree = cKDTree(cat_xy) if len(cat_xy) else None
    cat_flux = (
        10 ** (-0.4 * np.nan_to_num(np.asarray(catalog_mag, dtype=np.float64), nan=99.0))
        if catalog_mag is not None
        else None
    )

    # Point-like: a star's second moments are set by the seeing; hot pixels and cosmic rays are
    # much sharper. Measured on the stars of this frame, so it follows the night's seeing.
    stellar = (sources.snr > 20) & ~sources.saturated & ~sources.hot_pixel_like & ((sources.flags & _BAD_FLAGS) == 0)
    median_a = float(np.median(sources.a_px[stellar])) if stellar.sum() >= 5 else None
    saturated_xy = src_xy[sources.saturated]
    sat_tree = cKDTree(saturated_xy) if len(saturated_xy) else None

    candidates: list[dict[str, Any]] = []
    for i in np.flatnonzero(inside):
        if sources.snr[i] < min_snr or sources.saturated[i] or sources.hot_pixel_like[i] or (sources.flags[i] & _BAD_FLAGS):
            continue
        if not np.isfinite(sources.mag[i]):
            continue
        if median_a is not None and not (0.6 * median_a <= sources.a_px[i] <= 2.5 * median_a):
            continue
        # Deblended pieces of a saturated star's wings and spikes are not sky sources.
        if sat_tree is not None and sat_tree.query_ball_point(src_xy[i], 6.0 * fwhm_arcsec):
            continue
        kind = None
        delta_mag = None
        catalog_mag_here = None
        neighbours = cat_tree.query_ball_point(src_xy[i], match_radius_arcsec) if cat_tree is not None else []
        if not neighbours:
            if catalog_depth_mag is not None and sources.mag[i] > catalog_depth_mag:
                continue
            # A faint source close to a much brighter catalogue star is a deblending artefact more
            # often than an afterglow; require it to carry > 5% of that star's flux.
            if cat_tree is not None and cat_flux is not None:
                around = cat_tree.query_ball_point(src_xy[i], 3.0 * fwhm_arcsec)
                if around and 10 ** (-0.4 * sources.mag[i]) < 0.05 * cat_flux[around].max():
                    continue
            kind = "new"
        elif cat_flux is not None:
            expected_flux = float(cat_flux[neighbours].sum())
            catalog_mag_here = -2.5 * math.log10(expected_flux) if expected_flux > 0 else math.inf
            delta_mag = catalog_mag_here - float(sources.mag[i])
            # Significance in flux, not in magnitudes: near the detection limit a +3 sigma noise
            # excess on a faint star is already ~1 mag and would look like 5 "magnitude sigmas".
            measured_flux = 10 ** (-0.4 * float(sources.mag[i]))
            flux_err = measured_flux * max(float(sources.mag_err[i]), 1e-3) / 1.0857
            if catalog_mag_err is not None:
                cat_err = np.nan_to_num(np.asarray(catalog_mag_err, dtype=np.float64)[neighbours], nan=0.0)
                cat_flux_err = float(np.sqrt(np.sum((cat_flux[neighbours] * cat_err / 1.0857) ** 2)))
                flux_err = math.hypot(flux_err, cat_flux_err)
            excess_sigma = (measured_flux - expected_flux) / flux_err
            if delta_mag > brighter_by_mag and excess_sigma > 5.0:
                kind = "brightened"
        if kind is None:
            continue
        pos_err_arcsec = float(math.hypot(sources.pos_err_px[i] * pixel_scale_arcsec, wcs_rms_arcsec))
        # Error circles of alerts are 90% containment radii: sigma = r90 / 2.146 for a 2-D Gaussian.
        sigma_deg = max(burst.error_deg / 2.146, 1e-9)
        position_weight = math.exp(-0.5 * (float(sep_deg[i]) / sigma_deg) ** 2)
        snr_weight = 1.0 - math.exp(-float(sources.snr[i]) / 10.0)
        score = _KIND_WEIGHT[kind] * snr_weight * (0.3 + 0.7 * position_weight)
        if kind == "new":
            reason = "not in the reference catalogue" + (
                f" (catalogue complete to {catalog_depth_mag:.1f} mag)" if catalog_depth_mag is not None else ""
            )
        else:
            reason = f"{delta_mag:.2f} mag brighter than the catalogue ({catalog_mag_here:.2f})"
        candidates.append(
            {
                "ra_deg": round(float(sources.ra_deg[i]), 7),
                "dec_deg": round(float(sources.dec_deg[i]), 7),
                "x": round(float(sources.x[i]), 2),
                "y": round(float(sources.y[i]), 2),
                "error_arcsec": round(pos_err_arcsec, 3),
                "mag": round(float(sources.mag[i]), 3),
                "mag_err": round(float(math.hypot(sources.mag_err[i], zero_point_err_mag)), 3),
                "snr": round(float(sources.snr[i]), 1),
                "offset_from_burst_arcsec": round(float(sep_deg[i]) * 3600.0, 2),
                "kind": kind,
                "catalog_mag": None if catalog_mag_here is None else round(catalog_mag_here, 3),
                "score": round(score, 4),
                "reason": reason,
            }
        )
    candidates.sort(key=lambda c: -c["score"])
    for rank, candidate in enumerate(candidates, start=1):
        candidate["rank"] = rank
    return candidates


def remove_moving_objects(candidates: list[dict[str, Any]], known: Iterable[Mapping[str, Any]], *,
                          radius_arcsec: float = MOVING_OBJECT_RADIUS_ARCSEC) -> tuple[list[dict], list[dict]]:
    """(kept, rejected): a candidate within ``radius_arcsec`` of a known moving object is that object."""
    known = [k for k in known if k.get("ra_deg") is not None and k.get("dec_deg") is not None]
    if not known:
        return candidates, []
    kept, rejected = [], []
    for candidate in candidates:
        separations = [float(angular_separation_deg(candidate["ra_deg"], candidate["dec_deg"], k["ra_deg"],
                                                    k["dec_deg"])) * 3600.0 for k in known]
        nearest = int(np.argmin(separations))
        if separations[nearest] <= radius_arcsec:
            rejected.append({**candidate, "reason": f"known moving object {known[nearest].get('name', '?')} "
                                                   f"{separations[nearest]:.1f}\" away"})
        else:
            kept.append(candidate)
    for rank, candidate in enumerate(kept, start=1):
        candidate["rank"] = rank
    return kept, rejected


# --------------------------------------------------------------------------------------------
# Light curve
# --------------------------------------------------------------------------------------------


@dataclass
class LightCurve:
    t_s: np.ndarray  # time since the burst, seconds
    mag: np.ndarray
    mag_err: np.ndarray
    decay_index: float | None  # alpha in F ~ t^-alpha; > 0 fades
    decay_index_err: float | None
    mag_at_1000s: float | None  # the fitted magnitude 1000 s after the burst
    fit_chi2_dof: float | None = None
    times_utc: list[str] = field(default_factory=list)

    @property
    def fading(self) -> bool:
        """Fading significantly (alpha > 2 sigma above 0)."""
        return (
            self.decay_index is not None
            and self.decay_index_err is not None
            and self.decay_index > 2.0 * self.decay_index_err
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "t_s": [round(float(t), 2) for t in self.t_s],
            "times_utc": list(self.times_utc),
            "mag": [round(float(m), 3) for m in self.mag],
            "mag_err": [round(float(e), 3) for e in self.mag_err],
            "decay_index": None if self.decay_index is None else round(self.decay_index, 3),
            "decay_index_err": None if self.decay_index_err is None else round(self.decay_index_err, 3),
            "mag_at_1000s": None if self.mag_at_1000s is None else round(self.mag_at_1000s, 3),
            "fit_chi2_dof": None if self.fit_chi2_dof is None else round(self.fit_chi2_dof, 3),
            "fading": self.fading,
        }


def _as_utc(value: datetime | str) -> datetime:
    when = datetime.fromisoformat(value.rstrip("Z")) if isinstance(value, str) else value
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def light_curve(measurements: Iterable[tuple[datetime | str, float, float]], t0_utc: datetime | str) -> LightCurve:
    """Magnitudes vs time since ``t0_utc`` and a weighted least-squares power-law fit.

    ``measurements`` are (time, mag, mag_err), time being the middle of each exposure. Points before
    the burst are dropped. The fit needs >= 2 points spanning more than 10% in log time; its error is
    scaled by sqrt(chi2/dof) when the scatter exceeds the error bars (with >= 3 points).
    """
    t0 = _as_utc(t0_utc)
    rows = sorted(((_as_utc(t), float(m), float(e)) for t, m, e in measurements), key=lambda r: r[0])
    rows = [r for r in rows if (r[0] - t0).total_seconds() > 0 and math.isfinite(r[1])]
    t_s = np.array([(r[0] - t0).total_seconds() for r in rows], dtype=np.float64)
    mag = np.array([r[1] for r in rows], dtype=np.float64)
    mag_err = np.array([max(r[2], 1e-3) if math.isfinite(r[2]) else 0.1 for r in rows], dtype=np.float64)
    times = [r[0].isoformat() for r in rows]
    if len(t_s) < 2 or np.ptp(np.log10(t_s)) < 0.04:
        return LightCurve(t_s, mag, mag_err, None, None, None, None, times)
    # m = a + b log10(t/1000 s), b = 2.5 alpha; centring on 1000 s keeps a and b nearly independent.
    u = np.log10(t_s / 1000.0)
    w = 1.0 / mag_err**2
    design = np.column_stack([np.ones_like(u), u])
    normal = design.T @ (design * w[:, None])
    coeffs = np.linalg.solve(normal, design.T @ (w * mag))
    cov = np.linalg.inv(normal)
    residual = mag - design @ coeffs
    dof = len(t_s) - 2
    chi2_dof = float(np.sum(w * residual**2) / dof) if dof > 0 else None
    if chi2_dof is not None and chi2_dof > 1.0:
        cov = cov * chi2_dof
    alpha = float(coeffs[1] / 2.5)
    alpha_err = float(math.sqrt(cov[1, 1]) / 2.5)
    return LightCurve(t_s, mag, mag_err, alpha, alpha_err, float(coeffs[0]), chi2_dof, times)


# --------------------------------------------------------------------------------------------
# Following candidates across the images of one event
# --------------------------------------------------------------------------------------------


def match_candidates_across_images(
    images: Sequence[Mapping[str, Any]],
    *,
    t0_utc: datetime | str | None = None,
    match_radius_arcsec: float = 2.0,
) -> list[dict[str, Any]]:
    """Group candidates of an event's images into tracks (one per sky position), ranked.

    Each element of ``images`` is an analysis result (or any mapping) with ``candidates`` and a time
    (``mid_time_utc`` or ``time_utc``), optionally an ``image_id``. Candidates closer than
    ``match_radius_arcsec`` (or 3x their combined position error, if larger) to a track's mean
    position join it. A track gets a light curve when ``t0_utc`` is known; its score is the best
    single-image score, raised for repeated detections and for a significant fading, lowered when
    the source brightens (afterglows fade after the first minutes; an asteroid moves and does not repeat).
    Images whose ``field`` covers a track but did not detect it add an upper limit (their
    ``limiting_mag``) to the track's ``upper_limits``.
    """
    ordered = sorted(
        (img for img in images if img.get("candidates")),
        key=lambda img: _as_utc(img.get("mid_time_utc") or img["time_utc"]),
    )
    tracks: list[dict[str, Any]] = []
    for image in ordered:
        when = _as_utc(image.get("mid_time_utc") or image["time_utc"])
        claimed: set[int] = set()
        for cand in sorted(image["candidates"], key=lambda c: -c.get("snr", 0.0)):
            best, best_d = None, math.inf
            for k, track in enumerate(tracks):
                if k in claimed:
                    continue
                d_arcsec = float(
                    angular_separation_deg(track["ra_deg"], track["dec_deg"], cand["ra_deg"], cand["dec_deg"])
                ) * 3600.0
                radius = max(match_radius_arcsec, 3.0 * math.hypot(track["error_arcsec"], cand.get("error_arcsec", 0.0)))
                if d_arcsec <= radius and d_arcsec < best_d:
                    best, best_d = k, d_arcsec
            detection = {
                "image_id": image.get("image_id"),
                "time_utc": when.isoformat(),
                "ra_deg": cand["ra_deg"],
                "dec_deg": cand["dec_deg"],
                "error_arcsec": cand.get("error_arcsec", 1.0),
                "mag": cand["mag"],
                "mag_err": cand["mag_err"],
                "snr": cand.get("snr"),
                "score": cand.get("score", 0.0),
                "kind": cand.get("kind"),
            }
            if best is None:
                tracks.append({"detections": [detection]})
                best = len(tracks) - 1
            else:
                tracks[best]["detections"].append(detection)
            claimed.add(best)
            _update_track_position(tracks[best])
    _add_upper_limits(tracks, images)
    for track in tracks:
        detections = track["detections"]
        track["n_detections"] = len(detections)
        track["best_snr"] = max((d["snr"] or 0.0) for d in detections)
        track["first_seen_utc"] = detections[0]["time_utc"]
        track["last_seen_utc"] = detections[-1]["time_utc"]
        score = max(d["score"] for d in detections)
        score *= 1.0 + 0.5 * min(len(detections) - 1, 4) / 4.0
        track["light_curve"] = None
        if t0_utc is not None:
            curve = light_curve([(d["time_utc"], d["mag"], d["mag_err"]) for d in detections], t0_utc)
            track["light_curve"] = curve.to_dict()
            if curve.fading:
                score *= 1.5
            elif curve.decay_index is not None and curve.decay_index_err is not None and (
                curve.decay_index < -2.0 * curve.decay_index_err
            ):
                score *= 0.5
        track["score"] = round(score, 4)
    tracks.sort(key=lambda t: (-t["score"], -t["n_detections"]))
    for rank, track in enumerate(tracks, start=1):
        track["rank"] = rank
    return tracks


def _update_track_position(track: dict[str, Any]) -> None:
    detections = track["detections"]
    w = np.array([1.0 / max(d["error_arcsec"], 0.01) ** 2 for d in detections])
    ra0 = detections[0]["ra_deg"]
    dra = np.array([((d["ra_deg"] - ra0 + 180.0) % 360.0) - 180.0 for d in detections])
    track["ra_deg"] = round(float((ra0 + np.sum(w * dra) / np.sum(w)) % 360.0), 7)
    track["dec_deg"] = round(float(np.sum(w * np.array([d["dec_deg"] for d in detections])) / np.sum(w)), 7)
    track["error_arcsec"] = round(float(1.0 / math.sqrt(np.sum(w))), 3)


def _add_upper_limits(tracks: list[dict[str, Any]], images: Sequence[Mapping[str, Any]]) -> None:
    """For each track, the limiting magnitudes of the images that covered it without detecting it."""
    for track in tracks:
        track["upper_limits"] = []
        seen_in = {d["time_utc"] for d in track["detections"]}
        for image in images:
            field_info = image.get("field")
            limit = image.get("limiting_mag")
            time_value = image.get("mid_time_utc") or image.get("time_utc")
            if not field_info or limit is None or time_value is None:
                continue
            when = _as_utc(time_value).isoformat()
            if when in seen_in:
                continue
            # Inside the frame, with a 5% margin (the edge rows are where detection is unreliable).
            xy = _tangent_xy_arcsec(track["ra_deg"], track["dec_deg"], field_info["ra_deg"], field_info["dec_deg"])[0]
            if abs(xy[0]) <= 0.95 * field_info["half_width_deg"] * 3600.0 and abs(xy[1]) <= (
                0.95 * field_info["half_height_deg"] * 3600.0
            ):
                track["upper_limits"].append({"image_id": image.get("image_id"), "time_utc": when,
                                              "limiting_mag": limit})
        track["upper_limits"].sort(key=lambda u: u["time_utc"])
