"""The one Celery app of PyROS: queues, routes, limits and the beat schedule live here."""

from __future__ import annotations

import os
from datetime import timedelta

from celery import Celery
from celery.signals import task_postrun, task_prerun
from kombu import Queue
from kombu.transport import TRANSPORT_ALIASES

# The embedded broker ("filesystem://") uses PyROS's atomic-write variant of kombu's transport.
TRANSPORT_ALIASES["filesystem"] = "common.kombu_fs:Transport"

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pyros.settings")

app = Celery("pyros")
app.config_from_object("django.conf:settings", namespace="CELERY")

QUEUES = ("alerts", "execution", "scheduling", "monitoring", "analysis", "default")

# Task names are `pyros.<app>.<task>`; the app part decides the queue. A task whose app is not
# listed goes to `default`. Specific task names may override their app's queue.
ROUTES_BY_APP = {
    "alert_manager": "alerts",
    "scheduler": "scheduling",
    "analyzer": "analysis",
}
# The majordome's tasks run where the right device connection is: close/park in the safety process (the
# worker of the `monitoring` queue, whose own thread polls every second: majordome.safety_process),
# sequences and calibrations in the execution worker (one at a time).
ROUTES_BY_TASK: dict[str, str] = {
    "pyros.majordome.poll": "monitoring",
    "pyros.majordome.close_and_park": "monitoring",
    "pyros.majordome.execute_sequence": "execution",
    "pyros.majordome.run_calibrations": "execution",
}


def route_task(name, args, kwargs, options, task=None, **kw):
    if name in ROUTES_BY_TASK:
        return {"queue": ROUTES_BY_TASK[name]}
    parts = name.split(".")
    if len(parts) >= 3 and parts[0] == "pyros":
        return {"queue": ROUTES_BY_APP.get(parts[1], "default")}
    return {"queue": "default"}


app.conf.update(
    task_queues=[Queue(name) for name in QUEUES],
    task_default_queue="default",
    task_routes=(route_task,),
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_expires=3600,
    timezone="UTC",
    enable_utc=True,
    # Defaults; tasks that legitimately run longer (a sequence) declare their own limits.
    task_soft_time_limit=300,
    task_time_limit=360,
    # Work on hardware is at-most-once: acknowledge on receipt, the database row is the truth.
    task_acks_late=False,
    worker_prefetch_multiplier=1,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    # A worker never gives up on the broker, and tries again at least every second (Celery's back-off let a
    # broker back after a 7 s restart wait 5 s more, a longer outage up to 30 s): common/celery_consumer.py.
    broker_connection_max_retries=None,
    worker_consumer="common.celery_consumer:Consumer",
    # Not Celery's reduced prefetch after a reconnection: restoring it sends basic.qos from the pool thread that
    # acknowledges a task, beside the main thread's reads of the same AMQP connection; with the threads pool this
    # deadlocked the alerts worker for good after a RabbitMQ restart (alert_manager/tests/test_broker_faults.py).
    # Tasks are acknowledged on receipt with a prefetch of one per thread: there is nothing to over-fetch.
    worker_enable_prefetch_count_reduction=False,
)

@task_prerun.connect
@task_postrun.connect
def _database_connections_around_a_task(sender=None, **kwargs) -> None:  # noqa: ANN001, ANN003
    """What Django does around a request: drop this thread's connection if it is broken or past CONN_MAX_AGE,
    keep it otherwise (settings.CELERY_DB_REUSE_MAX stops Celery from closing it after every task)."""
    request = getattr(sender, "request", None)
    if getattr(request, "is_eager", False):
        return
    from django.db import close_old_connections, connections

    if not any(conn.in_atomic_block for conn in connections.all(initialized_only=True)):
        close_old_connections()


# The beat schedule, in one place. Entries are added by the issues that build each task.
def _beat_schedule() -> dict:
    # Read from the environment directly (not django.conf.settings): this module is imported while
    # the settings module itself loads. The same variables feed settings.PYROS_*_S. The monitoring poll is
    # not here: the safety process runs it in a thread of its own (a beat or a broker outage cannot stop it).
    from pyros.env import env_float

    return {
        "majordome-tick": {"task": "pyros.majordome.tick",
                           "schedule": timedelta(seconds=env_float("PYROS_MAJORDOME_TICK_S", 5.0))},
        "alerts-process-pending": {"task": "pyros.alert_manager.process_pending", "schedule": timedelta(seconds=30)},
        "expire-requests": {"task": "pyros.routine_manager.expire_requests", "schedule": timedelta(minutes=10)},
        "analysis-sweep": {"task": "pyros.analyzer.analysis_sweep", "schedule": timedelta(minutes=5)},
        "log-purge": {"task": "pyros.common.log_purge", "schedule": timedelta(hours=6)},
    }


BEAT_SCHEDULE = _beat_schedule()
app.conf.beat_schedule = BEAT_SCHEDULE

app.autodiscover_tasks()
