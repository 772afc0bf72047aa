"""Is it safe to observe? Pure rules on weather readings, and the hold before reopening."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Reading:
    time_utc: datetime
    wind_m_s: float | None = None
    gust_m_s: float | None = None
    humidity_pct: float | None = None
    rain_mm_h: float | None = None
    cloud_cover_pct: float | None = None
    station_safe: bool | None = None


def unsafe_reasons(reading: Reading | None, *, now: datetime, limits: dict) -> list[str]:
    """Every reason the conditions are not good; empty means good."""
    if reading is None:
        return ["no weather reading"]
    age_s = (now - reading.time_utc).total_seconds()
    if age_s > limits["stale_after_s"]:
        return [f"weather reading is {age_s:.0f} s old (limit {limits['stale_after_s']:.0f} s)"]
    reasons = []
    checks = (
        ("wind", reading.wind_m_s, limits["max_wind_m_s"], "m/s"),
        ("gusts", reading.gust_m_s, limits["max_gust_m_s"], "m/s"),
        ("humidity", reading.humidity_pct, limits["max_humidity_pct"], "%"),
        ("rain", reading.rain_mm_h, limits["max_rain_mm_h"], "mm/h"),
        ("clouds", reading.cloud_cover_pct, limits["max_cloud_cover_pct"], "%"),
    )
    for name, value, limit, unit in checks:
        if value is not None and value > limit:
            reasons.append(f"{name} {value:g} {unit} > {limit:g} {unit}")
    if reading.station_safe is False:
        reasons.append("the weather station reports unsafe")
    return reasons


@dataclass(frozen=True)
class SafetyVerdict:
    safety: str                       # safe / unsafe / unknown
    reasons: list[str]
    conditions_ok_since: datetime | None


def evaluate(*, reasons: list[str], previous: str, ok_since: datetime | None, now: datetime,
             hold_s: float) -> SafetyVerdict:
    """Unsafe at once; safe again only after conditions stayed good for `hold_s` without a break.
    From `unknown` (start-up, nothing known yet) good conditions are safe at once: there was no
    bad weather to wait out."""
    if reasons:
        return SafetyVerdict("unsafe", reasons, None)
    ok_since = ok_since or now
    if previous == "safe" or previous == "unknown":
        return SafetyVerdict("safe", [], ok_since)
    waited = (now - ok_since).total_seconds()
    if waited >= hold_s:
        return SafetyVerdict("safe", [], ok_since)
    remaining = timedelta(seconds=hold_s - waited)
    return SafetyVerdict("unsafe", [f"conditions good for {waited:.0f} s; reopening after "
                                    f"{hold_s:.0f} s (in {remaining.total_seconds():.0f} s)"], ok_since)
