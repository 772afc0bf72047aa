"""Garbage-collector pauses in latency-critical processes (the alerts worker, the alert intake).

A full collection walks every object of the process; with Django, Celery and astropy loaded that is
hundreds of thousands of objects, and the pause lands on whatever thread runs at that moment (an alert
waiting for its task, a slew command waiting to leave). ``freeze()`` after start-up moves everything
allocated so far (modules, caches, the INDI connection) out of the collector's reach, as CPython's
documentation recommends for long-lived servers; ``watch()`` logs any collection longer than a threshold,
so a pause is seen in the logs rather than guessed from a latency spike.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger("pyros.gc")

_started: dict[int, float] = {}
_threshold_s = 0.05
_installed = False


def _callback(phase: str, info: dict) -> None:
    generation = info.get("generation", -1)
    if phase == "start":
        _started[generation] = time.perf_counter()
        return
    began = _started.pop(generation, None)
    if began is None:
        return
    paused = time.perf_counter() - began
    if paused >= _threshold_s:
        log.warning("garbage collection of generation %d paused this process for %.0f ms (%d objects collected)",
                    generation, paused * 1000.0, info.get("collected", 0))


def watch(threshold_ms: float = 50.0) -> None:
    """Log collections longer than ``threshold_ms`` (once per process)."""
    global _threshold_s, _installed
    _threshold_s = threshold_ms / 1000.0
    if not _installed:
        gc.callbacks.append(_callback)
        _installed = True


def freeze() -> int:
    """Collect once, then exempt every surviving object from later collections. Returns how many were frozen."""
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("%d start-up objects frozen out of the garbage collector in %.0f ms", frozen,
             (time.perf_counter() - started) * 1000.0)
    return frozen
