"""``python -m majordome.safety_process``: the safety process.

Nothing else can occupy its poll loop: a thread of its own runs the monitoring poll every
``PYROS_MONITORING_PERIOD_S`` and enforces closing while not safe (``majordome.safety``); motions run in
threads beside it, each watched with a timeout. A second thread keeps the observatory's dead-man watchdog
fed (armed with ``PYROS_WATCHDOG_S``), but only while polls succeed: if this process hangs, is stopped or
dies, or its polls keep failing, the heartbeats stop and the watchdog itself parks the mount and closes the
dome (see the README, "Supervision and the watchdog").

In production the safety process is the Celery worker of the ``monitoring`` queue
(``celery -A pyros worker -Q monitoring -P threads``): ``majordome.tasks`` starts these threads when a
worker consumes that queue, and its pool threads run an operator's close and park (a long motion) through
the same INDI connection. ``python -m majordome.safety_process`` runs the threads alone. If the poll thread
dies the process exits with status 1, so that its supervisor restarts it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time

log = logging.getLogger("pyros.majordome")


# Two polls are at least this far apart, however often the station publishes.
MIN_GAP_S = 0.1


class SafetyLoop(threading.Thread):
    """The monitoring poll, at a fixed rate, for ever. ``last_ok`` is the monotonic time of the last poll
    that completed (the watchdog keeper's proof of life)."""

    def __init__(self, *, period_s: float | None = None) -> None:
        super().__init__(name="pyros-safety-loop", daemon=True)
        from django.conf import settings

        self.period_s = period_s or settings.PYROS_MONITORING_PERIOD_S
        self.stopping = threading.Event()
        # Set by the weather station's updates (INDI): a reading turning unsafe is acted upon at once, not
        # up to a period later (weather unsafe -> close command p99 was 1.04 s at a 1 s period).
        self.wake = threading.Event()
        self._listening_to = None
        self.last_ok: float | None = None
        self.failures = 0

    def run(self) -> None:
        from django.db import connection

        from majordome.safety import safety_poll

        next_at = time.monotonic()
        while not self.stopping.is_set():
            try:
                safety_poll()
                self.last_ok = time.monotonic()
                if self.failures:
                    log.warning("safety poll works again after %d failure(s)", self.failures)
                self.failures = 0
            except Exception:  # noqa: BLE001 - the loop must go on; a database fault is retried next period
                self.failures += 1
                if self.failures in (1, 10) or self.failures % 60 == 0:
                    log.exception("safety poll failed (%d in a row)", self.failures)
                connection.close()  # a broken connection is opened again by the next poll
            self._listen_to_weather()
            next_at += self.period_s
            delay = next_at - time.monotonic()
            if delay < 0:  # late (a slow poll): keep the period, do not burst to catch up
                next_at = time.monotonic()
                delay = 0.0
            # Sleep until the period ends or the station publishes new readings (at most MIN_GAP_S apart).
            self.stopping.wait(MIN_GAP_S)
            if self.wake.wait(max(0.0, delay - MIN_GAP_S)):
                self.wake.clear()
                next_at = time.monotonic()
        connection.close()

    def _listen_to_weather(self) -> None:
        """Subscribe to the weather station's updates (once per device connection)."""
        try:
            from majordome.device_link import get_observatory

            weather = get_observatory().weather
        except Exception:  # noqa: BLE001 - devices unreachable: the timer polls
            return
        if weather is not None and weather is not self._listening_to:
            if weather.on_update(self.wake.set):
                self._listening_to = weather

    def alive(self, within_s: float) -> bool:
        return self.last_ok is not None and time.monotonic() - self.last_ok <= within_s


class WatchdogKeeper(threading.Thread):
    """Arms the observatory's watchdog and sends its heartbeat while the safety loop is alive."""

    def __init__(self, loop: SafetyLoop, *, timeout_s: float | None = None) -> None:
        super().__init__(name="pyros-watchdog-keeper", daemon=True)
        from django.conf import settings

        self.loop = loop
        self.timeout_s = timeout_s or settings.PYROS_WATCHDOG_S
        # four heartbeats per timeout, at most 10 s apart: one lost message is not a shutdown
        self.every_s = min(self.timeout_s / 4.0, 10.0)
        self.stopping = threading.Event()

    def run(self) -> None:
        from majordome.device_link import get_observatory

        warned_absent = False
        while not self.stopping.wait(self.every_s):
            # proof of life: a poll completed recently (a hung or failing loop lets the watchdog fire)
            if not self.loop.alive(within_s=max(3.0 * self.loop.period_s, self.every_s * 2)):
                continue
            try:
                watchdog = get_observatory().watchdog
                if not watchdog:
                    if not warned_absent:
                        log.warning("the INDI server has no watchdog: nothing closes the dome if PyROS dies "
                                    "(see the README: indi_watchdog)")
                        warned_absent = True
                    continue
                state = watchdog.state()
                if state.status != "armed" or abs(state.heartbeat_timeout_s - self.timeout_s) > 0.01:
                    if state.status == "triggered":
                        log.error("the watchdog had fired (shutdown %s): PyROS's heartbeat had stopped; re-arming",
                                  state.shutdown)
                    watchdog.arm(self.timeout_s)
                    log.info("watchdog %s armed: %.0f s without heartbeat parks and closes", watchdog.name,
                             self.timeout_s)
                else:
                    watchdog.heartbeat()
            except Exception as exc:  # noqa: BLE001 - retried at the next beat
                log.warning("watchdog heartbeat failed: %s", exc)


def _exit_when_dead(loop: SafetyLoop) -> None:
    loop.join()
    if not loop.stopping.is_set():
        log.critical("the safety loop died: exiting so that the supervisor restarts this process")
        logging.shutdown()
        os._exit(1)


def start_safety_threads() -> SafetyLoop:
    """Start the poll loop, the watchdog keeper and the guard that exits the process if the loop dies."""
    loop = SafetyLoop()
    loop.start()
    keeper = WatchdogKeeper(loop)
    keeper.start()
    threading.Thread(target=_exit_when_dead, args=(loop,), name="pyros-safety-guard", daemon=True).start()
    log.info("safety loop started: poll every %.1f s, watchdog %.0f s", loop.period_s, keeper.timeout_s)
    return loop


def main(argv: list[str] | None = None) -> int:
    """The loop alone, without the Celery worker (the Procfile's ``safety`` process is
    ``celery -A pyros worker -Q monitoring``, which starts the same threads: ``majordome.tasks``)."""
    argparse.ArgumentParser(prog="python -m majordome.safety_process", description=__doc__.split("\n\n")[0]
                            ).parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pyros.settings")
    import django

    django.setup()
    loop = start_safety_threads()
    try:
        while loop.is_alive():
            loop.join(1.0)
    except KeyboardInterrupt:
        loop.stopping.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())
