"""The dashboard page: what astronomers and operators see."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pyrosapp import models as m
from pyrosapp.tests.factories import RequestFactory, SequenceFactory

pytestmark = pytest.mark.django_db


def test_home_is_the_page_after_login(client, astronomer, site):
    response = client.post("/accounts/login/", {"username": astronomer.email, "password": "correct-horse-battery"},
                           follow=True)
    assert response.redirect_chain[-1][0] == "/"
    assert b'id="dashboard"' in response.content


def test_anonymous_visitors_go_to_the_login_page(client, site):
    response = client.get("/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_operator_sees_the_controls(operator_client, site):
    html = operator_client.get("/").content.decode()
    assert 'id="operator-controls"' in html
    for action in ("pause", "resume", "stop", "abort", "close"):
        assert f'data-control="{action}"' in html
    assert 'id="my-requests-card"' not in html


def test_astronomer_sees_no_controls_but_their_requests(astronomer_client, astronomer, site):
    RequestFactory(owner=astronomer, name="M51 deep field", status="submitted")
    RequestFactory(name="Someone else's request")
    html = astronomer_client.get("/").content.decode()
    assert "data-control=" not in html and 'id="operator-controls"' not in html
    assert "M51 deep field" in html and "Submitted" in html
    assert "Someone else&#x27;s request" not in html and "Someone else's request" not in html


def test_status_is_rendered_server_side(operator_client, site):
    m.ObservatoryState.objects.filter(site=site).update(
        mode="paused", safety="unsafe", safety_reasons=["wind 18.0 m/s > 15.0"],
        devices_snapshot={"dome": {"shutter": "closed", "azimuth_deg": 180.0},
                          "mount": {"ra_deg": 10.5, "dec_deg": -20.25, "state": "parked"},
                          "weather": {"wind_m_s": 18.0, "humidity_pct": 40.0}})
    html = operator_client.get("/").content.decode()
    assert 'id="mode">paused' in html
    assert 'id="safety">unsafe' in html and "wind 18.0 m/s &gt; 15.0" in html
    assert 'id="dome-shutter">closed' in html and 'id="mount-state">parked' in html


def test_current_sequence_shows_its_progress(operator_client, site):
    sequence = SequenceFactory(name="GRB 261121A follow-up", target_name="GRB 261121A", status="executing")
    m.ObservatoryState.objects.filter(site=site).update(current_sequence=sequence, progress={
        "sequence": sequence.pk, "name": sequence.name, "target": sequence.target_name, "plan_index": 1,
        "plans_total": 2, "exposure": 2, "of": 4, "exposure_s": 30, "fraction": 0.25, "step": "exposing",
        "exposure_started": datetime.now(UTC).isoformat()})
    html = operator_client.get("/").content.decode()
    assert "GRB 261121A follow-up" in html
    assert 'id="sequence-progress-bar" style="width: 25%"' in html


def test_my_requests_fragment_shows_the_next_planned_observation(astronomer_client, astronomer, site):
    request = RequestFactory(owner=astronomer, name="SN follow-up", status="scheduled")
    sequence = SequenceFactory(request=request, target_name="SN 2026abc", status="planned")
    schedule = m.Schedule.objects.create(site=site, status="current", plan_start=datetime.now(UTC),
                                         plan_end=datetime.now(UTC) + timedelta(hours=8))
    start = datetime.now(UTC) + timedelta(hours=1)
    m.ScheduleHasSequences.objects.create(schedule=schedule, sequence=sequence, status="planned", tsp=start,
                                          tep=start + timedelta(minutes=20))
    html = astronomer_client.get("/dashboard/my-requests/").content.decode()
    assert "SN 2026abc" in html and start.strftime("%H:%M") in html


def test_timeline_data_is_the_schedulers_chart(astronomer_client, site):
    assert astronomer_client.get("/dashboard/timeline.json").json() == {"schedule": None}
    schedule = m.Schedule.objects.create(site=site, status="current", plan_start=datetime.now(UTC),
                                         plan_end=datetime.now(UTC) + timedelta(hours=8))
    body = astronomer_client.get("/dashboard/timeline.json").json()
    assert body["schedule"] == schedule.pk
    assert body["timeline"]["now"] is not None and body["timeline"]["entries"] == []


def test_alert_banner_fragment_is_empty_without_an_alert(astronomer_client, site):
    response = astronomer_client.get("/dashboard/alert-banner/")
    assert response.status_code == 200
    assert b"alert-banner" not in response.content


def test_safety_alarm_watchdog_and_idle_reason_are_shown(operator_client, site):
    m.ObservatoryState.objects.filter(site=site).update(
        mode="automatic", phase="night", safety="unsafe", safety_reasons=["rain 5 mm/h > 0 mm/h"],
        devices_snapshot={"dome": {"shutter": "open"}, "mount": {"state": "tracking"},
                          "watchdog": {"status": "armed", "heartbeat_timeout_s": 60.0},
                          "safety_alarm": {"since": "2026-01-01T00:00:00+00:00", "problems": ["dome close repeated"]}})
    html = operator_client.get("/").content.decode()
    assert 'id="safety-alarm">ALARM: dome not confirmed closed' in html and "dome close repeated" in html
    assert 'id="watchdog-status">armed' in html
    assert "No sequence is executing<span id=\"idle-reason\">: not safe: rain 5 mm/h &gt; 0 mm/h" in html
