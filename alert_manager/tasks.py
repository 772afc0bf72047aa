"""Celery tasks of the alert manager (queue ``alerts``, routed by name in pyros/celery.py): thin."""

from __future__ import annotations

import logging
import threading
import time

from celery import shared_task
from celery.signals import worker_ready

from alert_manager import services

log = logging.getLogger("pyros.alert_manager")


@shared_task(name="pyros.alert_manager.process_alert", soft_time_limit=60, time_limit=90, ignore_result=True)
def process_alert(*, alert_id: int) -> None:
    # No retry: the row's status is the truth; a row left `received` or `processing` is recovered
    # by process_pending, and the claim makes a second run harmless.
    services.alert_process(alert_id=alert_id)


@shared_task(name="pyros.alert_manager.process_alerts", soft_time_limit=120, time_limit=150, ignore_result=True)
def process_alerts(*, alert_ids: list[int]) -> None:
    # A burst's chunk (the intake's writer queues packets stored together this way): same claim per row.
    services.alert_process_many(alert_ids=alert_ids)


@shared_task(name="pyros.alert_manager.process_pending", soft_time_limit=120, time_limit=150, ignore_result=True)
def process_pending() -> int:
    """Beat (every 30 s): queue again what a broker/worker outage left behind, import spooled packets."""
    return services.alert_process_pending()


@worker_ready.connect
def warm_up_alert_path(sender=None, **kwargs) -> None:  # noqa: ANN001, ANN003
    """In the worker that consumes alerts, pay the one-off costs before the first burst, not during it:
    the majordome's INDI connection (~0.1-0.5 s), astropy's Sun for visibility (~0.2 s), a DB connection."""
    consumer = getattr(sender, "task_consumer", None)
    queues = {queue.name for queue in getattr(consumer, "queues", [])} if consumer is not None else set()
    if not queues & {"alerts", services.alerts_queue_override()}:
        return
    threading.Thread(target=_warm_up, name="alerts-warm-up", daemon=True).start()


def _warm_up() -> None:
    from django.db import close_old_connections
    from django.utils import timezone

    from alert_manager import strategies
    from alert_manager.triage import visibility

    started = time.perf_counter()
    try:
        site = strategies.active_site()
        if site is not None:
            visibility(0.0, 0.0, site, timezone.now(), services.VISIBILITY_HOURS)
    except Exception as exc:  # noqa: BLE001 - a warm-up must never stop the worker
        log.warning("alert warm-up: visibility failed (%s)", exc)
    try:
        _warm_up_tiling(site)
    except Exception as exc:  # noqa: BLE001 - a warm-up must never stop the worker
        log.warning("alert warm-up: tiling failed (%s)", exc)
    try:
        from majordome.device_link import get_observatory

        get_observatory()
    except Exception as exc:  # noqa: BLE001 - devices may be down now; the majordome reconnects later
        log.warning("alert warm-up: no INDI connection yet (%s)", exc)
    finally:
        close_old_connections()
    from common import gc_pauses

    gc_pauses.freeze()  # what start-up and the warm-up allocated stays: no full collection walks it again
    gc_pauses.watch()
    log.info("alert worker warmed up in %.0f ms", (time.perf_counter() - started) * 1000.0)


def _warm_up_tiling(site) -> None:  # noqa: ANN001
    """The first tiling of a process paid ~0.8 s of imports and set-up (FITS reading, the field grid, the Sun):
    plan a small circle once at start so a sky map that arrives first is tiled within its second."""
    if site is None:
        return
    from datetime import timedelta

    from django.utils import timezone

    from alert_manager import tiling

    now = timezone.now()
    tiling.plan_tiles(circle=(0.0, 0.0, 2.0), fov_width_deg=0.35, fov_height_deg=0.28,
                      site=(site.latitude_deg, site.longitude_deg, site.elevation_m), start_utc=now,
                      end_utc=now + timedelta(hours=12), min_altitude_deg=20.0, max_tiles=3)
    import astropy.io.fits  # noqa: F401 - sky maps are FITS: the import is part of the first map's cost
