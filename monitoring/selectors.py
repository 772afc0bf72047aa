"""Reads of the monitoring history (weather readings, device statuses) for the dashboard and the
monitoring pages. Writes (polling, safety) live in monitoring/services.py and monitoring/safety.py.

History reads return plain, JSON-ready column dicts (one list per quantity) because that is what a
plot wants, and because a column layout is ~3x smaller on the wire than a list of row objects.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.utils import timezone

from pyrosapp.models import DeviceStatus, WeatherReading

# Quantities of a WeatherReading, in the order the plots show them (unit in the name).
WEATHER_FIELDS = ("wind_m_s", "gust_m_s", "humidity_pct", "rain_mm_h", "temperature_c", "cloud_cover_pct")
# A history read never returns more than this many points: a plot is a few hundred pixels wide, and an
# unbounded read of a week at a 10 s cadence (60 000 rows) would make the page and the server slow.
MAX_POINTS = 2000
MAX_HOURS = 7 * 24.0


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _clamp_hours(hours: float) -> float:
    return max(0.05, min(float(hours), MAX_HOURS))


def _thin(rows: list, max_points: int) -> list:
    """Every k-th row so that at most `max_points` remain (the newest row is always kept)."""
    if len(rows) <= max_points:
        return rows
    step = -(-len(rows) // max_points)  # ceil
    kept = rows[::-1][::step][::-1]
    return kept


def latest_weather() -> dict[str, Any] | None:
    """The newest weather reading as a dict (None before the first poll), with its age in seconds."""
    reading = WeatherReading.objects.order_by("-time").first()
    if reading is None:
        return None
    values = {name: getattr(reading, name) for name in WEATHER_FIELDS}
    return {"time": _iso(reading.time), "age_s": round((timezone.now() - reading.time).total_seconds(), 1),
            "source": reading.source, "station_safe": reading.station_safe, **values}


def weather_history(*, hours: float = 3.0, now: datetime | None = None,
                    max_points: int = MAX_POINTS) -> dict[str, Any]:
    """Weather readings of the last `hours`, oldest first, as columns: {"time": [...], "wind_m_s": [...]}."""
    now = now or timezone.now()
    hours = _clamp_hours(hours)
    since = now - timedelta(hours=hours)
    rows = list(WeatherReading.objects.filter(time__gte=since, time__lte=now).order_by("time")
                .values_list("time", *WEATHER_FIELDS, "station_safe"))
    rows = _thin(rows, max_points)
    columns: dict[str, Any] = {"hours": hours, "since": _iso(since), "until": _iso(now),
                               "time": [_iso(row[0]) for row in rows]}
    for k, name in enumerate(WEATHER_FIELDS, start=1):
        columns[name] = [row[k] for row in rows]
    columns["station_safe"] = [row[len(WEATHER_FIELDS) + 1] for row in rows]
    return columns


def device_names() -> list[str]:
    """Every device that has reported a status, sorted (the device pages' index)."""
    return sorted(DeviceStatus.objects.order_by().values_list("device", flat=True).distinct())


def device_latest_status(*, device: str) -> DeviceStatus | None:
    return DeviceStatus.objects.filter(device=device).order_by("-time").first()


def device_status_history(*, device: str, hours: float = 3.0, now: datetime | None = None,
                          max_points: int = MAX_POINTS) -> dict[str, Any]:
    """The statuses a device reported over the last `hours`, oldest first, as columns.

    `values` is the union of the numeric keys reported (e.g. the PLC's `rain`, `power_v`): one list per
    key, None where a status did not carry it; `state` is the reported state string per point.
    """
    now = now or timezone.now()
    hours = _clamp_hours(hours)
    since = now - timedelta(hours=hours)
    rows = list(DeviceStatus.objects.filter(device=device, time__gte=since, time__lte=now).order_by("time")
                .values_list("time", "state", "values", "name"))
    rows = _thin(rows, max_points)
    numeric_keys: list[str] = []
    seen: set[str] = set()
    for _, _, values, _ in rows:
        for key, value in (values or {}).items():
            # bool is an int in Python, but a plot of True/False is clearer as a state, not a number.
            if key not in seen and isinstance(value, int | float) and not isinstance(value, bool):
                seen.add(key)
                numeric_keys.append(key)
    return {
        "device": device, "hours": hours, "since": _iso(since), "until": _iso(now),
        "time": [_iso(row[0]) for row in rows],
        "state": [row[1] for row in rows],
        "values": {key: [_number((row[2] or {}).get(key)) for row in rows] for key in numeric_keys},
    }


def device_recent_statuses(*, device: str, limit: int = 50) -> list[DeviceStatus]:
    """The newest statuses of a device, newest first (the device page's table)."""
    return list(DeviceStatus.objects.filter(device=device).order_by("-time")[:limit])


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
