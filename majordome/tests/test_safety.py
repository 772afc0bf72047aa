"""Safety on the INDI simulators: unsafe weather stops the night at once and closes the dome;
nothing reopens before the hold time; stale weather is unsafe; the night resumes afterwards."""

from __future__ import annotations

import time

import pytest

from common.testing import celery_worker, scaled_s, wait_until
from devices.simulators.control import freeze_weather, set_weather
from majordome.safety import safety_poll
from majordome.selectors import observatory_state
from majordome.tests.test_execution import make_request
from pyrosapp.models import Image, Sequence

pytestmark = [pytest.mark.slow]


def _poll_until(predicate, timeout_s, what):
    return wait_until(lambda: (safety_poll(), predicate())[1], timeout_s=timeout_s, interval_s=0.2, what=what)


def test_unsafe_weather_mid_sequence_then_hold_then_resume(night_observatory, settings, tmp_path):
    from majordome.device_link import get_observatory
    from majordome.dispatch import majordome_dispatch

    seed, port = night_observatory
    settings.PYROS_SAFETY_HOLD_S = 4.0
    set_weather(port=port, wind_m_s=2, gust_m_s=3, rain_mm_h=0, humidity_pct=40, cloud_cover_pct=0)
    _poll_until(lambda: observatory_state().safety == "safe", 10, "safe at start")
    request, sequence = make_request(seed, plans=(("R", 1.0, 1), ("V", 20.0, 2)))
    type(observatory_state()).objects.update(preempt_sequence=sequence)
    env = {"PYROS_INDI_PORT": str(port), "PYROS_DATA_DIR": str(settings.PYROS_DATA_DIR)}
    obs = get_observatory()
    with celery_worker("execution", env=env, log_path=tmp_path / "worker.log"):
        assert majordome_dispatch(reason="test")
        wait_until(lambda: Image.objects.filter(sequence=sequence).count() == 1 and
                   observatory_state().progress.get("filter") == "V", timeout_s=60, what="exposing in V")
        time.sleep(1.0)
        set_weather(port=port, wind_m_s=25)
        _poll_until(lambda: observatory_state().safety == "unsafe", 2, "unsafe reading")
        t_unsafe = time.monotonic()
        state = observatory_state()
        assert state.safety == "unsafe" and any(r.startswith("wind 2") for r in state.safety_reasons), state.safety_reasons
        # the dome is closing at once, the exposure stops, the mount parks
        wait_until(lambda: obs.dome.state().shutter in ("closing", "closed"), timeout_s=2, what="dome closing")
        assert time.monotonic() - t_unsafe < scaled_s(2.0)
        wait_until(lambda: Sequence.objects.get(pk=sequence.pk).status == "pending", timeout_s=10,
                   what="sequence interrupted")
        wait_until(lambda: obs.dome.state().shutter == "closed" and obs.mount.state().parked, timeout_s=60,
                   what="dome closed and mount parked")
        assert Image.objects.filter(sequence=sequence).count() == 1  # the V exposure was not kept

        # good weather again: nothing reopens before the hold time
        set_weather(port=port, wind_m_s=2)
        _poll_until(lambda: observatory_state().conditions_ok_since is not None, 10, "good reading")
        ok_since = observatory_state().conditions_ok_since
        assert observatory_state().safety == "unsafe"
        assert "reopening after 4 s" in observatory_state().safety_reasons[0]
        assert majordome_dispatch(reason="too early") is None
        assert obs.dome.state().shutter == "closed"
        _poll_until(lambda: observatory_state().safety == "safe", 15, "safe after the hold")
        from django.utils import timezone

        assert (timezone.now() - ok_since).total_seconds() >= 4.0
        # the night resumes: the interrupted sequence is planned again and completes
        type(observatory_state()).objects.update(preempt_sequence=sequence)
        assert majordome_dispatch(reason="safe again")
        wait_until(lambda: Sequence.objects.get(pk=sequence.pk).status == "completed", timeout_s=90,
                   what="sequence completed after the weather cleared")
    assert obs.dome.state().shutter == "open"
    assert Image.objects.filter(sequence=sequence).count() == 3


def test_stale_weather_is_unsafe(night_observatory, settings):
    seed, port = night_observatory
    settings.PYROS_SAFETY_LIMITS = {**settings.PYROS_SAFETY_LIMITS, "stale_after_s": 3.0}
    set_weather(port=port, wind_m_s=1, rain_mm_h=0, humidity_pct=30, cloud_cover_pct=0)
    _poll_until(lambda: observatory_state().safety == "safe", 10, "safe at start")
    freeze_weather(port=port, frozen=True)
    state = _poll_until(lambda: observatory_state().safety == "unsafe", 15, "unsafe when the station is silent") and \
        observatory_state()
    assert "old" in state.safety_reasons[0]
    freeze_weather(port=port, frozen=False)
