"""Execution tasks: queue `execution`, one at a time (the worker runs with concurrency 1).

At-most-once: the message is acknowledged on receipt (a killed worker does not replay a
half-done sequence on the hardware); the majordome detects the dead execution by its heartbeat
and resumes it from the database state."""

from __future__ import annotations

from celery import shared_task

from observation_manager import services

# A night-long sequence is possible; the watcher and heartbeat, not a time limit, guard it.
_LONG = {"soft_time_limit": 6 * 3600, "time_limit": 6 * 3600 + 60, "acks_late": False}


@shared_task(name="pyros.observation_manager.execute_sequence", **_LONG)
def execute_sequence(*, sequence_id: int, token: str) -> str:
    return services.sequence_execute(sequence_id=sequence_id, token=token)


@shared_task(name="pyros.observation_manager.run_calibrations", **_LONG)
def run_calibrations(*, when: str, token: str) -> int:
    return services.calibrations_run(when=when, token=token)
