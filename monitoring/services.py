"""Monitoring: read the weather station and the devices, keep a compact history, decide safety.

A device-facing library (layer 6): a poll returns a snapshot and a safety verdict; the majordome,
which owns the observatory state, runs it every PYROS_MONITORING_PERIOD_S seconds and acts on it. Readings come from the INDI
connection's cached properties (the drivers push updates), so a poll costs milliseconds; the
history keeps one row per PYROS_HISTORY_EVERY_S, plus every change of safety."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from monitoring.safety import Reading, SafetyVerdict, evaluate, unsafe_reasons
from pyrosapp.models import DeviceStatus, WeatherReading

log = logging.getLogger("pyros.monitoring")

_last_history: dict[str, float] = {}


def _due(key: str, every_s: float) -> bool:
    now = time.monotonic()
    if now - _last_history.get(key, -1e9) >= every_s:
        _last_history[key] = now
        return True
    return False


@dataclass(frozen=True)
class Poll:
    """One poll: what the devices say now (``snapshot``, shown as is on the dashboard) and the verdict."""

    snapshot: dict
    verdict: SafetyVerdict
    devices_reachable: bool


def monitoring_poll(*, observatory, previous_safety: str, ok_since: datetime | None,
                    now: datetime | None = None) -> Poll:
    """Read the weather station and the devices (``observatory`` None: unreachable), keep the history and
    decide safety. Returns the snapshot and the verdict; acting on it is the majordome's."""
    now = now or timezone.now()
    snapshot: dict = {"time": now.isoformat()}
    reading = None
    if observatory is not None and not getattr(observatory, "connected", True):
        # The connection keeps the last values it received: after a drop they are not the devices' state.
        observatory = None
    if observatory is not None:
        reading, snapshot["weather"] = _read_weather(observatory)
        snapshot["mount"] = _read_mount(observatory)
        snapshot["dome"] = _read_dome(observatory)
        snapshot["camera"] = _read_camera(observatory)
        snapshot["filter_wheel"] = _read_wheel(observatory)
        snapshot["watchdog"] = _read_watchdog(observatory)
    else:
        snapshot["dome"] = {"shutter": "unknown", "error": "devices unreachable"}
        snapshot["mount"] = {"ra_deg": None, "dec_deg": None, "state": "unknown", "error": "devices unreachable"}
    reasons = unsafe_reasons(reading, now=now, limits=settings.PYROS_SAFETY_LIMITS)
    if observatory is None:
        reasons = ["devices unreachable"]
    verdict = evaluate(reasons=reasons, previous=previous_safety, ok_since=ok_since, now=now,
                       hold_s=settings.PYROS_SAFETY_HOLD_S)
    _store_history(snapshot, reading, force=verdict.safety != previous_safety)
    return Poll(snapshot=snapshot, verdict=verdict, devices_reachable=observatory is not None)


def snapshot_differs(new: dict, old: dict) -> bool:
    """Whether something a person would see changed (the time of the poll aside)."""
    return _without_time(new) != _without_time(old)


def _without_time(snapshot: dict) -> dict:
    shown = {k: v for k, v in snapshot.items() if k != "time"}
    if isinstance(shown.get("watchdog"), dict):
        # its timers run every second; what a person acts on is its status
        shown["watchdog"] = {k: v for k, v in shown["watchdog"].items() if k not in ("heartbeat_age_s", "time_left_s")}
    return shown


def _read_weather(observatory) -> tuple[Reading | None, dict]:
    if not observatory.weather:
        return None, {}
    try:
        r = observatory.weather.readings()
    except Exception as exc:
        log.warning("weather station: %s", exc)
        return None, {"error": str(exc)}
    reading = Reading(time_utc=r.time_utc, wind_m_s=r.wind_m_s, gust_m_s=r.gust_m_s, humidity_pct=r.humidity_pct,
                      rain_mm_h=r.rain_mm_h, cloud_cover_pct=r.cloud_cover_pct, station_safe=r.station_safe)
    return reading, {"wind_m_s": r.wind_m_s, "gust_m_s": r.gust_m_s, "humidity_pct": r.humidity_pct,
                     "rain_mm_h": r.rain_mm_h, "temperature_c": r.temperature_c, "cloud_cover_pct": r.cloud_cover_pct,
                     "sky_ambient_c": r.sky_ambient_c, "station_safe": r.station_safe,
                     "time": r.time_utc.isoformat()}


def _read_mount(observatory) -> dict:
    try:
        m = observatory.mount.state()
    except Exception as exc:
        return {"ra_deg": None, "dec_deg": None, "state": "unknown", "error": str(exc)}
    return {"ra_deg": round(m.ra_deg, 5), "dec_deg": round(m.dec_deg, 5),
            "alt_deg": None if m.alt_deg is None else round(m.alt_deg, 3),
            "az_deg": None if m.az_deg is None else round(m.az_deg, 3), "state": m.status, "tracking": m.tracking,
            "parked": m.parked}


def _read_dome(observatory) -> dict:
    if not observatory.dome:
        return {"shutter": "none"}
    try:
        d = observatory.dome.state()
    except Exception as exc:
        return {"shutter": "unknown", "error": str(exc)}
    return {"shutter": d.shutter, "azimuth_deg": d.azimuth_deg, "parked": d.parked,
            "following_mount": d.following_mount, "moving": d.moving}


def _read_camera(observatory) -> dict:
    if not observatory.camera:
        return {}
    try:
        return {"temperature_c": observatory.camera.temperature_c()}
    except Exception as exc:
        return {"error": str(exc)}


def _read_wheel(observatory) -> dict:
    if not observatory.filter_wheel:
        return {}
    try:
        return {"filter": observatory.filter_wheel.current()}
    except Exception as exc:
        return {"error": str(exc)}


def _read_watchdog(observatory) -> dict:
    """The dead-man watchdog beside the devices (``status`` absent: the INDI server has none)."""
    watchdog = getattr(observatory, "watchdog", None)
    if not watchdog:
        return {"status": "absent"}
    try:
        w = watchdog.state()
    except Exception as exc:
        return {"status": "unknown", "error": str(exc)}
    return {"status": w.status, "heartbeat_timeout_s": w.heartbeat_timeout_s,
            "heartbeat_age_s": None if w.heartbeat_age_s is None else round(w.heartbeat_age_s, 1),
            "time_left_s": None if w.time_left_s is None else round(w.time_left_s, 1), "shutdown": w.shutdown}


def _store_history(snapshot: dict, reading: Reading | None, *, force: bool) -> None:
    every = settings.PYROS_HISTORY_EVERY_S
    now = timezone.now()
    weather = snapshot.get("weather") or {}
    if reading is not None and (force or _due("weather", every)):
        WeatherReading.objects.create(
            time=reading.time_utc, wind_m_s=reading.wind_m_s, gust_m_s=reading.gust_m_s,
            humidity_pct=reading.humidity_pct, rain_mm_h=reading.rain_mm_h, cloud_cover_pct=reading.cloud_cover_pct,
            temperature_c=weather.get("temperature_c"), station_safe=reading.station_safe)
    for device in ("mount", "dome", "camera", "filter_wheel"):
        values = snapshot.get(device)
        if values and (force or _due(device, every)):
            DeviceStatus.objects.create(time=now, device=device, state=str(values.get("state")
                                                                           or values.get("shutter") or ""),
                                        values=values)
