"""The safety process (issue #15): a real `celery worker -Q monitoring` on the simulators. Its poll loop keeps
its period while analyses and close commands are queued; it feeds the observatory's dead-man watchdog, which
parks and closes by itself once the process is frozen."""

from __future__ import annotations

import os
import signal
import statistics
import time
from datetime import datetime

import pytest

from common.testing import celery_worker, scaled_s, wait_until
from devices.simulators.control import set_weather
from majordome.selectors import observatory_state

pytestmark = [pytest.mark.slow]


def _poll_time() -> str | None:
    return (observatory_state().devices_snapshot or {}).get("time")


def _poll_intervals(duration_s: float) -> list[float]:
    """Intervals between the polls stored during ``duration_s`` (read from the database, as anyone would)."""
    seen: list[str] = []
    deadline = time.monotonic() + duration_s
    while time.monotonic() < deadline:
        stamp = _poll_time()
        if stamp and (not seen or stamp != seen[-1]):
            seen.append(stamp)
        time.sleep(0.05)
    times = [datetime.fromisoformat(s) for s in seen]
    return [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]


def test_the_poll_keeps_its_period_while_analyses_and_close_commands_are_queued(night_observatory, settings,
                                                                              tmp_path):
    from devices.observatory import connect
    from pyros.celery import app

    seed, port = night_observatory
    set_weather(port=port, wind_m_s=2, gust_m_s=3, rain_mm_h=0, humidity_pct=40, cloud_cover_pct=0)
    env = {"PYROS_INDI_PORT": str(port), "PYROS_DATA_DIR": str(settings.PYROS_DATA_DIR),
           "PYROS_MONITORING_PERIOD_S": "1", "PYROS_WATCHDOG_S": "60"}
    with celery_worker("monitoring", env=env, concurrency=2, log_path=tmp_path / "safety.log"), \
            celery_worker("analysis", env=env, pool="prefork", concurrency=2, log_path=tmp_path / "analysis.log"):
        wait_until(_poll_time, timeout_s=30, what="first poll of the safety process")
        obs = connect("127.0.0.1", port, blobs=False)
        try:
            obs.dome.unpark()
            obs.dome.open_shutter(timeout_s=30)
            obs.mount.unpark()
        finally:
            obs.close()
        # 1,500 analyses queued (images that do not exist: each is a task the analysis worker must take)
        for image_id in range(10_000_000, 10_001_500):
            app.send_task("pyros.analyzer.analyze_image", kwargs={"image_id": image_id})
        for i in range(3):  # three operator "close" clicks
            app.send_task("pyros.majordome.close_and_park", kwargs={"reason": f"test close {i}"})
        intervals = _poll_intervals(20.0)
    assert len(intervals) >= 15, intervals
    p99 = sorted(intervals)[max(0, int(round(0.99 * len(intervals))) - 1)]
    print(f"poll period: median {statistics.median(intervals):.3f} s, p99 {p99:.3f} s, max {max(intervals):.3f} s")
    assert p99 <= scaled_s(1.5), intervals


def test_the_watchdog_parks_and_closes_when_the_safety_process_is_frozen(night_observatory, settings, tmp_path):
    from devices.observatory import connect

    seed, port = night_observatory
    watchdog_s = 5.0
    set_weather(port=port, wind_m_s=2, gust_m_s=3, rain_mm_h=0, humidity_pct=40, cloud_cover_pct=0)
    env = {"PYROS_INDI_PORT": str(port), "PYROS_DATA_DIR": str(settings.PYROS_DATA_DIR),
           "PYROS_WATCHDOG_S": str(watchdog_s)}
    obs = connect("127.0.0.1", port, blobs=False)
    try:
        with celery_worker("monitoring", env=env, log_path=tmp_path / "safety.log") as worker:
            wait_until(lambda: ((observatory_state().devices_snapshot or {}).get("watchdog") or {}).get("status")
                       == "armed", timeout_s=30, what="watchdog armed by the safety process")
            assert observatory_state().safety == "safe"
            obs.dome.unpark()
            obs.dome.open_shutter(timeout_s=30)
            obs.mount.unpark()
            assert obs.dome.state().shutter == "open" and not obs.mount.state().parked
            time.sleep(watchdog_s)  # heartbeats keep it quiet
            assert obs.watchdog.state().status == "armed"
            os.kill(worker.pid, signal.SIGSTOP)
            t_stop = time.monotonic()
            try:
                wait_until(lambda: obs.dome.state().shutter == "closed" and obs.mount.state().parked,
                           timeout_s=watchdog_s + 15, interval_s=0.1, what="watchdog closed and parked")
                took_s = time.monotonic() - t_stop
                assert obs.watchdog.state().status == "triggered"
                assert took_s <= watchdog_s + 5.0, f"closed and parked {took_s:.1f} s after PyROS froze"
            finally:
                os.kill(worker.pid, signal.SIGCONT)
            # PyROS is back: it re-arms the watchdog and says that it had fired
            wait_until(lambda: obs.watchdog.state().status == "armed", timeout_s=30, what="watchdog re-armed")
        log = (tmp_path / "safety.log").read_text()
        assert "the watchdog had fired" in log
    finally:
        obs.close()
