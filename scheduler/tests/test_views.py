"""Schedule pages: current plan, history, detail, replan (operators only), simulation upload."""

from __future__ import annotations

import html
import json
from pathlib import Path
from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from pyrosapp import models as m
from pyrosapp.tests import factories as f
from scheduler import services
from scheduler.tasks import make_schedule
from scheduler.tests.test_services import add_sequence, night  # noqa: F401  (fixture)

SETS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "scheduling"


@pytest.fixture
def astronomer_client(client):
    client.force_login(f.UserFactory(role=m.User.Role.ASTRONOMER))
    return client


@pytest.fixture
def operator_client(client):
    client.force_login(f.UserFactory(role=m.User.Role.OPERATOR))
    return client


@pytest.mark.django_db
def test_current_page_shows_the_planned_targets_the_rejected_and_the_chart(night, astronomer_client):  # noqa: F811
    add_sequence("M45")
    add_sequence("M42")
    add_sequence("Southern target", ra_dec=(90.0, -80.0))
    services.schedule_make(reason="test")

    response = astronomer_client.get(reverse("scheduler:current"))

    assert response.status_code == 200
    page = response.content.decode()
    planned_table = page.split('id="planned-table"')[1].split("</table>")[0]
    assert "M45" in planned_table and "M42" in planned_table and "Southern target" not in planned_table
    rejected_table = page.split('id="rejected-table"')[1].split("</table>")[0]
    assert "Southern target" in rejected_table and "not observable" in rejected_table
    timeline = response.context["timeline"]
    assert {e["target"] for e in timeline["entries"]} == {"M45", "M42"}
    assert {"day", "civil", "nautical", "astronomical", "night"} == {band["kind"] for band in timeline["twilight"]}
    assert timeline["now"] == "2026-12-16T22:00:00Z"
    assert 'id="timeline-data"' in page and "scheduler/timeline.js" in page and "plotly.min.js" in page
    # Astronomers see no replan button.
    assert "Replan now" not in page


@pytest.mark.django_db
def test_current_page_without_a_schedule_says_so(astronomer_client):
    response = astronomer_client.get(reverse("scheduler:current"))
    assert response.status_code == 200
    assert "No schedule yet" in response.content.decode()


@pytest.mark.django_db
def test_pages_need_a_login(client):
    response = client.get(reverse("scheduler:current"))
    assert response.status_code == 302 and "login" in response["Location"]


@pytest.mark.django_db
def test_history_lists_past_schedules_and_a_past_one_can_be_opened(night, astronomer_client):  # noqa: F811
    add_sequence("M45")
    first = services.schedule_make(reason="first run").schedule
    add_sequence("M1")
    second = services.schedule_make(reason="second run").schedule

    history = astronomer_client.get(reverse("scheduler:history")).content.decode()
    assert "first run" in history and "second run" in history
    assert reverse("scheduler:detail", args=[first.pk]) in history

    detail = astronomer_client.get(reverse("scheduler:detail", args=[first.pk]))
    assert detail.status_code == 200
    assert "Superseded" in detail.content.decode()
    assert [e["target"] for e in detail.context["timeline"]["entries"]] == ["M45"]
    assert {e["target"] for e in astronomer_client.get(reverse("scheduler:detail", args=[second.pk]))
            .context["timeline"]["entries"]} == {"M45", "M1"}
    assert astronomer_client.get(reverse("scheduler:detail", args=[second.pk + 100])).status_code == 404


@pytest.mark.django_db
def test_replan_is_for_operators_and_asks_for_a_run(night, operator_client, django_capture_on_commit_callbacks):  # noqa: F811
    page = operator_client.get(reverse("scheduler:current")).content.decode()
    assert "Replan now" in page
    with mock.patch.object(make_schedule, "apply_async") as apply_async:
        with django_capture_on_commit_callbacks(execute=True):
            response = operator_client.post(reverse("scheduler:replan"))
    assert response.status_code == 302
    assert apply_async.call_count == 1
    assert apply_async.call_args.kwargs["countdown"] == 0.0
    assert "replan asked by" in apply_async.call_args.kwargs["kwargs"]["reason"]
    assert operator_client.get(reverse("scheduler:replan")).status_code == 405


@pytest.mark.django_db
def test_astronomers_cannot_replan(astronomer_client):
    with mock.patch.object(make_schedule, "apply_async") as apply_async:
        response = astronomer_client.post(reverse("scheduler:replan"))
    assert response.status_code == 403
    assert apply_async.call_count == 0


@pytest.mark.django_db
def test_simulation_page_plans_an_uploaded_night(astronomer_client):
    path = SETS / "set_N50.json"
    if not path.exists():
        pytest.skip(f"shared data absent: {path}")
    upload = SimpleUploadedFile("set_N50.json", path.read_bytes(), content_type="application/json")

    response = astronomer_client.post(reverse("scheduler:simulate"), {"night_file": upload})

    assert response.status_code == 200
    result = response.context["result"]
    assert result["metrics"]["scheduled"] >= 15 and result["metrics"]["occupancy"] > 0.9
    page = response.content.decode()
    first = result["schedule"][0]["id"]
    assert first in page.split('id="simulation-schedule"')[1]
    timeline = response.context["timeline"]
    assert len(timeline["entries"]) == result["metrics"]["scheduled"]
    curves = timeline["altitudes"]
    assert curves and all(len(c["alt_deg"]) == len(timeline["times"]) for c in curves)
    # The chart's altitude curves agree with the plan: each target is up (>= 30 deg) during its block.
    entry = timeline["entries"][0]
    curve = next(c for c in curves if c["label"] == entry["label"])
    inside = [alt for t, alt in zip(timeline["times"], curve["alt_deg"], strict=True) if entry["start"] <= t <= entry["end"]]
    assert inside and min(inside) >= 29.5
    assert {"civil", "nautical", "astronomical", "day"} <= {band["kind"] for band in timeline["twilight"]}


@pytest.mark.django_db
@pytest.mark.parametrize(("content", "message"), [
    (b"this is not json", "not JSON"),
    (b"", "empty"),
    (b"\xff\xfe\x00garbage", "not UTF-8"),
    (b'{"meta": {}, "sequences": []}', "missing 'site'"),
    (b"[1, 2, 3]", "JSON object"),
    (b"[" * 100_000, "JSON"),
    (json.dumps({"meta": {"site": {"lat_deg": 43.9, "lon_deg": 5.7}, "night": {
        "start_utc": "2026-12-16T17:45:00Z", "end_utc": "2026-12-17T05:21:00Z"}},
        "sequences": [{"id": "a", "ra_deg": "ten", "dec_deg": 0, "duration_s": 60}]}).encode(), "ra_deg"),
    (b" " * (services.SIMULATION_MAX_BYTES + 10), "too big"),
    # A "night" of a century would ask the web process for a sky grid of 50 million samples.
    (json.dumps({"meta": {"site": {"lat_deg": 43.9, "lon_deg": 5.7}, "night": {
        "start_utc": "2026-12-16T17:45:00Z", "end_utc": "2126-12-17T05:21:00Z"}}, "sequences": []}).encode(),
     "at most 24 h"),
    (b'{"meta": {"site": {"lat_deg": NaN, "lon_deg": 5.7}, "night": {"start_utc": "2026-12-16T17:45:00Z", '
     b'"end_utc": "2026-12-17T05:21:00Z"}}, "sequences": []}', "latitude"),
])
def test_simulation_page_explains_a_bad_file(astronomer_client, content, message):
    upload = SimpleUploadedFile("night.json", content, content_type="application/json")

    response = astronomer_client.post(reverse("scheduler:simulate"), {"night_file": upload})

    assert response.status_code == 400
    assert message in html.unescape(response.content.decode())
    assert "result" not in response.context or not response.context["result"]


@pytest.mark.django_db
def test_simulation_page_without_a_file_asks_for_one(astronomer_client):
    response = astronomer_client.post(reverse("scheduler:simulate"), {})
    assert response.status_code == 400
    assert "This field is required" in response.content.decode()
    assert astronomer_client.get(reverse("scheduler:simulate")).status_code == 200


@pytest.mark.browser
@pytest.mark.slow
def test_the_timeline_is_drawn_in_a_browser(require_chromium, transactional_db,
                                            night, live_server, screenshot_dir, page):  # noqa: F811
    """Plotly really draws one bar per planned sequence, the twilight bands and the "now" line."""
    for name in ("M45", "M42", "M1"):
        add_sequence(name, duration_s=1200.0)
    services.schedule_make(reason="browser test")
    user = f.UserFactory(role=m.User.Role.OPERATOR)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(20_000)
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", user.email)
    page.fill("input[name=password]", "correct-horse-battery")
    page.click("button[type=submit]")

    page.goto(f"{live_server.url}{reverse('scheduler:current')}")
    page.wait_for_selector("#schedule-timeline .barlayer .point")

    assert page.locator("#schedule-timeline .barlayer .point").count() == 3
    # Shading: day, civil, nautical, astronomical on each side (8 rects), plus the "now" line.
    assert page.locator("#schedule-timeline .shapelayer path").count() >= 9
    assert "now 22:00" in page.inner_text("#schedule-timeline")
    assert page.locator("#schedule-altitude .scatterlayer .trace").count() == 6  # a thin and a thick line each
    assert errors == []
    page.screenshot(path=str(screenshot_dir / "scheduler_current.png"), full_page=True)
