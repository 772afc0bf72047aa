"""REST API of requests: create, validate, list, detail, cancel, import; field errors by path; visibility."""

from __future__ import annotations

import copy
import io
from datetime import datetime, timedelta

import pytest
import time_machine
from django.core.management import call_command
from rest_framework.test import APIClient

from pyrosapp.models import Allocation, Request
from pyrosapp.tests.factories import ProgramFactory, UserFactory
from routine_manager import services

from .helpers import NOW, m51_data, make_observatory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def frozen_now():
    with time_machine.travel(NOW, tick=True):
        yield


@pytest.fixture
def obs():
    return make_observatory()


@pytest.fixture
def api(obs):
    client = APIClient()
    client.force_authenticate(obs.astronomer)
    return client


def test_create_validate_detail_list_with_token(obs):
    token = io.StringIO()
    call_command("create_api_token", obs.astronomer.email, stdout=token)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.getvalue().strip()}")

    report = client.post("/api/requests/validate/", m51_data(obs.program.pk), format="json")
    assert report.status_code == 200, report.json()
    body = report.json()
    assert body["valid"] is True
    # 5 x (60 s + 0.5 s readout) + 1 filter change 2 s + slew 60/5 + settle 3 + acquisition 10
    assert body["duration_s"] == pytest.approx(5 * 60.5 + 2 + 12 + 3 + 10)
    windows = body["sequences"][0]["observable_windows"]
    assert len(windows) >= 3  # one per night, M51 rises above 30 deg before every dawn
    assert all(w[0] >= "2026-12-16T17:00:00Z" and w[1] <= "2026-12-20T06:00:00Z" for w in windows)
    assert Request.objects.count() == 0  # a dry run writes nothing

    created = client.post("/api/requests/", m51_data(obs.program.pk), format="json")
    assert created.status_code == 201, created.json()
    request = created.json()
    assert request["status"] == "submitted"
    assert request["sequences"][0]["status"] == "pending"
    assert request["sequences"][0]["albums"][0]["plans"][0] == {
        "filter": "R", "exposure_s": 60.0, "count": 5, "binning": 1, "status": "pending", "images_done": 0}
    obs.allocation.refresh_from_db()
    assert obs.allocation.reserved_s == pytest.approx(body["duration_s"])

    detail = client.get(f"/api/requests/{request['id']}/")
    assert detail.status_code == 200 and detail.json()["name"] == "M51 monitoring"
    listing = client.get("/api/requests/").json()
    assert [r["id"] for r in listing["results"]] == [request["id"]]


def test_draft_stays_draft_and_reserves_nothing(api, obs):
    data = m51_data(obs.program.pk, draft=True)
    response = api.post("/api/requests/", data, format="json")
    assert response.status_code == 201
    assert response.json()["status"] == "draft"
    obs.allocation.refresh_from_db()
    assert obs.allocation.reserved_s == 0
    submitted = api.post(f"/api/requests/{response.json()['id']}/submit/")
    assert submitted.status_code == 200 and submitted.json()["status"] == "submitted"


def _set(data: dict, path: str, value) -> dict:
    data = copy.deepcopy(data)
    node = data
    keys = path.replace("[", ".").replace("]", "").split(".")
    for key in keys[:-1]:
        node = node[int(key)] if key.isdigit() else node[key]
    last = keys[-1]
    if value is _DELETE:
        del node[last]
    else:
        node[int(last) if last.isdigit() else last] = value
    return data


_DELETE = object()
P0 = "sequences[0].albums[0].plans[0]"
BAD_VALUES = [
    ("name", "", "name"),
    ("program", 999999, "program"),
    ("program", [1], "program"),
    ("sequences", "M51", "sequences"),
    ("sequences", [], "sequences"),
    ("sequences[0].target.ra_deg", 400, "sequences[0].target.ra_deg"),
    ("sequences[0].target.ra_deg", "abc", "sequences[0].target.ra_deg"),
    ("sequences[0].target.ra_deg", "25:00:00", "sequences[0].target.ra_deg"),
    ("sequences[0].target.dec_deg", 95, "sequences[0].target.dec_deg"),
    ("sequences[0].target.dec_deg", None, "sequences[0].target.dec_deg"),
    ("sequences[0].target.name", "", "sequences[0].target.name"),
    ("sequences[0].target", "M51", "sequences[0].target"),
    ("sequences[0].window.start", "tomorrow", "sequences[0].window.start"),
    ("sequences[0].window.start", "2026-12-16T17:00:00", "sequences[0].window.start"),
    ("sequences[0].window.end", "2026-12-15T06:00:00Z", "sequences[0].window.end"),
    ("sequences[0].window", _DELETE, "sequences[0].window"),
    ("sequences[0].priority", 9, "sequences[0].priority"),
    ("sequences[0].priority", "high", "sequences[0].priority"),
    ("sequences[0].preferred_start", "2027-01-05T00:00:00Z", "sequences[0].preferred_start"),
    ("sequences[0].tolerance_early_s", -5, "sequences[0].tolerance_early_s"),
    ("sequences[0].constraints.min_altitude_deg", 95, "sequences[0].constraints.min_altitude_deg"),
    ("sequences[0].constraints.max_airmass", 0.5, "sequences[0].constraints.max_airmass"),
    ("sequences[0].constraints.min_moon_separation_deg", 200, "sequences[0].constraints.min_moon_separation_deg"),
    ("sequences[0].constraints.min_moon_separation_deg", True, "sequences[0].constraints.min_moon_separation_deg"),
    ("sequences[0].windw", {}, "sequences[0].windw"),
    ("sequences[0].albums", [], "sequences[0].albums"),
    ("sequences[0].albums[0].detector", "Nope", "sequences[0].albums[0].detector"),
    ("sequences[0].albums[0].plans", None, "sequences[0].albums[0].plans"),
    (f"{P0}.filter", "Q", f"{P0}.filter"),
    (f"{P0}.exposure_s", -1, f"{P0}.exposure_s"),
    (f"{P0}.exposure_s", "1e9", f"{P0}.exposure_s"),
    (f"{P0}.exposure_s", "NaN", f"{P0}.exposure_s"),
    (f"{P0}.count", 0, f"{P0}.count"),
    (f"{P0}.count", 2.5, f"{P0}.count"),
    (f"{P0}.binning", 9, f"{P0}.binning"),
]


@pytest.mark.parametrize("path,value,error_path", BAD_VALUES, ids=[f"{p}={v!r}" for p, v, _ in BAD_VALUES])
def test_every_bad_value_is_a_400_at_its_path(api, obs, path, value, error_path):
    data = _set(m51_data(obs.program.pk), path, value)
    for url in ("/api/requests/validate/", "/api/requests/"):
        response = api.post(url, data, format="json")
        assert response.status_code == 400, response.content
        body = response.json()
        assert body["valid"] is False
        assert error_path in body["errors"], body["errors"]
        assert all(isinstance(m, str) and m for m in body["errors"][error_path])
    assert Request.objects.count() == 0


def test_not_json_and_not_an_object_are_400(api, obs):
    assert api.post("/api/requests/", "{not json", content_type="application/json").status_code == 400
    response = api.post("/api/requests/", [1, 2], format="json")
    assert response.status_code == 400 and "request" in response.json()["errors"]


def test_unobservable_target_says_when_and_why(api, obs):
    data = _set(m51_data(obs.program.pk), "sequences[0].target.dec_deg", -70.0)
    body = api.post("/api/requests/validate/", data, format="json").json()
    message = body["errors"]["sequences[0].target"][0]
    assert "never above 30.0 deg at night" in message
    assert "2026-12-16 17:00" in message


def test_window_in_the_past_is_refused(api, obs):
    data = _set(m51_data(obs.program.pk), "sequences[0].window", {"start": "2026-12-10T17:00:00Z",
                                                                  "end": "2026-12-12T06:00:00Z"})
    body = api.post("/api/requests/validate/", data, format="json").json()
    assert "move it to the future" in body["errors"]["sequences[0].window.end"][0]


def test_another_astronomers_request_is_invisible_and_cannot_be_cancelled(api, obs):
    created = api.post("/api/requests/", m51_data(obs.program.pk), format="json").json()
    stranger = APIClient()
    stranger.force_authenticate(UserFactory(email="eve@example.org"))
    assert stranger.get(f"/api/requests/{created['id']}/").status_code == 404
    assert stranger.post(f"/api/requests/{created['id']}/cancel/").status_code == 404
    assert stranger.get("/api/requests/").json()["results"] == []
    assert Request.objects.get(pk=created["id"]).status == "submitted"

    # A fellow member sees it but may not cancel it; an operator sees everything.
    colleague = UserFactory(email="bob@example.org")
    obs.program.members.add(colleague)
    member = APIClient()
    member.force_authenticate(colleague)
    assert member.get(f"/api/requests/{created['id']}/").status_code == 200
    assert member.post(f"/api/requests/{created['id']}/cancel/").status_code == 403
    operator = APIClient()
    operator.force_authenticate(UserFactory(email="op@example.org", role="operator"))
    assert [r["id"] for r in operator.get("/api/requests/").json()["results"]] == [created["id"]]


def test_not_a_member_of_the_program(obs):
    outsider = UserFactory(email="out@example.org")
    client = APIClient()
    client.force_authenticate(outsider)
    body = client.post("/api/requests/", m51_data(obs.program.pk), format="json").json()
    assert "not a member" in body["errors"]["program"][0]


def test_cancel_refunds_the_reservation(api, obs):
    created = api.post("/api/requests/", m51_data(obs.program.pk), format="json").json()
    obs.allocation.refresh_from_db()
    assert obs.allocation.reserved_s > 0
    response = api.post(f"/api/requests/{created['id']}/cancel/", {"reason": "weather"}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["sequences"][0]["status"] == "cancelled"
    obs.allocation.refresh_from_db()
    assert obs.allocation.reserved_s == 0
    assert api.post(f"/api/requests/{created['id']}/cancel/").status_code == 409


def test_cancel_while_executing_refunds_unused_time(api, obs):
    created = api.post("/api/requests/", m51_data(obs.program.pk), format="json").json()
    sequence_id = created["sequences"][0]["id"]
    services.sequence_set_status(sequence_id=sequence_id, status="executing", started_at=NOW)
    assert Request.objects.get(pk=created["id"]).status == "executing"
    services.sequence_record_time_used(sequence_id=sequence_id, used_s=100.0)
    response = api.post(f"/api/requests/{created['id']}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    allocation = Allocation.objects.get(pk=obs.allocation.pk)
    assert allocation.used_s == pytest.approx(100.0)
    assert allocation.reserved_s == 0


def test_quota_exhaustion_is_refused(obs):
    Allocation.objects.filter(pk=obs.allocation.pk).update(allocated_s=600.0)
    client = APIClient()
    client.force_authenticate(obs.astronomer)
    first = client.post("/api/requests/", m51_data(obs.program.pk), format="json")
    assert first.status_code == 201  # 327 s of 600 s
    second = client.post("/api/requests/", m51_data(obs.program.pk), format="json")
    assert second.status_code == 400
    assert "remain on program" in second.json()["errors"]["program"][0]
    assert Request.objects.count() == 1


def test_expiry_refunds_and_marks_expired(api, obs):
    created = api.post("/api/requests/", m51_data(obs.program.pk), format="json").json()
    assert services.requests_expire(now=NOW + timedelta(days=3)) == 0
    assert services.requests_expire(now=datetime.fromisoformat("2026-12-20T06:00:01+00:00")) == 1
    request = Request.objects.get(pk=created["id"])
    assert request.status == "expired"
    assert request.sequences.get().status == "expired"
    obs.allocation.refresh_from_db()
    assert obs.allocation.reserved_s == 0


CSV_HEADER = ("request,program,sequence,target,ra,dec,window_start,window_end,priority,min_altitude_deg,"
              "detector,filter,exposure_s,count\n")


def _csv_row(request="Galaxies", sequence="M51", ra="13:29:52.7", dec="+47:11:43", filt="R", exposure="60",
             program="Galaxies"):
    return (f"{request},{program},{sequence},{sequence},{ra},{dec},2026-12-16T17:00:00Z,2026-12-20T06:00:00Z,5,30,"
            f"PyROS Camera,{filt},{exposure},3\n")


def test_csv_import_all_or_nothing_with_row_errors(api, obs):
    good = CSV_HEADER + _csv_row() + _csv_row(filt="V") + _csv_row(request="Other", sequence="M101", ra="210.80",
                                                                    dec="54.35")
    upload = io.BytesIO(good.encode())
    upload.name = "batch.csv"
    response = api.post("/api/requests/import/", {"file": upload}, format="multipart")
    assert response.status_code == 201, response.json()
    assert response.json()["imported"] == 2
    m51 = Request.objects.get(name="Galaxies")
    assert [p.filter.name for p in m51.sequences.get().albums.get().plans.all()] == ["R", "V"]

    bad = CSV_HEADER + _csv_row(request="A") + _csv_row(request="B", exposure="-3") + _csv_row(request="C", dec="-80")
    upload = io.BytesIO(bad.encode())
    upload.name = "bad.csv"
    response = api.post("/api/requests/import/", {"file": upload}, format="multipart")
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert {"location": "row 3", "field": "exposure_s"}.items() <= errors[0].items()
    assert any(e["location"] == "row 4" and "never above" in e["message"] for e in errors)
    assert Request.objects.count() == 2  # nothing from the bad file


def test_json_import_and_missing_columns(api, obs):
    batch = [m51_data(obs.program.pk), m51_data(obs.program.pk, name="Second")]
    response = api.post("/api/requests/import/?draft=true", batch, format="json")
    assert response.status_code == 201
    assert sorted(Request.objects.values_list("status", flat=True)) == ["draft", "draft"]

    upload = io.BytesIO(b"request,target\nx,y\n")
    upload.name = "x.csv"
    response = api.post("/api/requests/import/", {"file": upload}, format="multipart")
    assert response.status_code == 400
    assert "missing column(s)" in response.json()["errors"][0]["message"]


def test_schema_lists_the_request_paths(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    for path in ("/api/requests/", "/api/requests/validate/", "/api/requests/{id}/cancel/",
                 "/api/requests/import/"):
        assert path in schema["paths"]
    assert ProgramFactory  # factories stay importable for other tests
