import pytest

from majordome import state_machine as sm


@pytest.mark.parametrize("alt, rising, expected", [
    (10.0, False, sm.DAY), (-5.0, False, sm.DUSK), (-5.0, True, sm.DAWN), (-18.5, True, sm.NIGHT),
    (-17.9, False, sm.DUSK), (-0.5, True, sm.DAY),
])
def test_phase_from_the_sun(alt, rising, expected):
    assert sm.phase_for(sun_alt_deg=alt, sun_rising=rising, twilight_deg=-18.0) == expected


def test_mode_transitions():
    sm.check_mode_change(sm.AUTOMATIC, sm.PAUSED)
    sm.check_mode_change(sm.PAUSED, sm.AUTOMATIC)
    sm.check_mode_change(sm.STOPPED, sm.AUTOMATIC)
    with pytest.raises(sm.InvalidStateChange):
        sm.check_mode_change(sm.STOPPED, sm.PAUSED)


def _inputs(**kw):
    base = dict(phase=sm.NIGHT, mode=sm.AUTOMATIC, safety=sm.SAFE, executor_busy=False, has_preempt=False,
                next_entry_due=True)
    base.update(kw)
    return sm.DispatchInputs(**base)


def test_dispatch_only_at_night_safe_automatic_and_idle():
    assert sm.may_dispatch(_inputs()) == (True, "next planned sequence is due")
    assert sm.may_dispatch(_inputs(safety=sm.UNSAFE))[0] is False
    assert sm.may_dispatch(_inputs(safety=sm.UNKNOWN))[0] is False
    assert sm.may_dispatch(_inputs(mode=sm.PAUSED))[0] is False
    assert sm.may_dispatch(_inputs(phase=sm.DUSK))[0] is False
    assert sm.may_dispatch(_inputs(executor_busy=True, has_preempt=True))[0] is False
    assert sm.may_dispatch(_inputs(next_entry_due=False))[0] is False
    assert sm.may_dispatch(_inputs(next_entry_due=False, has_preempt=True))[0] is True
