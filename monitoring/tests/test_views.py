"""Monitoring pages: weather/PLC history with a selectable span, one page per device, operators only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pyrosapp import models as m
from pyrosapp.tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator_client(client):
    client.force_login(UserFactory(email="op@example.org", role=m.User.Role.OPERATOR))
    return client


@pytest.fixture
def history():
    now = datetime.now(UTC)
    for minutes in (5, 90, 300):
        m.WeatherReading.objects.create(time=now - timedelta(minutes=minutes), wind_m_s=minutes / 10.0,
                                        humidity_pct=50.0, rain_mm_h=0.0, temperature_c=8.5, station_safe=True)
    m.DeviceStatus.objects.create(time=now - timedelta(minutes=30), device="dome", state="open",
                                  values={"shutter": "open", "azimuth_deg": 120.0})
    m.DeviceStatus.objects.create(time=now - timedelta(minutes=1), device="dome", state="closed",
                                  values={"shutter": "closed", "azimuth_deg": 180.0})
    return now


def test_weather_page_shows_the_selected_span(operator_client, history):
    one_hour = operator_client.get("/monitoring/weather/?hours=1")
    assert one_hour.status_code == 200
    assert one_hour.context["history"]["wind_m_s"] == [0.5]
    six_hours = operator_client.get("/monitoring/weather/?hours=6")
    assert six_hours.context["history"]["wind_m_s"] == [30.0, 9.0, 0.5]
    assert b'id="plot-wind"' in six_hours.content and b"Latest reading" in six_hours.content


def test_weather_data_reloads_without_the_page(operator_client, history):
    body = operator_client.get("/monitoring/weather/data/?hours=2").json()
    assert body["wind_m_s"] == [9.0, 0.5] and body["station_safe"] == [True, True]


def test_weather_page_before_any_reading(operator_client):
    response = operator_client.get("/monitoring/weather/")
    assert response.status_code == 200 and b"No weather reading yet" in response.content


def test_device_page_shows_its_recent_status(operator_client, history):
    response = operator_client.get("/monitoring/devices/dome/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="device-state">closed' in html
    assert response.context["history"]["values"]["azimuth_deg"] == [120.0, 180.0]
    assert html.index("azimuth_deg=180.0") < html.index("azimuth_deg=120.0")  # newest first
    assert operator_client.get("/monitoring/devices/telescope-that-never-was/").status_code == 404


def test_device_list_links_every_device(operator_client, history):
    html = operator_client.get("/monitoring/devices/").content.decode()
    assert 'href="/monitoring/devices/dome/"' in html


def test_weather_appears_in_the_operators_navigation(operator_client, client):
    assert b'href="/monitoring/weather/"' in operator_client.get("/monitoring/weather/").content


def test_astronomers_may_not_open_monitoring_pages(client, history):
    client.force_login(UserFactory(email="ada@example.org", role=m.User.Role.ASTRONOMER))
    assert client.get("/monitoring/weather/").status_code == 403
    assert client.get("/monitoring/devices/dome/").status_code == 403
    assert b'href="/monitoring/weather/"' not in client.get("/").content
