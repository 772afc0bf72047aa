from datetime import UTC, datetime, timedelta

from monitoring.safety import Reading, evaluate, unsafe_reasons

NOW = datetime(2026, 12, 16, 22, 0, tzinfo=UTC)
LIMITS = {"max_wind_m_s": 15, "max_gust_m_s": 20, "max_humidity_pct": 90, "max_rain_mm_h": 0,
          "max_cloud_cover_pct": 70, "stale_after_s": 180}


def test_good_conditions_have_no_reason():
    assert unsafe_reasons(Reading(NOW, 3, 5, 40, 0, 10, True), now=NOW, limits=LIMITS) == []


def test_each_limit_gives_its_reason():
    reasons = unsafe_reasons(Reading(NOW, 16, 25, 95, 0.5, 80, False), now=NOW, limits=LIMITS)
    assert len(reasons) == 6
    assert any(r.startswith("wind 16") for r in reasons)
    assert any(r.startswith("rain 0.5") for r in reasons)
    assert "the weather station reports unsafe" in reasons


def test_stale_or_missing_reading_is_unsafe():
    old = Reading(NOW - timedelta(seconds=181), 1, 1, 10, 0, 0, True)
    assert "181 s old" in unsafe_reasons(old, now=NOW, limits=LIMITS)[0]
    assert unsafe_reasons(None, now=NOW, limits=LIMITS) == ["no weather reading"]


def test_unsafe_at_once_safe_only_after_the_hold():
    v = evaluate(reasons=["wind 20 m/s > 15 m/s"], previous="safe", ok_since=None, now=NOW, hold_s=600)
    assert v.safety == "unsafe"
    v = evaluate(reasons=[], previous="unsafe", ok_since=None, now=NOW, hold_s=600)
    assert v.safety == "unsafe" and v.conditions_ok_since == NOW
    v = evaluate(reasons=[], previous="unsafe", ok_since=NOW, now=NOW + timedelta(seconds=599), hold_s=600)
    assert v.safety == "unsafe" and "reopening after 600 s" in v.reasons[0]
    v = evaluate(reasons=[], previous="unsafe", ok_since=NOW, now=NOW + timedelta(seconds=600), hold_s=600)
    assert v.safety == "safe"


def test_a_break_in_good_conditions_restarts_the_hold():
    v = evaluate(reasons=["rain 1 mm/h > 0 mm/h"], previous="unsafe", ok_since=NOW, now=NOW + timedelta(seconds=300),
                 hold_s=600)
    assert v.conditions_ok_since is None


def test_startup_with_good_weather_is_safe_at_once():
    assert evaluate(reasons=[], previous="unknown", ok_since=None, now=NOW, hold_s=600).safety == "safe"
