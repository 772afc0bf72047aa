from __future__ import annotations

from celery import shared_task

from majordome import services


@shared_task(name="pyros.majordome.tick", soft_time_limit=30, time_limit=40, ignore_result=True, expires=15)
def tick() -> str:
    return services.majordome_tick()
