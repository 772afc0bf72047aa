"""Celery tasks of the analyzer: thin wrappers, by name (other apps send them with ``send_task``).

All route to the ``analysis`` queue through their ``pyros.analyzer.`` prefix (pyros/celery.py routes in
one place). A failed analysis is a stored result, not a task failure: only a lost database connection is
retried. The time limits are generous for a 1280x1024 frame (~1-2 s) and bound a pathological file.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import numpy as np
from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.db import OperationalError

from analyzer import astrometry as astrometry_module
from analyzer import calibration, catalogs, measure, pipeline, services
from pyrosapp.models import Image

log = logging.getLogger("pyros.analyzer")

ANALYZE_SOFT_TIME_LIMIT_S = 120
MASTERS_SOFT_TIME_LIMIT_S = 600
# The measurements that procedures fan out (procedures/fanout.py): a frame by Image id or by path under the
# data folder; a result dict, never a stored row. track_started: the procedure sees which worker runs it.
FANOUT_SOFT_TIME_LIMIT_S = 90


@shared_task(name="pyros.analyzer.analyze_image", soft_time_limit=ANALYZE_SOFT_TIME_LIMIT_S,
             time_limit=ANALYZE_SOFT_TIME_LIMIT_S + 30, autoretry_for=(OperationalError,), max_retries=3,
             retry_backoff=5, retry_jitter=True)
def analyze_image(*, image_id: int) -> dict[str, Any]:
    """Analyse one Image row (sent by the observation manager once the row is committed)."""
    try:
        analysis = services.image_analyze(image_id=image_id)
    except Image.DoesNotExist:
        log.warning("analyze_image: no image %s (deleted before its analysis ran)", image_id)
        return {"image_id": image_id, "status": "missing"}
    except SoftTimeLimitExceeded:
        services.image_analysis_fail(
            image_id=image_id, reason=f"the analysis took longer than {ANALYZE_SOFT_TIME_LIMIT_S} s and was stopped")
        return {"image_id": image_id, "status": "failed"}
    return {"image_id": image_id, "status": analysis.status, "failure_reason": analysis.failure_reason}


@shared_task(name="pyros.analyzer.calibration_masters_build", soft_time_limit=MASTERS_SOFT_TIME_LIMIT_S,
             time_limit=MASTERS_SOFT_TIME_LIMIT_S + 60, autoretry_for=(OperationalError,), max_retries=3,
             retry_backoff=10, retry_jitter=True)
def calibration_masters_build(*, detector_id: int, when: str | None = None) -> dict[str, Any]:
    """Build the masters of one detector after a dusk/dawn calibration series.

    ``when``: the series' name as the observation manager sends it ("dusk"/"dawn": frames up to now), or an
    ISO 8601 UTC time up to which calibration frames belong to the series.
    """
    when_utc, series = _series_end(when)
    masters = services.calibration_masters_build(detector_id=detector_id, when=when_utc, series=series)
    return {"detector_id": detector_id,
            "masters": [{"id": m.pk, "kind": m.kind, "filter": m.filter_name, "n_frames": m.n_frames} for m in masters]}


@shared_task(name="pyros.analyzer.analysis_sweep", soft_time_limit=60, time_limit=90)
def analysis_sweep() -> dict[str, Any]:
    """Periodic (beat): re-queue analyses never sent (broker down at the time) or lost (killed worker)."""
    return {"queued": services.image_analysis_sweep()}


@shared_task(name="pyros.analyzer.plate_solve", soft_time_limit=FANOUT_SOFT_TIME_LIMIT_S,
             time_limit=FANOUT_SOFT_TIME_LIMIT_S + 30, track_started=True)
def plate_solve(image: int | str) -> dict[str, Any]:
    """Solve one frame (an Image id, or a path under PYROS_DATA_DIR) with the analyzer's pipeline: where it
    points (the solved field centre), how far from the header's pointing, and how well it matched the
    catalogue. Nothing is stored; ``status`` is "ok", "failed" or "skipped" with ``failure_reason``."""
    try:
        path = _frame_path(image)
        result = pipeline.analyze_image(path, catalog=catalogs.reference_catalog(),
                                        astrometry_index_dir=catalogs.astrometry_index_dir() or None)
    except (Image.DoesNotExist, services.ImageFileError) as exc:
        return {"image": image, "status": "failed", "solved": False, "failure_reason": str(exc)}
    except SoftTimeLimitExceeded:
        return {"image": image, "status": "failed", "solved": False,
                "failure_reason": f"the solve took longer than {FANOUT_SOFT_TIME_LIMIT_S} s and was stopped"}
    astrometry = result.get("astrometry") or {}
    return {"image": image, "status": result["status"], "failure_reason": result["failure_reason"] or
            astrometry.get("reason"), "solved": result["field"] is not None, "field": result["field"],
            "method": astrometry.get("method"), "n_matched": result["n_matched"],
            "rms_arcsec": result["wcs_rms_arcsec"], "offset_arcsec": result["wcs_offset_arcsec"],
            "offset_ra_arcsec": result["wcs_offset_ra_arcsec"], "offset_dec_arcsec": result["wcs_offset_dec_arcsec"],
            "pixel_scale_arcsec": result["pixel_scale_arcsec"], "fwhm_arcsec": result["fwhm_arcsec"],
            "date_obs_utc": result["date_obs_utc"]}


@shared_task(name="pyros.analyzer.measure_focus", soft_time_limit=FANOUT_SOFT_TIME_LIMIT_S,
             time_limit=FANOUT_SOFT_TIME_LIMIT_S + 30, track_started=True)
def measure_focus(image: int | str) -> dict[str, Any]:
    """The stars' FWHM on one focus frame (an Image id, or a path under PYROS_DATA_DIR), by the analyzer's
    seeing measurement (bright isolated round stars, median half-light radius), with the focuser position
    from the header (FOCUSPOS) when the camera wrote it. ``fwhm_px`` is None when too few stars."""
    try:
        raw, header = calibration.load_fits(_frame_path(image))
        data = np.ascontiguousarray(raw, dtype=np.float64)
        background = measure.estimate_background(data)
        subtracted = data - background.back
        objects = measure.extract_sources(subtracted, background.noise_adu, threshold_sigma=3.0)
        fwhm_px = measure.seeing_fwhm_px(subtracted, objects, background.noise_adu,
                                         measure.saturation_mask(raw, header))
    except (Image.DoesNotExist, services.ImageFileError, calibration.AnalysisError) as exc:
        return {"image": image, "status": "failed", "fwhm_px": None, "failure_reason": str(exc)}
    except SoftTimeLimitExceeded:
        return {"image": image, "status": "failed", "fwhm_px": None,
                "failure_reason": f"the measurement took longer than {FANOUT_SOFT_TIME_LIMIT_S} s and was stopped"}
    scale = astrometry_module.plate_scale_hint(header)
    focus = header.get("FOCUSPOS")
    return {"image": image, "status": "ok", "fwhm_px": None if fwhm_px is None else round(fwhm_px, 3),
            "fwhm_arcsec": None if fwhm_px is None or scale is None else round(fwhm_px * scale, 3),
            "n_sources": int(len(objects)), "background_adu": round(background.level_adu, 2),
            "focus_position": None if focus is None else int(focus), "failure_reason": None}


def _frame_path(image: int | str):
    """The file of an Image id (an int, or a string of digits) or of a path under PYROS_DATA_DIR."""
    if isinstance(image, int) or (isinstance(image, str) and image.isdigit()):
        return services.data_path(Image.objects.only("file_path").get(pk=int(image)).file_path)
    if not isinstance(image, str):
        raise services.ImageFileError(f"an image is an Image id or a path under the data folder, not {image!r}")
    return services.data_path(image)


def _series_end(when: str | None) -> tuple[datetime | None, str]:
    if not when:
        return None, ""
    try:
        value = datetime.fromisoformat(when.strip().replace("Z", "+00:00"))
    except ValueError:
        return None, when.strip()  # a series name: its frames are the newest ones, up to now
    return (value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)), ""
