"""RequestBuilder: validation messages built on the shared observability module, checked against astropy
point by point (night bounds within 1 min, altitudes within 0.1 deg), durations, alerts, atomic saves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import time_machine
from astropy.coordinates import AltAz, SkyCoord, get_body, get_sun

from pyrosapp.models import Allocation, Request
from routine_manager.builder import ALERT_PRIORITY, RequestBuilder, RequestInvalid
from routine_manager.coordinates import parse_dec_deg, parse_ra_deg, parse_utc
from routine_manager.request_json import builder_from_api_data
from routine_manager.tests.helpers import NOW, OHP, make_observatory
from sky.astro import earth_location, to_time, u

pytestmark = pytest.mark.django_db
LOCATION = earth_location(**OHP)


@pytest.fixture(autouse=True)
def frozen_now(db):
    # After the test database exists: SQLite's file locking misbehaves under a stopped clock.
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def obs():
    return make_observatory()


def _builder(obs, *, ra_deg, dec_deg, start, end, exposure_s=60.0, count=5, is_alert=False, **constraints):
    builder = RequestBuilder(owner=obs.astronomer, program=obs.program, name="test", is_alert=is_alert)
    sequence = builder.add_sequence(name="s", target_name="T", ra_deg=ra_deg, dec_deg=dec_deg, window_start=start,
                                    window_end=end, **constraints)
    sequence.add_album(detector=obs.detector).add_plan(filter="R", exposure_s=exposure_s, count=count)
    return builder


def _altaz(times, coord):
    frame = AltAz(obstime=times, location=LOCATION, pressure=0 * u.hPa)
    return coord.transform_to(frame).alt.deg


def _astropy_night(after: datetime) -> tuple[datetime, datetime]:
    """Sun crossing -18 deg down then up, searched with astropy at 10 s steps."""
    t = to_time(after) + np.arange(0, 24 * 3600, 10) * u.s
    sun_alt = get_sun(t).transform_to(AltAz(obstime=t, location=LOCATION, pressure=0 * u.hPa)).alt.deg
    dark = sun_alt < -18.0
    start = int(np.argmax(dark))
    end = start + int(np.argmax(~dark[start:]))
    return t[start].to_datetime(timezone=UTC), t[end].to_datetime(timezone=UTC)


def test_circumpolar_target_is_observable_all_night_matching_astropy_night_bounds(obs):
    # Dec +80 at latitude 43.9: lowest altitude 33.9 deg, always above the 30 deg limit.
    start, end = datetime(2026, 12, 16, 12, tzinfo=UTC), datetime(2026, 12, 17, 12, tzinfo=UTC)
    report = _builder(obs, ra_deg=30.0, dec_deg=80.0, start=start, end=end, min_altitude_deg=30).validate()
    assert report.valid, report.errors
    [(window_start, window_end)] = report.sequences[0].observable_windows
    night_start, night_end = _astropy_night(start)
    assert abs((window_start - night_start).total_seconds()) < 60
    assert abs((window_end - night_end).total_seconds()) < 60


def test_observable_window_edges_and_inside_agree_with_astropy(obs):
    start, end = datetime(2026, 12, 16, 17, tzinfo=UTC), datetime(2026, 12, 18, 6, tzinfo=UTC)
    m51 = SkyCoord(202.4696 * u.deg, 47.1952 * u.deg)
    report = _builder(obs, ra_deg=202.4696, dec_deg=47.1952, start=start, end=end, min_altitude_deg=30).validate()
    windows = report.sequences[0].observable_windows
    assert len(windows) == 2
    for window_start, window_end in windows:
        # M51 rises through 30 deg before dawn: the window opens when it crosses 30 deg, closes at twilight.
        assert _altaz(to_time(window_start), m51) == pytest.approx(30.0, abs=0.1)
        sun_at_end = get_sun(to_time(window_end)).transform_to(
            AltAz(obstime=to_time(window_end), location=LOCATION, pressure=0 * u.hPa)).alt.deg
        assert sun_at_end == pytest.approx(-18.0, abs=0.1)
        inside = to_time(window_start) + np.linspace(0, (window_end - window_start).total_seconds(), 40) * u.s
        assert np.all(_altaz(inside, m51) >= 30.0 - 0.1)


def test_never_rising_target_says_when_and_why(obs):
    start, end = datetime(2026, 12, 16, 17, tzinfo=UTC), datetime(2026, 12, 18, 6, tzinfo=UTC)
    report = _builder(obs, ra_deg=100.0, dec_deg=-60.0, start=start, end=end, min_altitude_deg=30).validate()
    assert not report.valid
    [message] = report.errors["sequences[0].target"]
    assert "never above 30.0 deg at night" in message
    assert "between 2026-12-16 17:00 and 2026-12-18 06:00 UTC" in message
    # The highest altitude quoted is astropy's (max over the night, culmination 90-43.93-60 < 0).
    highest = float(message.split("highest ")[1].split(" deg")[0])
    t = to_time(start) + np.arange(0, (end - start).total_seconds(), 60) * u.s
    night = get_sun(t).transform_to(AltAz(obstime=t, location=LOCATION, pressure=0 * u.hPa)).alt.deg < -18
    astropy_highest = _altaz(t[night], SkyCoord(100.0 * u.deg, -60.0 * u.deg)).max()
    assert highest == pytest.approx(astropy_highest, abs=0.5)  # the message samples 200 instants
    assert highest < 0


def test_moon_constraint_is_named(obs):
    # Full Moon of 2026-12-24: a target at the Moon's position at midnight is high but too close to it.
    midnight = datetime(2026, 12, 24, 0, tzinfo=UTC)
    moon = get_body("moon", to_time(midnight), LOCATION)
    start, end = midnight - timedelta(hours=5), midnight + timedelta(hours=5)
    kwargs = dict(ra_deg=float(moon.ra.deg), dec_deg=float(moon.dec.deg), start=start, end=end, min_altitude_deg=30)
    report = _builder(obs, min_moon_separation_deg=30, **kwargs).validate(now=start - timedelta(days=1))
    [message] = report.errors["sequences[0].target"]
    assert "closer than 30 deg to the Moon" in message
    # Without the Moon limit the same target is observable.
    assert _builder(obs, **kwargs).validate(now=start - timedelta(days=1)).valid


def test_window_too_short_and_window_past(obs):
    start = datetime(2026, 12, 16, 20, tzinfo=UTC)
    short = _builder(obs, ra_deg=30.0, dec_deg=80.0, start=start, end=start + timedelta(minutes=3)).validate()
    assert "the sequence takes 5 min" in short.errors["sequences[0].window.end"][0]
    past = _builder(obs, ra_deg=30.0, dec_deg=80.0, start=start - timedelta(days=3),
                    end=start - timedelta(days=2)).validate()
    assert "move it to the future" in past.errors["sequences[0].window.end"][0]


def test_duration_counts_readout_filter_changes_and_overheads(obs):
    builder = RequestBuilder(owner=obs.astronomer, program=obs.program, name="d")
    sequence = builder.add_sequence(name="s", target_name="T", ra_deg=30.0, dec_deg=80.0,
                                    window_start=NOW, window_end=NOW + timedelta(days=2))
    album = sequence.add_album(detector="PyROS Camera")
    album.add_plan(filter="R", exposure_s=10, count=3).add_plan(filter="R", exposure_s=20, count=1)
    album.add_plan(filter="V", exposure_s=30, count=2)
    report = builder.validate()
    # exposures 3x10.5 + 20.5 + 2x30.5; filter changes: R (first), V = 2 x 2 s; slew 60/5 + settle 3 + acq 10
    assert report.duration_s == pytest.approx(31.5 + 20.5 + 61.0 + 4.0 + 12.0 + 3.0 + 10.0)


def test_save_is_atomic_and_refused_quota_changes_nothing(obs):
    Allocation.objects.filter(pk=obs.allocation.pk).update(allocated_s=60.0)
    builder = _builder(obs, ra_deg=30.0, dec_deg=80.0, start=NOW, end=NOW + timedelta(days=2))
    with pytest.raises(RequestInvalid) as caught:
        builder.save(submit=True)
    assert "remain on program" in caught.value.errors["program"][0]
    assert Request.objects.count() == 0
    draft = builder.save(submit=False)  # a draft does not need the time yet
    assert draft.status == "draft" and draft.reserved_s == 0


def test_alert_is_top_priority_and_may_skip_observability(obs):
    start, end = datetime(2026, 12, 16, 17, tzinfo=UTC), datetime(2026, 12, 17, 6, tzinfo=UTC)
    builder = _builder(obs, ra_deg=100.0, dec_deg=-60.0, start=start, end=end, is_alert=True)
    request = builder.save(submit=True, check_observability=False)
    assert request.is_alert and request.status == "submitted"
    assert request.sequences.get().priority == ALERT_PRIORITY
    with pytest.raises(RequestInvalid):
        _builder(obs, ra_deg=100.0, dec_deg=-60.0, start=start, end=end, is_alert=True).save(submit=True)


def test_from_api_data_never_raises_on_garbage(obs):
    for garbage in (None, 3, "x", [], {"sequences": [None, 3, {"albums": "x"}]}, {"program": {"a": 1}},
                    {"name": 5, "program": obs.program.pk, "sequences": [{"target": [], "window": 3, "albums": [3]}]}):
        report = builder_from_api_data(garbage, owner=obs.astronomer).validate()
        assert not report.valid and report.errors


@pytest.mark.parametrize("text,expected", [("13:29:52.7", 202.46958), ("13h29m52.7s", 202.46958), ("202.4696", 202.4696),
                                           (202.4696, 202.4696), ("0 0 0", 0.0)])
def test_parse_ra(text, expected):
    assert parse_ra_deg(text) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("text,expected", [("+47:11:43", 47.19528), ("-00:30:00", -0.5), ("-5d30m", -5.5),
                                           ("47.1952", 47.1952)])
def test_parse_dec(text, expected):
    assert parse_dec_deg(text) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("bad", ["25:00:00", "12:61:00", "abc", "nan", "inf", ""])
def test_parse_ra_rejects(bad):
    with pytest.raises(ValueError):
        parse_ra_deg(bad)


def test_parse_utc_needs_a_time_zone():
    assert parse_utc("2026-12-16T17:00:00Z") == datetime(2026, 12, 16, 17, tzinfo=UTC)
    with pytest.raises(ValueError, match="time zone"):
        parse_utc("2026-12-16T17:00:00")
