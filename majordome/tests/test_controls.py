"""Operator controls through the API and the operator page; astronomers may not use them."""

from __future__ import annotations

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from pyros.demo import seed_demo
from pyrosapp.models import ObservatoryState, Sequence, User
from pyrosapp.tests.factories import SequenceFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo():
    seed = seed_demo()
    ObservatoryState.objects.update(phase="night", safety="safe", mode="automatic")
    return seed


def client_for(email):
    client = APIClient()
    client.force_authenticate(User.objects.get(email=email))
    return client


@pytest.fixture
def operator(demo):
    return client_for("operator@pyros.local")


@pytest.fixture
def astronomer(demo):
    return client_for("astronomer@pyros.local")


def running_sequence():
    seq = SequenceFactory(status="executing")
    ObservatoryState.objects.update(current_sequence=seq)
    return seq


@pytest.mark.parametrize("action", ["pause", "resume", "stop", "abort", "close", "calibrate"])
def test_astronomers_cannot_control_the_observatory(astronomer, action):
    response = astronomer.post(f"/api/observatory/{action}/", {"when": "immediate"}, format="json")
    assert response.status_code == 403
    assert ObservatoryState.objects.get().mode == "automatic"


def test_unauthenticated_status_is_401():
    assert APIClient().get("/api/observatory/status/").status_code == 401


def test_status_json_has_the_documented_fields(astronomer):
    data = astronomer.get("/api/observatory/status/").json()
    for key in ("phase", "mode", "safe", "safety_reasons", "sun_alt_deg", "dome", "mount", "current", "next",
                "weather", "updated"):
        assert key in data
    assert set(data["mount"]) >= {"ra_deg", "dec_deg", "state"}
    assert data["phase"] == "night" and data["safe"] is True and data["current"] is None


def test_pause_immediate_aborts_the_running_sequence(operator):
    seq = running_sequence()
    response = operator.post("/api/observatory/pause/", {"when": "immediate"}, format="json")
    assert response.status_code == 200
    state = ObservatoryState.objects.get()
    assert state.mode == "paused" and state.abort_sequence_id == seq.pk
    assert state.abort_reason.startswith("paused")
    assert response.json()["mode"] == "paused"


def test_pause_deferred_waits_for_the_current_plan(operator):
    seq = running_sequence()
    response = operator.post("/api/observatory/pause/", {"when": "deferred"}, format="json")
    assert response.status_code == 200
    state = ObservatoryState.objects.get()
    assert state.mode == "automatic" and state.pause_requested == "deferred" and state.abort_sequence_id is None
    assert response.json()["pause_requested"] == "deferred"
    Sequence.objects.filter(pk=seq.pk).update(status="completed")
    from majordome.execution import _apply_deferred_pause

    _apply_deferred_pause(state.pk)
    assert ObservatoryState.objects.get().mode == "paused"


def test_pause_with_nothing_running_pauses_at_once(operator):
    assert operator.post("/api/observatory/pause/", {"when": "deferred"}, format="json").status_code == 200
    assert ObservatoryState.objects.get().mode == "paused"


def test_bad_pause_value_is_a_400_and_changes_nothing(operator):
    response = operator.post("/api/observatory/pause/", {"when": "tomorrow"}, format="json")
    assert response.status_code == 400 and "when" in response.json()["errors"]
    assert ObservatoryState.objects.get().mode == "automatic"


def test_resume_after_pause(operator):
    operator.post("/api/observatory/pause/", {"when": "immediate"}, format="json")
    assert operator.post("/api/observatory/resume/").status_code == 200
    assert ObservatoryState.objects.get().mode == "automatic"


def test_abort_without_a_sequence_is_409(operator):
    response = operator.post("/api/observatory/abort/")
    assert response.status_code == 409 and "no sequence" in response.json()["detail"]


def test_abort_flags_the_running_sequence_and_keeps_the_mode(operator):
    seq = running_sequence()
    assert operator.post("/api/observatory/abort/").status_code == 200
    state = ObservatoryState.objects.get()
    assert state.abort_sequence_id == seq.pk and state.mode == "automatic"
    assert "aborted by operator@pyros.local" == state.abort_reason


def test_stop_then_pause_is_refused_with_409(operator, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        assert operator.post("/api/observatory/stop/").status_code == 200
    assert ObservatoryState.objects.get().mode == "stopped"
    response = operator.post("/api/observatory/pause/", {"when": "immediate"}, format="json")
    assert response.status_code == 409


def test_astronomer_cannot_open_the_operator_page(demo, client):
    client.force_login(User.objects.get(email="astronomer@pyros.local"))
    assert client.get("/operations/").status_code == 403
    client.force_login(User.objects.get(email="operator@pyros.local"))
    page = client.get("/operations/")
    assert page.status_code == 200 and b"Close the dome and park" in page.content


def test_operator_page_buttons_work(demo, client):
    client.force_login(User.objects.get(email="operator@pyros.local"))
    response = client.post("/operations/control/pause_immediate/", follow=True)
    assert b"Pause now: done." in response.content
    assert ObservatoryState.objects.get().mode == "paused"


def test_calibrations_on_operator_demand(operator, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert operator.post("/api/observatory/calibrate/").status_code == 200
    assert len(callbacks) == 1  # the run_calibrations task, sent after commit
    progress = ObservatoryState.objects.get().progress
    assert progress["kind"] == "calibration" and progress["when"] == "manual"
    # a second demand while the first runs is refused
    response = operator.post("/api/observatory/calibrate/")
    assert response.status_code == 409 and "busy" in response.json()["detail"]


def test_calibrations_are_refused_while_a_sequence_runs(operator):
    seq = running_sequence()
    Sequence.objects.filter(pk=seq.pk).update(execution_heartbeat=timezone.now())
    assert operator.post("/api/observatory/calibrate/").status_code == 409


def test_the_tick_follows_the_sun_and_replans_at_night_start(demo, monkeypatch):
    from majordome.night import majordome_tick

    replans = []
    monkeypatch.setattr("majordome.night.schedule_request_replan", lambda **kw: replans.append(kw))
    ObservatoryState.objects.update(phase="dusk")
    majordome_tick()  # the demo site is dark now
    assert ObservatoryState.objects.get().phase == "night"
    assert replans == [{"reason": "night start"}]
    from pyrosapp.models import Log

    assert Log.objects.filter(component="majordome", message__contains="phase dusk -> night").exists()


def test_the_night_gets_the_telescope_ready_only_when_safe_and_automatic(demo, monkeypatch):
    from majordome import night

    started = []
    monkeypatch.setattr("majordome.night.get_observatory", lambda **kw: object())
    monkeypatch.setattr(night, "_in_thread", lambda what, action: started.append(what))
    parked = {"mount": {"parked": True}, "dome": {"shutter": "closed"}}
    ObservatoryState.objects.update(devices_snapshot=parked)
    assert night.ready_for_the_night(ObservatoryState.objects.get()) is True
    assert started == ["mount unpark", "dome open"]
    started.clear()
    ObservatoryState.objects.update(devices_snapshot={"mount": {"parked": False}, "dome": {"shutter": "open"}})
    assert night.ready_for_the_night(ObservatoryState.objects.get()) is False and started == []
    # the tick does it only at night, safe and automatic
    ObservatoryState.objects.update(devices_snapshot=parked, safety="unsafe")
    monkeypatch.setattr(night, "schedule_request_replan", lambda **kw: None)
    night.majordome_tick()
    assert started == []
