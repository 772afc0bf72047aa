"""alert_manager.triage: what a notice asks for, and whether the target is observable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from alert_manager.tests.packets import make_packet
from alert_manager.triage import ObservingSite, triage, visibility
from alert_manager.voevent import parse_voevent

SWIFT_BAT_GRB = "mwa_trigger/SWIFT01.xml"


def _triage_file(corpus_bytes: dict[str, bytes], name: str, max_error_deg: float = 1.0):  # noqa: ANN202
    return triage(parse_voevent(corpus_bytes[name]), max_error_deg=max_error_deg)


def test_role_test_and_utility_never_actionable(corpus: list[dict[str, Any]], corpus_bytes: dict[str, bytes]) -> None:
    checked = 0
    for entry in corpus:
        if entry["role"] == "observation":
            continue
        decision = triage(parse_voevent(corpus_bytes[entry["file"]]), max_error_deg=180.0)
        assert not decision.actionable and decision.kind == "ignored", entry["file"]
        assert f"role={entry['role']}" in decision.reason
        checked += 1
    assert checked == 362  # 361 test + 1 utility packets in the corpus


def test_swift_bat_grb_is_a_pointable_trigger_within_the_strategy_error(corpus_bytes: dict[str, bytes]) -> None:
    decision = _triage_file(corpus_bytes, SWIFT_BAT_GRB, max_error_deg=0.1)
    assert decision.actionable and decision.kind == "trigger"
    too_coarse = _triage_file(corpus_bytes, SWIFT_BAT_GRB, max_error_deg=0.01)
    assert not too_coarse.actionable and too_coarse.kind == "trigger"
    assert "larger than the strategy's maximum" in too_coarse.reason


def test_catalogue_and_known_sources_are_ignored(corpus_bytes: dict[str, bytes]) -> None:
    catalog = _triage_file(corpus_bytes, "mwa_trigger/SWIFT02.xml")
    assert (catalog.actionable, catalog.kind) == (False, "ignored") and "catalogue" in catalog.reason
    eclairs_catalog = _triage_file(corpus_bytes, "gcn-notice-parser/svom_voevent_sb25082402_eclairs-catalog.xml")
    assert (eclairs_catalog.actionable, eclairs_catalog.kind) == (False, "ignored")
    assert "known source" in eclairs_catalog.reason
    maxi = _triage_file(corpus_bytes, "mwa_trigger/MAXI_ATMic.xml")
    assert maxi.kind == "ignored" and "known source" in maxi.reason


def test_not_a_grb_flag_is_ignored() -> None:
    raw = make_packet(
        "ivo://nasa.gsfc.gcn/SWIFT#BAT_GRB_Pos_1000001-001",
        params={"Packet_Type": "61", "TrigID": "1000001"},
        groups={"Solution_Status": {"Def_NOT_a_GRB": "true", "GRB_Identified": "true"}},
        time_utc=datetime(2026, 3, 1, 1, 2, 3, tzinfo=UTC),
        ra_deg=10.0,
        dec_deg=20.0,
        error_deg=0.05,
    )
    decision = triage(parse_voevent(raw), max_error_deg=1.0)
    assert (decision.actionable, decision.kind) == (False, "ignored") and "not a GRB" in decision.reason


def test_no_usable_position_is_stored_not_pointable(corpus_bytes: dict[str, bytes]) -> None:
    gbm_alert = _triage_file(corpus_bytes, "gcn-notice-parser/fermi_gbm_alert_3785.xml", max_error_deg=180)
    assert (gbm_alert.actionable, gbm_alert.kind) == (False, "trigger")
    assert gbm_alert.reason.startswith("stored, not pointable")
    grm = _triage_file(corpus_bytes, "gcn-notice-parser/grm_330.xml", max_error_deg=180)
    assert (grm.actionable, grm.kind) == (False, "trigger")


def test_followups_are_updates(corpus_bytes: dict[str, bytes]) -> None:
    flt = _triage_file(corpus_bytes, "gcn-notice-parser/fermi_gbm_flt_pos_8126.xml", max_error_deg=20)
    assert (flt.actionable, flt.kind) == (True, "update")
    mxt = _triage_file(corpus_bytes, "gcn-notice-parser/mxt_40.xml", max_error_deg=0.5)
    assert (mxt.actionable, mxt.kind) == (True, "update")
    # the grouping's answer overrides the citation heuristic
    notice = parse_voevent(corpus_bytes[SWIFT_BAT_GRB])
    assert triage(notice, max_error_deg=1, joins_existing_event=True).kind == "update"


def test_retractions(corpus_bytes: dict[str, bytes]) -> None:
    svom = _triage_file(corpus_bytes, "gcn-notice-parser/grm_286.xml")
    assert (svom.actionable, svom.kind) == (True, "retraction")
    assert "sb26020402_grm-trigger" in svom.reason
    # LVK retractions in the corpus are role=test (mock events): never acted upon...
    lvk = _triage_file(corpus_bytes, "gcn-notice-parser/lvc_retraction_16007.xml")
    assert lvk.kind == "ignored"
    # ...but the same packet as an observation is a retraction.
    real = corpus_bytes["gcn-notice-parser/lvc_retraction_16007.xml"].replace(b'role="test"', b'role="observation"')
    decision = triage(parse_voevent(real), max_error_deg=1)
    assert (decision.actionable, decision.kind) == (True, "retraction")


# --- visibility -------------------------------------------------------------------------------------

CALERN = ObservingSite(latitude_deg=43.7525, longitude_deg=6.9222, elevation_m=1270.0)


def _astropy_altitudes(ra_deg: float, dec_deg: float, times: list[datetime]) -> tuple[np.ndarray, np.ndarray]:
    from astropy.coordinates import AltAz, SkyCoord, get_sun

    from sky.astro import Time, earth_location, u

    loc = earth_location(latitude_deg=CALERN.latitude_deg, longitude_deg=CALERN.longitude_deg, elevation_m=1270.0)
    t = Time(times)
    frame = AltAz(obstime=t, location=loc)
    target = SkyCoord(ra_deg * u.deg, dec_deg * u.deg).transform_to(frame).alt.deg
    sun = get_sun(t).transform_to(frame).alt.deg
    return np.asarray(target), np.asarray(sun)


@pytest.mark.parametrize("ra_deg,dec_deg", [(83.6, 22.0), (150.0, -30.0), (300.0, 60.0), (10.0, 85.0)])
def test_altitudes_agree_with_astropy(ra_deg: float, dec_deg: float) -> None:
    start = datetime(2026, 3, 10, 18, 37, 12, tzinfo=UTC)
    times = [start + timedelta(hours=h) for h in range(0, 12, 3)]
    target, sun = _astropy_altitudes(ra_deg, dec_deg, times)
    for i, moment in enumerate(times):
        vis = visibility(ra_deg, dec_deg, CALERN, moment)
        assert vis.altitude_now_deg == pytest.approx(target[i], abs=0.1)
        assert vis.sun_altitude_now_deg == pytest.approx(sun[i], abs=0.1)


def test_next_observable_time_matches_astropy_transition() -> None:
    # Cygnus region rises above 20 deg late in a March night at Calern.
    now = datetime(2026, 3, 10, 18, 37, 12, tzinfo=UTC)
    vis = visibility(300.0, 60.0, CALERN, now, min_altitude_deg=20.0, twilight_deg=-12.0)
    assert not vis.observable_now and "below 20 deg" in vis.reason
    assert vis.next_observable_utc is not None and vis.observable_until_utc > vis.next_observable_utc
    around = [vis.next_observable_utc + timedelta(minutes=m) for m in (-2, 2)]
    target, sun = _astropy_altitudes(300.0, 60.0, around)
    assert not (target[0] >= 20 and sun[0] <= -12)
    assert target[1] >= 20 and sun[1] <= -12


def test_daytime_and_never_visible() -> None:
    noon = datetime(2026, 6, 21, 11, 0, tzinfo=UTC)
    vis = visibility(90.0, 23.0, CALERN, noon, hours=4)  # near the Sun at the solstice
    assert not vis.observable_now and "Sun at" in vis.reason and vis.next_observable_utc is None
    south = visibility(0.0, -80.0, CALERN, noon)  # never rises at +43.75 deg
    assert south.next_observable_utc is None and "not observable within 12 h" in south.reason


def test_observable_now() -> None:
    now = datetime(2026, 1, 15, 22, 0, tzinfo=UTC)
    vis = visibility(83.6, 22.0, CALERN, now)  # Crab, winter night
    assert vis.observable_now and vis.next_observable_utc == now and vis.observable_until_utc > now


def test_naive_datetime_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        visibility(0.0, 0.0, CALERN, datetime(2026, 1, 1))  # noqa: DTZ001 - the point of the test
