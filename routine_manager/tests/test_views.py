"""The request pages: editor (save/check/submit with errors on their fields), list, detail with plot, cancel."""

from __future__ import annotations

import json

import pytest
import time_machine
from django.urls import reverse

from pyrosapp.models import Request

from .helpers import NOW, make_observatory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def frozen_now():
    with time_machine.travel(NOW, tick=True):
        yield


@pytest.fixture
def obs(client):
    obs = make_observatory()
    client.force_login(obs.astronomer)
    return obs


def _post(obs, action: str, dec: str = "+47:11:43", **extra) -> dict:
    data = {
        "action": action, "name": "Two galaxies", "program": str(obs.program.pk),
        "s-0-target_name": "M51", "s-0-ra_deg": "13:29:52.7", "s-0-dec_deg": dec, "s-0-name": "",
        "s-0-window_start": "2026-12-16T17:00", "s-0-window_end": "2026-12-20T06:00", "s-0-priority": "5",
        "s-0-min_altitude_deg": "30", "s-0-min_moon_separation_deg": "30",
        "s-0-a-0-detector": "PyROS Camera",
        "s-0-a-0-p-0-filter": "R", "s-0-a-0-p-0-exposure_s": "60", "s-0-a-0-p-0-count": "5", "s-0-a-0-p-0-binning": "1",
        # A second sequence with rows renumbered by the browser (indices need not be contiguous).
        "s-7-target_name": "M101", "s-7-ra_deg": "210.802", "s-7-dec_deg": "54.349",
        "s-7-window_start": "2026-12-16T17:00", "s-7-window_end": "2026-12-20T06:00", "s-7-priority": "4",
        "s-7-a-1003-detector": "PyROS Camera",
        "s-7-a-1003-p-1004-filter": "V", "s-7-a-1003-p-1004-exposure_s": "30", "s-7-a-1003-p-1004-count": "2",
        "s-7-a-1003-p-1004-binning": "2",
    }
    data.update(extra)
    return data


def test_check_shows_the_unobservable_target_on_its_sequence_and_saves_nothing(client, obs):
    response = client.post(reverse("routine_manager:request_create"), _post(obs, "check", dec="-75"))
    assert response.status_code == 200
    page = response.content.decode()
    assert "never above 30.0 deg at night" in page
    assert 'id="check-result"' in page and "1 problem found" in page
    assert 'value="-75"' in page  # the user's input is kept
    assert Request.objects.count() == 0


def test_bad_exposure_is_shown_on_its_field(client, obs):
    response = client.post(reverse("routine_manager:request_create"),
                           _post(obs, "submit", **{"s-7-a-1003-p-1004-exposure_s": "-2"}))
    assert response.status_code == 400
    page = response.content.decode()
    # Errors come back on the renumbered rows: second sequence -> s-1, its first album/plan -> a-0/p-0.
    assert 'data-error-for="s-1-a-0-p-0-exposure_s"' in page
    assert Request.objects.count() == 0


def test_submit_then_list_detail_and_cancel(client, obs):
    response = client.post(reverse("routine_manager:request_create"), _post(obs, "submit"))
    assert response.status_code == 302, response.content.decode()[:2000]
    request = Request.objects.get()
    assert request.status == "submitted"
    assert [s.target_name for s in request.sequences.all()] == ["M51", "M101"]
    assert request.sequences.all()[1].albums.get().plans.get().binning == 2

    listing = client.get(reverse("routine_manager:request_list")).content.decode()
    assert "Two galaxies" in listing and 'data-status="submitted"' in listing
    assert "Two galaxies" not in client.get(reverse("routine_manager:request_list") + "?status=draft").content.decode()

    detail = client.get(reverse("routine_manager:request_detail", args=[request.pk]))
    assert detail.status_code == 200
    plots = json.loads(detail.context["plots_json"])
    assert len(plots) == 2 and plots[0]["limit_deg"] == 30.0 and len(plots[0]["nights"]) == 4
    assert "vendor/plotly/plotly.min.js" in detail.content.decode()

    client.post(reverse("routine_manager:request_cancel", args=[request.pk]))
    request.refresh_from_db()
    assert request.status == "cancelled"
    obs.allocation.refresh_from_db()
    assert obs.allocation.reserved_s == 0


def test_save_draft_edit_and_clone(client, obs):
    response = client.post(reverse("routine_manager:request_create"), _post(obs, "save"))
    draft = Request.objects.get()
    assert draft.status == "draft" and response.url == reverse("routine_manager:request_detail", args=[draft.pk])
    edit = client.get(reverse("routine_manager:request_edit", args=[draft.pk])).content.decode()
    assert 'value="M101"' in edit and "2026-12-16T17:00" in edit
    client.post(reverse("routine_manager:request_edit", args=[draft.pk]), _post(obs, "save", name="Renamed"))
    draft.refresh_from_db()
    assert draft.name == "Renamed" and draft.sequences.count() == 2
    response = client.post(reverse("routine_manager:request_clone", args=[draft.pk]))
    clone = Request.objects.exclude(pk=draft.pk).get()
    assert clone.name == "Renamed (copy)" and clone.status == "draft" and clone.sequences.count() == 2


def test_pages_of_another_astronomer_are_404(client, obs):
    client.post(reverse("routine_manager:request_create"), _post(obs, "submit"))
    request = Request.objects.get()
    from pyrosapp.tests.factories import UserFactory

    client.force_login(UserFactory(email="eve@example.org"))
    assert client.get(reverse("routine_manager:request_detail", args=[request.pk])).status_code == 404
    assert client.post(reverse("routine_manager:request_cancel", args=[request.pk])).status_code == 404
    assert Request.objects.get().status == "submitted"


def test_import_page_reports_rows(client, obs):
    from django.core.files.uploadedfile import SimpleUploadedFile

    csv_text = ("request,program,target,ra,dec,window_start,window_end,detector,filter,exposure_s,count\n"
                "A,Galaxies,M51,13:29:52.7,+47:11:43,2026-12-16T17:00:00Z,2026-12-20T06:00:00Z,PyROS Camera,Z,60,5\n")
    response = client.post(reverse("routine_manager:request_import"),
                           {"file": SimpleUploadedFile("a.csv", csv_text.encode()), "submit_after": "on"})
    assert response.status_code == 400
    assert "row 2" in response.content.decode() and "No filter" in response.content.decode()
