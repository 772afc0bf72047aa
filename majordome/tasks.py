"""The majordome's tasks. Each keeps the queue of the process that holds the right INDI connection
(routes in pyros/celery.py): the monitoring poll and close/park on `monitoring`, sequences and
calibrations on `execution` (one at a time), the tick and messages from lower layers on `default`.

Execution is at-most-once: the message is acknowledged on receipt (a killed worker does not replay a
half-done sequence on the hardware); the tick detects the dead execution by its heartbeat and resumes
it from the database state."""

from __future__ import annotations

from celery import shared_task
from celery.signals import celeryd_after_setup

from majordome import controls, execution, night, safety

# A night-long sequence is possible; the watcher and heartbeat, not a time limit, guard it.
_LONG = {"soft_time_limit": 6 * 3600, "time_limit": 6 * 3600 + 60, "acks_late": False}


@shared_task(name="pyros.majordome.tick", soft_time_limit=30, time_limit=40, ignore_result=True, expires=15)
def tick() -> str:
    return night.majordome_tick()


@celeryd_after_setup.connect
def _start_the_safety_loop(sender=None, instance=None, **kwargs) -> None:  # noqa: ANN001, ANN003
    """The worker of the `monitoring` queue is the safety process: its poll loop and watchdog keeper run in
    threads of their own, which no task can occupy (tasks run in the pool's threads)."""
    queues = instance.app.amqp.queues.consume_from if instance is not None else {}
    if "monitoring" in (queues or {}):
        from majordome.safety_process import start_safety_threads

        start_safety_threads()


# A one-off poll (the safety process polls by itself; this is for a manual check).
@shared_task(name="pyros.majordome.poll", soft_time_limit=20, time_limit=30, ignore_result=True, expires=10)
def poll() -> None:
    safety.safety_poll()


@shared_task(name="pyros.majordome.close_and_park", soft_time_limit=600, time_limit=660)
def close_and_park(*, reason: str) -> list[str]:
    return safety.make_safe(reasons=[reason], wait=True, stop_running=False)


@shared_task(name="pyros.majordome.execute_sequence", **_LONG)
def execute_sequence(*, sequence_id: int, token: str) -> str:
    return execution.sequence_execute(sequence_id=sequence_id, token=token)


@shared_task(name="pyros.majordome.run_calibrations", **_LONG)
def run_calibrations(*, when: str, token: str) -> int:
    return execution.calibrations_execute(when=when, token=token)


@shared_task(name="pyros.majordome.sequence_withdrawn", soft_time_limit=20, time_limit=30)
def sequence_withdrawn(*, sequence_id: int, reason: str) -> bool:
    return controls.sequence_withdrawn(sequence_id=sequence_id, reason=reason)
