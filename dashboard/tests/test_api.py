"""The dashboard's live endpoints: unchanged status costs nothing, logs come in id order with filters."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from django.db.models import F

from pyrosapp import models as m

pytestmark = pytest.mark.django_db


def _log(message: str, *, level: int = logging.INFO, component: str = "majordome") -> m.Log:
    return m.Log.objects.create(time=datetime.now(UTC), level=level, level_name=logging.getLevelName(level),
                                component=component, message=message)


def test_status_answers_204_while_the_version_has_not_moved(astronomer_client, site):
    first = astronomer_client.get("/api/dashboard/status/")
    assert first.status_code == 200
    body = first.json()
    assert body["version"] == 7 and body["phase"] == "night" and body["safe"] is True
    assert "start" in body["night"]

    unchanged = astronomer_client.get("/api/dashboard/status/?since_version=7")
    assert unchanged.status_code == 204
    assert unchanged.content == b""

    m.ObservatoryState.objects.filter(site=site).update(mode="paused", version=F("version") + 1)
    changed = astronomer_client.get("/api/dashboard/status/?since_version=7")
    assert changed.status_code == 200
    assert changed.json()["mode"] == "paused" and changed.json()["version"] == 8


def test_unchanged_status_is_a_single_query(astronomer_client, site, django_assert_max_num_queries):
    astronomer_client.get("/api/dashboard/status/")  # warm the session and the user
    # Session + user lookups of the authentication, then the one version read.
    with django_assert_max_num_queries(3):
        assert astronomer_client.get("/api/dashboard/status/?since_version=7").status_code == 204


def test_status_needs_a_login(client, site):
    assert client.get("/api/dashboard/status/").status_code in (401, 403)
    assert client.get("/api/logs/").status_code in (401, 403)


def test_status_without_a_site_says_so(astronomer_client):
    response = astronomer_client.get("/api/dashboard/status/")
    assert response.status_code == 503
    assert "seed_demo" in response.json()["detail"]


def test_logs_after_id_returns_only_newer_records_newest_first(operator_client):
    old = _log("old")
    newer = [_log(f"new {k}") for k in range(3)]
    body = operator_client.get(f"/api/logs/?after_id={old.pk}").json()
    assert [r["message"] for r in body["results"]] == ["new 2", "new 1", "new 0"]
    assert body["results"][0]["id"] == newer[-1].pk
    assert operator_client.get(f"/api/logs/?after_id={newer[-1].pk}").json()["results"] == []


def test_logs_before_id_pages_back(operator_client):
    records = [_log(f"line {k}") for k in range(10)]
    page = operator_client.get(f"/api/logs/?before_id={records[5].pk}&limit=3").json()["results"]
    assert [r["message"] for r in page] == ["line 4", "line 3", "line 2"]


def test_logs_filter_by_level_and_component(operator_client):
    _log("routine", level=logging.INFO, component="scheduler")
    _log("dome stuck", level=logging.ERROR, component="majordome")
    _log("wind high", level=logging.WARNING, component="monitoring")
    warnings_up = operator_client.get("/api/logs/?level=warning").json()["results"]
    assert {r["message"] for r in warnings_up} == {"dome stuck", "wind high"}
    majordome = operator_client.get("/api/logs/?component=majordome").json()["results"]
    assert [r["message"] for r in majordome] == ["dome stuck"]
    assert operator_client.get("/api/logs/?level=loud").status_code == 400
    assert operator_client.get("/api/logs/?after_id=x").status_code == 400


def test_a_pyros_logger_record_reaches_the_logs_endpoint(operator_client):
    logging.getLogger("pyros.observation_manager.services").warning("exposure 3/5 read out")
    results = operator_client.get("/api/logs/?component=observation_manager").json()["results"]
    assert results and results[0]["message"] == "exposure 3/5 read out"
    assert results[0]["level_name"] == "WARNING"


def test_weather_endpoint_returns_the_requested_span(astronomer_client):
    now = datetime.now(UTC)
    for minutes in (10, 50, 200):
        m.WeatherReading.objects.create(time=now - timedelta(minutes=minutes), wind_m_s=minutes / 10)
    body = astronomer_client.get("/api/dashboard/weather/?hours=1").json()
    assert body["wind_m_s"] == [5.0, 1.0]  # oldest first, the 200-minute-old reading left out
    assert astronomer_client.get("/api/dashboard/weather/?hours=abc").status_code == 400
