"""A task that holds its worker for a given time, for the lost-worker test only: the test's Celery worker
imports it (``celery worker -I procedures.tests.fanout_tasks``) and its caller registers it for fan-out, so
that the worker can be killed while a task is certainly in its hands."""

from __future__ import annotations

import logging
import time

from celery import shared_task

log = logging.getLogger("pyros.tests.fanout")


@shared_task(name="pyros.tests.hold", soft_time_limit=60, time_limit=70, track_started=True)
def hold(seconds: float) -> float:
    log.warning("holding the worker for %s s", seconds)  # the test kills the worker once it reads the second
    time.sleep(seconds)
    return seconds
