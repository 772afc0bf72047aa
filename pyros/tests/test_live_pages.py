"""Issue #16: the request page, the event page and the schedule follow by themselves: each polls a cheap
version endpoint (static/pyros/live.js) and redraws its live parts (or reloads) when the version changes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from pyrosapp import models as m
from pyrosapp.tests.factories import (
    AlbumFactory,
    FilterFactory,
    RequestFactory,
    SequenceFactory,
    SiteFactory,
    UserFactory,
)
from routine_manager import lifecycle
from routine_manager.services import sequence_set_status

pytestmark = pytest.mark.django_db


def _request(owner):
    request = RequestFactory(owner=owner, name="M51 live", status=lifecycle.SUBMITTED)
    sequence = SequenceFactory(request=request, status=lifecycle.PENDING)
    plan = m.Plan.objects.create(album=AlbumFactory(sequence=sequence), filter=FilterFactory(), exposure_s=60, count=3)
    return request, sequence, plan


def test_request_version_follows_status_and_images(client, django_assert_max_num_queries):
    owner = UserFactory(email="ada@example.org")
    request, sequence, plan = _request(owner)
    client.force_login(owner)
    page = client.get(reverse("routine_manager:request_detail", args=[request.pk])).content.decode()
    live_url = reverse("routine_manager:request_live", args=[request.pk])
    assert f'data-live-url="{live_url}"' in page and 'id="request-head" data-live' in page
    assert f'id="sequence-{sequence.pk}-state" data-live' in page and 'id="request-images" data-live' in page

    with django_assert_max_num_queries(8):  # session, user, visibility, then three small queries
        first = client.get(live_url).json()["version"]
    assert f'data-live-version="{first}"' in page
    assert client.get(live_url).json()["version"] == first  # nothing changed: same version

    sequence_set_status(sequence_id=sequence.pk, status=lifecycle.PLANNED)
    planned = client.get(live_url).json()["version"]
    assert planned != first
    m.Plan.objects.filter(pk=plan.pk).update(images_done=1)
    assert client.get(live_url).json()["version"] != planned

    client.force_login(UserFactory(email="eve@example.org"))
    assert client.get(live_url).status_code == 404  # another astronomer's request does not exist for them


def test_event_version_follows_the_request_and_notices(client):
    owner = UserFactory(email="op@example.org", role=m.User.Role.OPERATOR)
    request, sequence, _ = _request(owner)
    event = m.AlertEvent.objects.create(name="GRB 261204A", missions=["Swift"], burst_time=timezone.now(),
                                        ra_deg=10.0, dec_deg=20.0, error_deg=0.05, request=request,
                                        status=m.AlertEvent.Status.OBSERVING)
    client.force_login(owner)
    live_url = reverse("alert_manager:event_live", args=[event.pk])
    page = client.get(reverse("alert_manager:event_detail", args=[event.pk])).content.decode()
    first = client.get(live_url).json()["version"]
    assert f'data-live-url="{live_url}" data-live-version="{first}"' in page
    assert 'id="event-request" data-live' in page and 'id="notice-timeline" data-live' in page
    sequence_set_status(sequence_id=sequence.pk, status=lifecycle.PLANNED)
    assert client.get(live_url).json()["version"] != first
    assert client.get(reverse("alert_manager:event_live", args=[event.pk + 99])).status_code == 404


def test_schedule_version_changes_with_a_new_plan(client):
    site = SiteFactory(is_active=True)
    client.force_login(UserFactory(email="ada@example.org"))
    live_url = reverse("scheduler:live")
    empty = client.get(live_url).json()["version"]
    page = client.get(reverse("scheduler:current")).content.decode()
    assert f'data-live-url="{live_url}" data-live-version="{empty}" data-live-mode="reload"' in page
    now = timezone.now()
    m.Schedule.objects.create(site=site, plan_start=now, plan_end=now + timedelta(hours=8),
                              status=m.Schedule.Status.CURRENT)
    assert client.get(live_url).json()["version"] != empty


def test_browser_request_page_follows_by_itself(require_chromium, transactional_db, live_server, page):
    owner = UserFactory(email="ada@example.org", password="correct-horse-battery")
    request, sequence, _ = _request(owner)
    page.set_default_timeout(20_000)
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", "ada@example.org")
    page.fill("input[name=password]", "correct-horse-battery")
    page.click("button[type=submit]")
    page.goto(f"{live_server.url}/requests/{request.pk}/")
    assert page.inner_text("#request-status") == "Submitted"
    page.evaluate("window.__notReloaded = true")
    sequence_set_status(sequence_id=sequence.pk, status=lifecycle.PLANNED)
    page.wait_for_function("document.querySelector('#request-status').innerText === 'Scheduled'", timeout=15_000)
    assert page.evaluate("window.__notReloaded") is True  # redrawn in place, not reloaded
    assert "Planned" in page.inner_text(f"#sequence-{sequence.pk}-head")
    assert "updated" in page.inner_text("[data-live-stamp]")
