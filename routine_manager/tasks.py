"""Celery tasks of the request lifecycle (thin: they call one service)."""

from __future__ import annotations

from celery import shared_task

from . import services


@shared_task(name="pyros.routine_manager.expire_requests", queue="default", soft_time_limit=120, time_limit=180)
def expire_requests() -> int:
    """Periodic (beat): expire waiting sequences whose windows have closed; returns the requests finished."""
    return services.requests_expire()
