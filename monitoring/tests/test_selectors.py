"""History reads of monitoring/selectors.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitoring import selectors
from pyrosapp import models as m

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 21, 3, 0, tzinfo=UTC)


def test_weather_history_is_oldest_first_within_the_span():
    for minutes in (10, 30, 70):
        m.WeatherReading.objects.create(time=NOW - timedelta(minutes=minutes), wind_m_s=float(minutes))
    m.WeatherReading.objects.create(time=NOW + timedelta(minutes=1), wind_m_s=99.0)  # after "now": excluded
    history = selectors.weather_history(hours=1, now=NOW)
    assert history["wind_m_s"] == [30.0, 10.0]
    assert history["time"] == ["2026-11-21T02:30:00Z", "2026-11-21T02:50:00Z"]


def test_long_histories_are_thinned_but_keep_the_newest_point():
    m.WeatherReading.objects.bulk_create([
        m.WeatherReading(time=NOW - timedelta(seconds=10 * k), wind_m_s=float(k)) for k in range(1000)])
    history = selectors.weather_history(hours=3, now=NOW, max_points=100)
    assert len(history["time"]) <= 100
    assert history["wind_m_s"][-1] == 0.0  # the newest reading
    assert history["wind_m_s"] == sorted(history["wind_m_s"], reverse=True)  # still in time order


def test_device_history_collects_numeric_values_and_states():
    m.DeviceStatus.objects.create(time=NOW - timedelta(minutes=20), device="mount", state="slewing",
                                  values={"ra_deg": 10.0, "tracking": False})
    m.DeviceStatus.objects.create(time=NOW - timedelta(minutes=10), device="mount", state="tracking",
                                  values={"ra_deg": 12.5, "alt_deg": 45.0, "tracking": True})
    m.DeviceStatus.objects.create(time=NOW - timedelta(minutes=5), device="dome", state="open", values={})
    history = selectors.device_status_history(device="mount", hours=1, now=NOW)
    assert history["state"] == ["slewing", "tracking"]
    assert history["values"] == {"ra_deg": [10.0, 12.5], "alt_deg": [None, 45.0]}  # booleans are not plotted
    assert selectors.device_names() == ["dome", "mount"]


def test_latest_weather():
    assert selectors.latest_weather() is None
    m.WeatherReading.objects.create(time=NOW - timedelta(minutes=5), wind_m_s=3.0)
    m.WeatherReading.objects.create(time=NOW - timedelta(minutes=1), wind_m_s=4.0, station_safe=False)
    latest = selectors.latest_weather()
    assert latest["wind_m_s"] == 4.0 and latest["station_safe"] is False
