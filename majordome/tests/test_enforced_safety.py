"""Enforced safety (issue #15): while not safe, every poll checks the dome and the mount and commands them
again (with backoff) until they are closed and parked; an alarm stays until that is confirmed.

The first tests drive ``enforce_safe`` with a stand-in for the INDI connection (what leaves the process);
the last replays the reported failure on the real simulators: killed, restarted with the shutter open, rain.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from common.testing import wait_until
from majordome import safety


class _Device:
    def __init__(self, *, fail: bool = False) -> None:
        self.calls = 0
        self.fail = fail

    def command(self, **kwargs) -> None:
        self.calls += 1
        if self.fail:
            raise ConnectionError("link down")

    close_shutter = park = command


def _observatory(*, connected=True, epoch=1, fail=False):
    return SimpleNamespace(connected=connected, link=SimpleNamespace(epoch=epoch), dome=_Device(fail=fail),
                           mount=_Device(fail=fail))


def _snapshot(shutter, mount):
    return {"dome": {"shutter": shutter}, "mount": {"state": mount}}


@pytest.fixture(autouse=True)
def _fresh_enforcer(monkeypatch):
    safety.reset_enforcement()
    monkeypatch.setattr(safety, "COMMAND_GRACE_S", 0.05)
    monkeypatch.setattr(safety, "RETRY_BACKOFF_S", (0.1, 0.2))
    yield
    safety.reset_enforcement()


def _join_motions():
    for motion in (safety._enforcer.dome, safety._enforcer.mount):
        if motion.thread is not None:
            motion.thread.join(2)


def test_an_open_dome_is_commanded_at_once_and_again_with_backoff_while_it_stays_open(settings):
    settings.PYROS_SAFETY_ALARM_HOOK = ""
    obs = _observatory()
    alarm = safety.enforce_safe(observatory=obs, snapshot=_snapshot("open", "tracking"), reasons=["rain"], alarm=None)
    _join_motions()
    assert (obs.dome.calls, obs.mount.calls) == (1, 1)
    assert alarm is None  # the first command is the normal reaction, not an alarm
    # the next polls, within the backoff: nothing repeated
    alarm = safety.enforce_safe(observatory=obs, snapshot=_snapshot("open", "parking"), reasons=["rain"], alarm=alarm)
    assert obs.dome.calls == 1
    # after the backoff the dome is still open: commanded again, and the alarm is raised
    time.sleep(0.2)
    alarm = safety.enforce_safe(observatory=obs, snapshot=_snapshot("open", "parking"), reasons=["rain"], alarm=alarm)
    _join_motions()
    assert obs.dome.calls == 2 and obs.mount.calls == 1  # the parking mount is left alone
    assert alarm and any("dome close repeated" in p for p in alarm["problems"])
    # closing is not enough to clear it; closed and parked is
    alarm = safety.enforce_safe(observatory=obs, snapshot=_snapshot("closing", "parking"), reasons=["rain"],
                                alarm=alarm)
    assert alarm is not None
    assert safety.enforce_safe(observatory=obs, snapshot=_snapshot("closed", "parked"), reasons=["rain"],
                               alarm=alarm) is None


def test_unknown_state_raises_the_alarm_and_the_link_returning_commands_at_once(settings):
    settings.PYROS_SAFETY_ALARM_HOOK = "majordome.tests.test_enforced_safety.record_alarm"
    RECORDED.clear()
    down = _observatory(connected=False, epoch=1)
    alarm = safety.enforce_safe(observatory=down, snapshot=_snapshot("unknown", "unknown"),
                                reasons=["devices unreachable"], alarm=None)
    assert alarm and "dome state unknown (devices unreachable)" in alarm["problems"]
    assert down.dome.calls == 0  # nothing can be sent
    wait_until(lambda: RECORDED, timeout_s=2, what="hook called")
    assert RECORDED[0][0] == "raised"
    # commands failing while the link flaps back off...
    failing = _observatory(epoch=2, fail=True)
    alarm = safety.enforce_safe(observatory=failing, snapshot=_snapshot("open", "idle"), reasons=["rain"], alarm=alarm)
    _join_motions()
    alarm = safety.enforce_safe(observatory=failing, snapshot=_snapshot("open", "idle"), reasons=["rain"], alarm=alarm)
    assert failing.dome.calls == 1
    # ...but a new connection (the link came back) commands at once, without waiting out the backoff
    back = _observatory(epoch=3)
    alarm = safety.enforce_safe(observatory=back, snapshot=_snapshot("open", "idle"), reasons=["rain"], alarm=alarm)
    _join_motions()
    assert (back.dome.calls, back.mount.calls) == (1, 1)
    assert safety.enforce_safe(observatory=back, snapshot=_snapshot("closed", "parked"), reasons=["rain"],
                               alarm=alarm) is None
    wait_until(lambda: len(RECORDED) == 2, timeout_s=2, what="hook told of the clearing")
    assert RECORDED[1][0] == "cleared"


RECORDED: list = []


def record_alarm(event, alarm):
    RECORDED.append((event, alarm))


@pytest.mark.slow
def test_simulators_killed_restarted_with_the_dome_open_in_the_rain_close_within_5_s(night_observatory, settings,
                                                                                     tmp_path):
    """The reported failure: the INDI link dies, the simulators come back with the shutter open and it
    rains. The dome is closed within 5 s of the link returning; the alarm is raised, then cleared."""
    from devices.observatory import connect
    from devices.simulators.control import set_weather
    from devices.testing import start_simulators, stop_process
    from majordome.device_link import get_observatory
    from majordome.safety_process import SafetyLoop
    from majordome.selectors import observatory_state

    seed, port = night_observatory
    settings.PYROS_SAFETY_HOLD_S = 600.0
    site = seed.site
    args = ("--latitude", str(site.latitude_deg), "--longitude", str(site.longitude_deg), "--readout", "0.2")
    set_weather(port=port, wind_m_s=2, gust_m_s=3, rain_mm_h=0, humidity_pct=40, cloud_cover_pct=0)
    loop = SafetyLoop(period_s=0.5)
    loop.start()
    from pyrosapp.models import ObservatoryState

    try:
        wait_until(lambda: observatory_state().safety == "safe", timeout_s=10, what="safe at start")
        obs = get_observatory()
        # kill the INDI server: unsafe (devices unreachable), dome state unknown, alarm raised
        import os
        import signal

        os.kill(_simulator_pid(port), signal.SIGKILL)
        wait_until(lambda: observatory_state().safety == "unsafe", timeout_s=10, what="unsafe once unreachable")
        wait_until(lambda: (observatory_state().devices_snapshot or {}).get("safety_alarm"), timeout_s=10,
                   what="alarm raised while the link is down")
        assert "devices unreachable" in "; ".join(observatory_state().safety_reasons)
        # restart, open the shutter (someone else's client), make it rain
        proc, _ = start_simulators(port=port, speed=20.0, extra_args=args, log_path=tmp_path / "sim2.log")
        try:
            t_back = time.monotonic()
            other = connect("127.0.0.1", port, site=obs.site, blobs=False)
            try:
                other.dome.unpark()
                other.dome.open_shutter(timeout_s=30)  # returns once the shutter reported open
                set_weather(port=port, rain_mm_h=5)
                wait_until(lambda: other.dome.state().shutter == "closed", timeout_s=15, interval_s=0.05,
                           what="dome closed after the link returned")
                closed_after_s = time.monotonic() - t_back
                assert closed_after_s <= 5.0, f"closed {closed_after_s:.1f} s after the link returned"
                wait_until(lambda: other.mount.state().parked, timeout_s=30, what="mount parked")
            finally:
                other.close()
            wait_until(lambda: not (observatory_state().devices_snapshot or {}).get("safety_alarm"), timeout_s=10,
                       what="alarm cleared once closed and parked")
            # still unsafe, for the rain (a reading of the restarted station may lag the rain just commanded)
            wait_until(lambda: observatory_state().safety == "unsafe" and any(
                r.startswith("rain 5") for r in observatory_state().safety_reasons), timeout_s=5,
                what="unsafe for the rain")
        finally:
            stop_process(proc)
    finally:
        loop.stopping.set()
        loop.join(5)
        ObservatoryState.objects.update(devices_snapshot={})


def _simulator_pid(port: int) -> int:
    """The pid of the simulator process listening on ``port`` (started by the fixture)."""
    import subprocess

    out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    import re

    match = re.search(r"pid=(\d+)", out)
    assert match, out
    return int(match.group(1))
