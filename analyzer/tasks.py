"""Celery tasks of the analyzer: thin wrappers, by name (other apps send them with ``send_task``).

Both route to the ``analysis`` queue through their ``pyros.analyzer.`` prefix (pyros/celery.py routes in
one place). A failed analysis is a stored result, not a task failure: only a lost database connection is
retried. The time limits are generous for a 1280x1024 frame (~1-2 s) and bound a pathological file.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.db import OperationalError

from analyzer import services
from pyrosapp.models import Image

log = logging.getLogger("pyros.analyzer")

ANALYZE_SOFT_TIME_LIMIT_S = 120
MASTERS_SOFT_TIME_LIMIT_S = 600


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


def _series_end(when: str | None) -> tuple[datetime | None, str]:
    if not when:
        return None, ""
    try:
        value = datetime.fromisoformat(when.strip().replace("Z", "+00:00"))
    except ValueError:
        return None, when.strip()  # a series name: its frames are the newest ones, up to now
    return (value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)), ""
