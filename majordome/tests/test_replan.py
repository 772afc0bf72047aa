"""Replan when the world changes (issue #15): back to safe, resume, an operator's abort, a sequence that ran
long or short, sequences waiting while nothing is due; the idle reason says why the telescope waits; a silent
safety process makes the observatory unsafe."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from majordome import controls, execution, night, safety, selectors
from pyros.demo import seed_demo
from pyrosapp.models import ObservatoryState
from pyrosapp.tests.factories import SequenceFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo():
    seed = seed_demo()
    ObservatoryState.objects.update(phase="night", safety="safe", mode="automatic")
    return seed


@pytest.fixture
def replans(monkeypatch):
    """The replan requests made (the scheduler's run itself is the scheduler's tests' business)."""
    asked: list[str] = []

    def record(*, reason, **kwargs):
        asked.append(reason)

    for module in (safety, controls, execution, night):
        monkeypatch.setattr(module, "schedule_request_replan", record)
    return asked


def test_unsafe_to_safe_asks_for_a_new_plan(demo, replans):
    safety.observatory_set_safety(safe=False, reasons=["rain 5 mm/h > 0 mm/h"])
    assert replans == []
    safety.observatory_set_safety(safe=True, reasons=[])
    assert replans == ["conditions safe again"]
    safety.observatory_set_safety(safe=True, reasons=[])
    assert len(replans) == 1  # only on the transition


def test_resume_asks_for_a_new_plan(demo, replans):
    controls.observatory_pause(when="immediate", by="op")
    controls.observatory_resume(by="op")
    assert replans == ["resumed by op"]


@pytest.mark.parametrize(("status", "ran_s", "planned_s", "expect"), [
    ("pending", 10, 10, "interrupted"),
    ("partially_completed", 10, 100, "ended partially_completed"),  # an operator's abort
    ("completed", 400, 100, "ran 400 s instead of 100 s"),
    ("completed", 10, 400, "ran 10 s instead of 400 s"),
    ("completed", 150, 100, None),
])
def test_a_sequence_that_ends_off_plan_asks_for_a_new_plan(demo, settings, status, ran_s, planned_s, expect):
    settings.PYROS_REPLAN_DRIFT_S = 120.0
    now = timezone.now()
    seq = SequenceFactory(status=status, started_at=now - timedelta(seconds=ran_s), ended_at=now,
                          planned_start=now - timedelta(seconds=ran_s + 30),
                          planned_end=now - timedelta(seconds=ran_s + 30 - planned_s))
    reason = execution.replan_reason_after(sequence_id=seq.pk, status=status)
    if expect is None:
        assert reason is None
    else:
        assert reason and expect in reason


def test_waiting_sequences_with_nothing_due_ask_for_a_plan_from_the_tick_and_say_why(demo, settings, replans):
    settings.PYROS_IDLE_REPLAN_S = 60.0
    night._last_idle_replan["at"] = -1e18
    now = timezone.now()
    assert selectors.idle_reason(now=now)["text"].startswith("nothing to observe")
    seq = SequenceFactory(status="pending", window_start=now - timedelta(minutes=5),
                          window_end=now + timedelta(hours=2), request__status="submitted")
    reason = selectors.idle_reason(now=now)
    assert reason["code"] == "nothing_due" and reason["waiting"] == 1
    assert "1 sequence(s) wait for a plan" in reason["text"]
    assert night.replan_if_idle(now) == "replan requested (idle)"
    assert night.replan_if_idle(now) is None  # rate-limited
    assert replans == ["1 sequence(s) wait, none is planned now"]
    assert selectors.observatory_status()["idle_reason"].startswith("1 sequence(s) wait")
    # the other reasons a person sees
    ObservatoryState.objects.update(mode="paused")
    assert selectors.idle_reason()["text"] == "mode is paused (resume to observe)"
    ObservatoryState.objects.update(mode="automatic", safety="unsafe", safety_reasons=["wind 20 m/s > 15 m/s"])
    assert selectors.idle_reason()["text"] == "not safe: wind 20 m/s > 15 m/s"
    ObservatoryState.objects.update(safety="safe", phase="day")
    assert selectors.idle_reason()["text"] == "it is day"
    del seq


def test_a_silent_safety_process_makes_safety_unknown_and_keeps_unsafe(demo, settings):
    settings.PYROS_SAFETY_LOOP_STALE_S = 30.0
    old = (timezone.now() - timedelta(seconds=45)).isoformat()
    ObservatoryState.objects.update(devices_snapshot={"time": old})
    state = selectors.observatory_state()
    assert night.safety_loop_watch(state) is not None
    state = selectors.observatory_state()
    assert state.safety == "unknown" and state.safety_reasons[0].startswith("monitoring silent for 4")
    assert selectors.idle_reason()["code"] == "monitoring_silent"
    # a fresh poll: nothing to say
    ObservatoryState.objects.update(devices_snapshot={"time": timezone.now().isoformat()})
    assert night.safety_loop_watch(selectors.observatory_state()) is None
    # unsafe weather when the process fell silent: it stays unsafe (the hold is still to wait)
    ObservatoryState.objects.update(devices_snapshot={"time": old}, safety="unsafe", safety_reasons=["rain 5 mm/h"])
    assert night.safety_loop_watch(selectors.observatory_state()) is not None
    assert selectors.observatory_state().safety == "unsafe"
