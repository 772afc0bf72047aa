"""Celery tasks of the scheduler (queue ``scheduling``, routed by name in pyros/celery.py): thin wrappers."""

from __future__ import annotations

from datetime import datetime

from celery import shared_task
from django.db import OperationalError

from scheduler import services


# A locked or briefly unreachable database is worth a few retries; a bug is not.
@shared_task(name="pyros.scheduler.make_schedule", soft_time_limit=120, time_limit=150,
             autoretry_for=(OperationalError,), retry_backoff=2, retry_backoff_max=30, max_retries=3)
def make_schedule(*, reason: str = "", requested_at: str | None = None, site_id: int | None = None) -> dict:
    """Plan the rest of the night. ``requested_at`` (ISO 8601) makes it skip when a newer plan covers it;
    without it (the dusk run of beat) it always plans."""
    return services.schedule_make(
        reason=reason or "periodic run",
        requested_at=datetime.fromisoformat(requested_at) if requested_at else None,
        site_id=site_id,
    ).as_dict()
