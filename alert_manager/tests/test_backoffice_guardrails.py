"""Issue #16, guardrails in the backoffice: a strategy template naming a detector, filter, exposure or binning
the telescope does not have is refused when saved; statuses, used and reserved time are read-only."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from django.urls import reverse

from alert_manager.strategies import default_template
from pyrosapp import models as m
from pyrosapp.tests.factories import DetectorFactory, FilterFactory, RequestFactory, SequenceFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    client.force_login(UserFactory(email="boss@example.org", role=m.User.Role.ADMINISTRATOR, is_staff=True,
                                   is_superuser=True))
    return client


@pytest.fixture
def camera():
    detector = DetectorFactory(name="PyROS Camera", max_binning=2)
    detector.telescope.site.is_active = True
    detector.telescope.site.save()
    wheel = m.FilterWheel.objects.create(telescope=detector.telescope, name="Wheel")
    for slot, name in enumerate(("V", "R", "I"), start=1):
        FilterFactory(wheel=wheel, name=name, slot=slot)
    detector.filter_wheel = wheel
    detector.save()
    return detector


def _post_strategy(admin_client, template) -> tuple[int, str]:
    response = admin_client.post(reverse("admin:pyrosapp_strategy_add"), {
        "name": "GRB test", "missions": '["Swift"]', "notice_types": "[]", "triggers": "on",
        "template": json.dumps(template), "min_altitude_deg": "20",
        "max_error_deg": "0.5", "is_active": "on", "tile_large_localisations": "", "max_tiles": "10",
        "tile_coverage": "0.9"})
    return response.status_code, response.content.decode()


@pytest.mark.parametrize(("change", "message"), [
    ({"detector": "Big Camera"}, "no detector named &#x27;Big Camera&#x27;"),
    ({"filter": "Halpha"}, "PyROS Camera has no filter &#x27;Halpha&#x27; (its filters: V, R, I)"),
    ({"exposure_s": 100000}, "exposure 100000 s is above"),
    ({"binning": 4}, "PyROS Camera bins at most 2x"),
])
def test_a_template_asking_for_missing_equipment_is_refused(admin_client, camera, change, message):
    template = default_template()
    album = template["sequences"][0]["albums"][0]
    if "detector" in change:
        album["detector"] = change["detector"]
    else:
        album["plans"][0].update(change)
    status, page = _post_strategy(admin_client, template)
    assert status == 200 and message in page, page[page.find("errorlist"):][:400]
    assert not m.Strategy.objects.filter(name="GRB test").exists()


def test_a_template_the_telescope_can_do_is_saved(admin_client, camera):
    template = default_template()
    template["sequences"][0]["albums"][0]["detector"] = "PyROS Camera"
    status, page = _post_strategy(admin_client, template)
    assert status == 302, page[page.find("errorlist"):][:400]
    assert m.Strategy.objects.filter(name="GRB test").exists()


def test_statuses_and_used_time_are_read_only(admin_client):
    request = RequestFactory(status="submitted", used_s=0.0)
    sequence = SequenceFactory(request=request, status="pending")
    page = admin_client.get(reverse("admin:pyrosapp_request_change", args=[request.pk])).content.decode()
    assert 'name="status"' not in page and 'name="used_s"' not in page and 'name="reserved_s"' not in page
    assert 'name="sequences-0-status"' not in page
    page = admin_client.get(reverse("admin:pyrosapp_sequence_change", args=[sequence.pk])).content.decode()
    assert 'name="status"' not in page and 'name="used_s"' not in page

    program = request.program
    period = m.Period.objects.create(name="2026B", start=datetime(2026, 7, 1, tzinfo=UTC),
                                     end=datetime(2027, 1, 1, tzinfo=UTC))
    allocation = m.Allocation.objects.create(program=program, period=period, allocated_s=3600.0, used_s=120.0)
    url = reverse("admin:pyrosapp_allocation_change", args=[allocation.pk])
    page = admin_client.get(url).content.decode()
    assert 'name="allocated_s"' in page and 'name="used_s"' not in page and 'name="reserved_s"' not in page
    admin_client.post(url, {"program": program.pk, "period": period.pk, "allocated_s": "7200", "used_s": "0",
                            "reserved_s": "0"})
    allocation.refresh_from_db()
    assert (allocation.allocated_s, allocation.used_s) == (7200.0, 120.0)  # the time given changes, not the time used
