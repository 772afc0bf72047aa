"""Issue #16, "the UI must never lie": the alert banner, the event pages and the current-work panel say
what the executor does (ObservatoryState.progress / current_sequence, written by the majordome only),
not what an alert event hopes; calibrations and procedures show as executor work."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from alert_manager.selectors import alert_event_activity
from pyrosapp import models as m
from pyrosapp.tests.factories import SequenceFactory


def _burst(site, *, sequence_status="pending", planned_in_min=None):
    sequence = SequenceFactory(status=sequence_status, name="GRB 261204A",
                               planned_start=(datetime.now(UTC) + timedelta(minutes=planned_in_min))
                               if planned_in_min is not None else None,
                               planned_end=(datetime.now(UTC) + timedelta(minutes=planned_in_min + 10))
                               if planned_in_min is not None else None)
    event = m.AlertEvent.objects.create(name="GRB 261204A", missions=["Swift"], status="observing",
                                        burst_time=datetime.now(UTC) - timedelta(minutes=3),
                                        request=sequence.request, status_reason="pre-empting the telescope")
    m.Request.objects.filter(pk=sequence.request_id).update(alert_event=event, is_alert=True)
    return event, sequence


def _executing(site, sequence):
    m.ObservatoryState.objects.filter(site=site).update(
        current_sequence=sequence, progress={"kind": "sequence", "sequence": sequence.pk,
                                             "request": sequence.request_id, "name": sequence.name,
                                             "target": "GRB 261204A", "exposure": 2, "of": 5, "filter": "R"})


def _dome_closed(site, reasons=("rain 3 mm/h > 0 mm/h",)):
    # What the majordome leaves after making the observatory safe: nothing executing, closed and parked.
    m.ObservatoryState.objects.filter(site=site).update(
        current_sequence=None, progress={}, safety="unsafe", safety_reasons=list(reasons),
        devices_snapshot={"dome": {"shutter": "closed"}, "mount": {"state": "parked"}})


@pytest.mark.django_db
def test_banner_says_not_observed_when_the_sequence_is_not_executing(astronomer_client, site):
    event, _ = _burst(site)
    _dome_closed(site)
    html = astronomer_client.get("/dashboard/alert-banner/").content.decode()
    assert "being observed now" not in html
    assert "not being observed" in html and "dome closed" in html and "mount parked" in html
    assert "not safe: rain 3 mm/h" in html
    assert 'data-activity="waiting"' in html and "alert-warning" in html
    page = astronomer_client.get(f"/alerts/{event.pk}/").content.decode()
    assert "not being observed" in page and ">Observing<" not in page
    listing = astronomer_client.get("/alerts/").content.decode()
    assert "not being observed" in listing


@pytest.mark.django_db
def test_banner_says_observed_only_while_the_executor_exposes_on_it(astronomer_client, site):
    event, sequence = _burst(site, sequence_status="executing")
    _executing(site, sequence)
    html = astronomer_client.get("/dashboard/alert-banner/").content.decode()
    assert "being observed now: GRB 261204A, exposure 2/5 in R" in html and "alert-danger" in html
    other = SequenceFactory(name="M51 survey")
    _executing(site, other)
    activity = alert_event_activity(event)
    assert activity.code == "waiting" and "the telescope is on M51 survey" in activity.text


@pytest.mark.django_db
def test_a_planned_burst_says_when(site):
    event, _ = _burst(site, sequence_status="planned", planned_in_min=20)
    activity = alert_event_activity(event)
    assert activity.code == "planned" and re.search(r"planned at \d\d:\d\d:\d\d UTC \(in (19|20) min\)", activity.text)


@pytest.mark.django_db
def test_calibrations_and_procedures_show_as_executor_work(operator_client, site):
    m.ObservatoryState.objects.filter(site=site).update(
        progress={"kind": "calibration", "token": "t", "step": "bias 3/10", "when": "dusk"})
    status = operator_client.get("/api/observatory/status/").json()
    assert status["activity"] == {"kind": "calibration", "text": "taking calibrations (dusk): bias 3/10"}
    html = operator_client.get("/").content.decode()
    assert 'id="current-activity" class="fw-semibold text-info">taking calibrations (dusk): bias 3/10' in html
    assert re.search(r'id="current-none" class="[^"]*d-none', html)
    m.ObservatoryState.objects.filter(site=site).update(
        progress={"kind": "procedure", "token": "t", "name": "focus sweep", "current": 3, "total": 9,
                  "step": "V-curve"})
    status = operator_client.get("/api/observatory/status/").json()
    assert status["activity"]["text"] == "running procedure focus sweep 3/9: V-curve"


@pytest.mark.browser
@pytest.mark.slow
def test_browser_banner_and_status_follow_the_executor_when_the_dome_closes(require_chromium, transactional_db,
                                                                           live_server, page, screenshot_dir):
    """An alert is being observed; the weather turns and the majordome closes the dome, parks and stops
    the sequence: without a reload the banner, the event status and the current panel say so."""
    from pyros.demo import seed_demo

    seed = seed_demo()
    site = seed.site
    m.ObservatoryState.objects.filter(site=site).update(phase="night", safety="safe", mode="automatic")
    event, sequence = _burst(site, sequence_status="executing")
    _executing(site, sequence)
    email, password = seed.credentials["operator"]
    page.set_default_timeout(20_000)
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", email)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_selector("#dashboard")
    assert "being observed now" in page.inner_text("#alert-banner")

    _dome_closed(site)
    m.ObservatoryState.objects.filter(site=site).update(version=m.ObservatoryState.objects.get(site=site).version + 1)
    page.wait_for_function("document.querySelector('#alert-banner') && "
                           "document.querySelector('#alert-banner').dataset.activity === 'waiting'", timeout=15_000)
    banner = page.inner_text("#alert-banner")
    assert "being observed now" not in banner and "dome closed" in banner and "mount parked" in banner
    page.wait_for_function("!document.querySelector('#current-none').classList.contains('d-none')", timeout=15_000)
    assert "not safe" in page.inner_text("#current-none")
    page.screenshot(path=str(screenshot_dir / "dashboard_banner_dome_closed.png"), full_page=True)
    page.goto(f"{live_server.url}/alerts/{event.pk}/")
    assert "not being observed" in page.inner_text("main h1 + .badge")
