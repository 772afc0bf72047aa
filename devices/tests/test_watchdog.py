"""The simulated dead-man watchdog: heartbeats keep it quiet; when they stop it parks the mount and
closes the dome by itself; disarmed it does nothing. Driven through the Watchdog interface."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from devices import coords
from devices.errors import DeviceRefused
from devices.observatory import connect
from devices.testing import running_simulators, start_simulators, stop_process

SPEED = 20.0  # park and shutter motions take well under a second
TIMEOUT_S = 2.0
# after the threshold: the watchdog's own tick (0.05 s), the park motions at --speed 20 (shutter 0.3 s,
# mount <= 1 s + settle, dome rotation <= 1.8 s) and the updates reaching this client
MARGIN_S = 3.0


@pytest.fixture(scope="module")
def obs():
    with running_simulators(speed=SPEED, extra_args=("--watchdog-timeout", "30")) as (host, port, _pid):
        observatory = connect(host, port, timeout_s=10)
        yield observatory
        observatory.close()


@pytest.fixture
def ready(obs):
    """Mount unparked on a high target, dome unparked with the shutter open, watchdog disarmed."""
    obs.watchdog.disarm()
    mount, dome = obs.mount, obs.dome
    if mount.state().parked:
        mount.unpark()
    lst = coords.local_sidereal_time_deg(datetime.now(UTC), obs.site.longitude_deg)
    mount.slew_to(ra_deg=(lst - 15.0) % 360.0, dec_deg=45.0, timeout_s=30)
    if dome.state().parked:
        dome.unpark()
    dome.open_shutter(timeout_s=30)
    assert not mount.state().parked and dome.state().shutter == "open"
    yield obs
    obs.watchdog.disarm()


def _wait_for(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_watchdog_starts_disarmed_with_the_configured_timeout(obs):
    state = obs.watchdog.state()
    assert state.status == "idle"
    assert state.heartbeat_timeout_s == pytest.approx(30.0)
    assert state.shutdown == "none"


def test_heartbeats_keep_it_armed(ready):
    watchdog = ready.watchdog
    watchdog.arm(TIMEOUT_S)
    state = watchdog.state()
    assert state.status == "armed" and state.heartbeat_timeout_s == pytest.approx(TIMEOUT_S)
    for _ in range(10):  # 5 s: more than twice the timeout
        time.sleep(0.5)
        watchdog.heartbeat()
        state = watchdog.state()
        assert state.status == "armed"
        assert state.heartbeat_age_s is not None and state.heartbeat_age_s < 0.5
        assert 1.5 < state.time_left_s <= TIMEOUT_S
    assert not ready.mount.state().parked
    assert ready.dome.state().shutter == "open"


def test_missed_heartbeats_park_the_mount_and_close_the_dome(ready):
    watchdog, mount, dome = ready.watchdog, ready.mount, ready.dome
    watchdog.arm(TIMEOUT_S)
    watchdog.heartbeat()
    last_beat = time.monotonic()
    assert _wait_for(lambda: watchdog.state().status == "triggered", TIMEOUT_S + 1.0)
    fired_after = time.monotonic() - last_beat
    assert fired_after >= TIMEOUT_S - 0.1, f"fired {fired_after:.2f} s after the last heartbeat"

    def safe() -> bool:
        m, d = mount.state(), dome.state()
        return m.parked and m.status == "parked" and d.shutter == "closed" and d.parked

    assert _wait_for(safe, TIMEOUT_S + MARGIN_S - (time.monotonic() - last_beat))
    safe_after = time.monotonic() - last_beat
    assert safe_after <= TIMEOUT_S + MARGIN_S
    assert _wait_for(lambda: watchdog.state().shutdown == "done", 2.0)
    state = watchdog.state()
    assert state.status == "triggered" and state.heartbeat_age_s >= TIMEOUT_S
    # a late heartbeat does not undo it: PyROS must see that the watchdog fired
    with pytest.raises(DeviceRefused) as info:
        watchdog.heartbeat()
    assert info.value.permanent
    # arming again resets it
    watchdog.arm(TIMEOUT_S)
    state = watchdog.state()
    assert state.status == "armed" and state.shutdown == "none"
    watchdog.disarm()
    assert watchdog.state().status == "idle"


def test_disarm_stops_it(ready):
    watchdog = ready.watchdog
    watchdog.arm(TIMEOUT_S)
    watchdog.heartbeat()
    watchdog.disarm()
    assert watchdog.state().status == "idle"
    time.sleep(TIMEOUT_S + 1.5)
    assert watchdog.state().status == "idle"
    assert not ready.mount.state().parked
    assert ready.dome.state().shutter == "open"


def test_arm_refuses_a_bad_timeout(obs):
    for bad in (0.0, -1.0, 7200.0, float("nan")):
        with pytest.raises(DeviceRefused):
            obs.watchdog.arm(bad)
    assert obs.watchdog.state().status == "idle"


def test_start_up_timeout_from_the_environment(monkeypatch):
    monkeypatch.setenv("PYROS_WATCHDOG_S", "45")
    proc, port = start_simulators(speed=SPEED)
    try:
        observatory = connect("127.0.0.1", port, timeout_s=10, blobs=False)
        try:
            assert observatory.watchdog.state().heartbeat_timeout_s == pytest.approx(45.0)
        finally:
            observatory.close()
    finally:
        stop_process(proc)
