from __future__ import annotations

from celery import shared_task

from monitoring import services


@shared_task(name="pyros.monitoring.poll", soft_time_limit=20, time_limit=30, ignore_result=True, expires=10)
def poll() -> None:
    services.monitoring_poll()


@shared_task(name="pyros.monitoring.close_and_park", soft_time_limit=600, time_limit=660)
def close_and_park(*, reason: str) -> None:
    services.close_and_park(reason=reason)
