"""Afterglow search on simulated-camera frames: an injected fading transient is found, measured and
followed; fields without one give no candidate."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest

from analyzer.afterglow import BurstRegion, angular_separation_deg, light_curve, match_candidates_across_images
from analyzer.pipeline import analyze_image
from analyzer.tests.conftest import FIELD_DEC_DEG, FIELD_RA_DEG, NIGHT_UTC, at, empty_sky_position, render_fits
from devices.sky import Transient, catalog_stars

BURST_T0 = NIGHT_UTC
# Images 5, 7.5, 10 and 15 minutes after the trigger, as an alert sequence would take them.
IMAGE_TIMES_S = (300.0, 450.0, 600.0, 900.0)
EXPOSURE_S = 10.0


@pytest.fixture(scope="module")
def transient() -> Transient:
    ra, dec = empty_sky_position(FIELD_RA_DEG, FIELD_DEC_DEG)
    return Transient(ra_deg=ra, dec_deg=dec, mag0=15.0, t0_utc=BURST_T0, decay_index=1.0, t_ref_s=60.0)


@pytest.fixture(scope="module")
def burst(transient) -> BurstRegion:
    # The alert's error circle: 3 arcmin, centred 1 arcmin away from the afterglow.
    return BurstRegion(ra_deg=transient.ra_deg, dec_deg=transient.dec_deg + 1.0 / 60.0, error_deg=0.05, t0_utc=BURST_T0)


@pytest.fixture(scope="module")
def event_results(masters, transient, burst):
    results = []
    for k, t_s in enumerate(IMAGE_TIMES_S):
        content = render_fits(when_utc=at(t_s), exposure_s=EXPOSURE_S, seed=40 + k, transients=(transient,))
        result = analyze_image(content, masters=masters, burst=burst)
        assert result["status"] == "ok", result["failure_reason"]
        result["image_id"] = k
        results.append(result)
    return results


def test_transient_is_recovered_within_one_pixel_and_a_tenth_of_a_magnitude(event_results, transient):
    for result in event_results:
        assert result["n_candidates"] >= 1
        best = result["candidates"][0]
        assert best["rank"] == 1 and best["kind"] == "new"
        assert best["snr"] > 20
        offset_arcsec = float(
            angular_separation_deg(best["ra_deg"], best["dec_deg"], transient.ra_deg, transient.dec_deg)
        ) * 3600.0
        assert offset_arcsec < 1.0 * result["pixel_scale_arcsec"]
        # The quoted position error is honest: the true offset is within ~3 of them.
        assert offset_arcsec < max(3.0 * best["error_arcsec"], 0.3)
        start = datetime.fromisoformat(result["date_obs_utc"])
        true_mag = transient.mean_magnitude(start, EXPOSURE_S, "R")
        assert best["mag"] == pytest.approx(true_mag, abs=0.1)
        assert best["mag_err"] < 0.06


def test_fading_shows_in_the_light_curve_across_images(event_results, burst):
    tracks = match_candidates_across_images(event_results, t0_utc=burst.t0_utc)
    afterglow = tracks[0]
    assert afterglow["rank"] == 1
    assert afterglow["n_detections"] == len(IMAGE_TIMES_S)
    curve = afterglow["light_curve"]
    assert curve["t_s"] == pytest.approx([t + EXPOSURE_S / 2 for t in IMAGE_TIMES_S], abs=0.01)
    assert all(later > earlier for earlier, later in zip(curve["mag"], curve["mag"][1:], strict=False))
    assert curve["decay_index"] == pytest.approx(1.0, abs=0.15)
    assert curve["fading"] is True
    assert afterglow["upper_limits"] == []


def test_an_image_that_misses_the_afterglow_gives_an_upper_limit(event_results, burst, masters, transient):
    # Two hours later the afterglow (R ~20.2) has faded below this frame's 5-sigma limit (~19.9).
    late = analyze_image(render_fits(when_utc=at(7200.0), seed=49, transients=(transient,)), masters=masters,
                         burst=burst)
    assert late["status"] == "ok" and late["candidates"] == []
    late["image_id"] = "late"
    tracks = match_candidates_across_images([*event_results, late], t0_utc=burst.t0_utc)
    assert tracks[0]["n_detections"] == len(IMAGE_TIMES_S)
    assert tracks[0]["upper_limits"] == [
        {"image_id": "late", "time_utc": late["mid_time_utc"], "limiting_mag": late["limiting_mag"]}
    ]


def test_no_candidate_in_images_without_a_transient(masters):
    # An error region covering the whole field, in a sparse and in a Galactic-plane field, with and
    # without calibration (raw frames keep their hot pixels), in good and poor seeing.
    cases = [
        (FIELD_RA_DEG, FIELD_DEC_DEG, masters, 1.5),
        (FIELD_RA_DEG, FIELD_DEC_DEG, masters, 3.0),
        (FIELD_RA_DEG, FIELD_DEC_DEG, None, 2.0),
        (280.0, -5.0, None, 2.0),
    ]
    for ra, dec, frame_masters, seeing in cases:
        burst = BurstRegion(ra_deg=ra, dec_deg=dec, error_deg=0.3, t0_utc=BURST_T0)
        for k, t_s in enumerate(IMAGE_TIMES_S[:3]):
            content = render_fits(ra_deg=ra, dec_deg=dec, when_utc=at(t_s), seed=60 + k, seeing_arcsec=seeing)
            result = analyze_image(content, masters=frame_masters, burst=burst)
            assert result["status"] == "ok"
            assert result["n_matched"] > 100
            assert result["candidates"] == [], (ra, dec, seeing, result["candidates"])


def test_a_star_that_brightens_is_a_candidate(masters):
    stars = catalog_stars(FIELD_RA_DEG, FIELD_DEC_DEG, 0.05, mag_limit=18.5)
    star = stars[(stars["mag_R"] > 17.5) & (stars["mag_R"] < 18.0)][0]
    flare = Transient(ra_deg=float(star["ra_deg"]), dec_deg=float(star["dec_deg"]), mag0=float(star["mag_R"]) - 1.5,
                      t0_utc=BURST_T0, decay_index=0.0)
    burst = BurstRegion(ra_deg=FIELD_RA_DEG, dec_deg=FIELD_DEC_DEG, error_deg=0.1, t0_utc=BURST_T0)
    result = analyze_image(render_fits(when_utc=at(300), seed=70, transients=(flare,)), masters=masters, burst=burst)
    kinds = [(c["kind"], round(c["catalog_mag"] or 0, 1)) for c in result["candidates"]]
    assert ("brightened", round(float(star["mag_R"]), 1)) in kinds
    best = result["candidates"][0]
    assert "brighter than the catalogue" in best["reason"]


def test_candidates_outside_the_error_region_are_ignored(masters, transient):
    far_burst = BurstRegion(ra_deg=transient.ra_deg, dec_deg=transient.dec_deg + 0.1, error_deg=0.05, t0_utc=BURST_T0)
    content = render_fits(when_utc=at(300), seed=41, transients=(transient,))
    assert analyze_image(content, masters=masters, burst=far_burst)["candidates"] == []


# ---- pure functions on plain data ----------------------------------------------------------------


def test_light_curve_fits_a_power_law():
    t0 = NIGHT_UTC
    times = [t0 + timedelta(seconds=s) for s in (200, 400, 800, 1600, 3200)]
    mags = [17.0 + 2.5 * 1.3 * np.log10(s / 200.0) for s in (200, 400, 800, 1600, 3200)]
    curve = light_curve([(t, m, 0.02) for t, m in zip(times, mags, strict=True)], t0)
    assert curve.decay_index == pytest.approx(1.3, abs=1e-6)
    assert curve.fading
    assert curve.mag_at_1000s == pytest.approx(17.0 + 2.5 * 1.3 * np.log10(5.0), abs=1e-6)
    # A flat source is not fading; one point gives no fit; a point before the burst is ignored.
    flat = light_curve([(t, 18.0, 0.05) for t in times], t0)
    assert flat.decay_index == pytest.approx(0.0, abs=1e-9) and not flat.fading
    single = light_curve([(times[0], 17.0, 0.02), (t0 - timedelta(seconds=60), 15.0, 0.02)], t0)
    assert single.decay_index is None and len(single.t_s) == 1


def test_candidates_are_followed_by_position_and_ranked():
    t0 = NIGHT_UTC

    def image(k, t_s, cands):
        return {"image_id": k, "mid_time_utc": (t0 + timedelta(seconds=t_s)).isoformat(), "candidates": cands}

    def cand(ra, dec, mag, score=0.5):
        return {"ra_deg": ra, "dec_deg": dec, "mag": mag, "mag_err": 0.03, "snr": 30.0, "error_arcsec": 0.1,
                "score": score}

    images = [
        image(0, 300, [cand(150.0, 30.0, 17.0), cand(150.05, 30.02, 16.0, score=0.9)]),  # + an asteroid
        image(1, 600, [cand(150.0 + 0.2 / 3600, 30.0, 17.75)]),
        image(2, 1200, [cand(150.0, 30.0 - 0.2 / 3600, 18.5)]),
    ]
    tracks = match_candidates_across_images(images, t0_utc=t0)
    assert [t["n_detections"] for t in tracks] == [3, 1]
    assert tracks[0]["light_curve"]["decay_index"] == pytest.approx(1.0, abs=0.01)
    assert [d["image_id"] for d in tracks[0]["detections"]] == [0, 1, 2]
    assert tracks[0]["score"] > tracks[1]["score"]
