"""Celery tasks of the alert manager (queue ``alerts``, routed by name in pyros/celery.py): thin."""

from __future__ import annotations

from celery import shared_task

from alert_manager import services


@shared_task(name="pyros.alert_manager.process_alert", soft_time_limit=60, time_limit=90, ignore_result=True)
def process_alert(*, alert_id: int) -> None:
    # No retry: the row's status is the truth; a row left `received` or `processing` is recovered
    # by process_pending, and the claim makes a second run harmless.
    services.alert_process(alert_id=alert_id)


@shared_task(name="pyros.alert_manager.process_pending", soft_time_limit=120, time_limit=150, ignore_result=True)
def process_pending() -> int:
    """Beat (every 30 s): queue again what a broker/worker outage left behind, import spooled packets."""
    return services.alert_process_pending()
