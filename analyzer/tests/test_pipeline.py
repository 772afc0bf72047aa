"""The per-image analysis on frames from the simulated camera: what an operator reads on the image page."""

from __future__ import annotations

import json

import numpy as np
import pytest

from analyzer.pipeline import analyze_image
from analyzer.tests.conftest import CAMERA, FIELD_DEC_DEG, FIELD_RA_DEG, NIGHT_UTC, render, render_fits
from devices.sky import render_frame, write_fits


@pytest.mark.parametrize("filter_name", ["R", "V"])
def test_zero_point_matches_the_camera(masters, filter_name):
    result = analyze_image(render_fits(filter_name=filter_name, seed=11), masters=masters)
    assert result["status"] == "ok", result["failure_reason"]
    assert result["zero_point_mag"] == pytest.approx(CAMERA.zero_points[filter_name], abs=0.05)
    assert result["zero_point_err_mag"] < 0.02
    assert result["zero_point_n_stars"] >= 20
    # Masters were applied, with provenance.
    assert [m["kind"] for m in result["calibrated_with"]] == ["bias", "dark", "flat"]
    assert result["calibrated_with"][2]["filter"] == filter_name


@pytest.mark.parametrize("seeing_arcsec", [1.5, 2.0, 3.5])
def test_seeing_is_recovered(masters, seeing_arcsec):
    result = analyze_image(render_fits(seeing_arcsec=seeing_arcsec, seed=12), masters=masters)
    assert result["status"] == "ok", result["failure_reason"]
    assert result["fwhm_arcsec"] == pytest.approx(seeing_arcsec, rel=0.08)


def test_limiting_magnitude_is_where_sources_reach_snr_5(masters, light_r_fits):
    result = analyze_image(light_r_fits, masters=masters, max_sources=10_000)
    mags = np.array([s["mag"] for s in result["sources"] if s["mag"] is not None])
    snrs = np.array([s["snr"] for s in result["sources"] if s["mag"] is not None])
    near_limit = np.abs(mags - result["limiting_mag"]) < 0.25
    assert near_limit.sum() >= 3
    assert np.median(snrs[near_limit]) == pytest.approx(5.0, rel=0.35)


def test_wcs_offset_is_measured_against_the_catalogue(masters):
    data, header = render(seed=13)
    exact = analyze_image(write_fits(data, header), masters=masters)
    assert exact["wcs_offset_arcsec"] < 0.1
    assert exact["wcs_rms_arcsec"] < 0.3
    # Pointing model error: the header claims the field is 12" north of where it is.
    header["CRVAL2"] = header["CRVAL2"] + 12.0 / 3600.0
    shifted = analyze_image(write_fits(data, header), masters=masters)
    assert shifted["status"] == "ok"
    assert shifted["wcs_offset_arcsec"] == pytest.approx(12.0, abs=0.3)
    assert shifted["wcs_offset_dec_arcsec"] == pytest.approx(12.0, abs=0.3)
    assert shifted["n_matched"] >= 0.9 * exact["n_matched"]
    # The photometry does not depend on the header error.
    assert shifted["zero_point_mag"] == pytest.approx(exact["zero_point_mag"], abs=0.01)


def test_result_is_json_and_rerunning_gives_the_same_result(masters, light_r_fits):
    first = analyze_image(light_r_fits, masters=masters)
    second = analyze_image(light_r_fits, masters=masters)
    json.dumps(first)  # storable as is in a JSONField
    first.pop("timings_s")
    second.pop("timings_s")
    assert first == second
    for key in ("n_sources", "background_adu", "noise_adu", "fwhm_arcsec", "wcs_offset_arcsec", "n_matched",
                "zero_point_mag", "zero_point_err_mag", "limiting_mag"):
        assert first[key] is not None, key
    assert 0 < len(first["sources"]) <= 200


def test_without_masters_it_still_measures_and_says_so(light_r_fits):
    result = analyze_image(light_r_fits, masters=None)
    assert result["status"] == "ok"
    assert result["calibrated_with"] == []
    assert any("no calibration masters" in w for w in result["warnings"])
    # The background still comes out (the bias level is part of it) and seeing is unaffected.
    assert result["background_adu"] > CAMERA.bias_adu
    assert result["fwhm_arcsec"] == pytest.approx(2.0, rel=0.08)


def test_without_catalogue_astrometry_and_photometry_are_skipped_with_a_warning(light_r_fits):
    result = analyze_image(light_r_fits, catalog=None)
    assert result["status"] == "ok"
    assert result["zero_point_mag"] is None and result["wcs_offset_arcsec"] is None
    assert any("no reference catalogue" in w for w in result["warnings"])


def test_master_of_another_binning_is_skipped_with_a_note(masters):
    result = analyze_image(_binned_fits(), masters=masters)
    assert result["status"] == "ok"
    assert result["calibrated_with"] == []
    assert any("shape" in w for w in result["warnings"])


def _binned_fits() -> bytes:
    data, header = render_frame(ra_deg=FIELD_RA_DEG, dec_deg=FIELD_DEC_DEG, exposure_s=10.0, filter_name="R",
                                binning=2, when_utc=NIGHT_UTC, seed=15)
    return write_fits(data, header)


def test_a_catalogue_that_fails_makes_a_clear_failure(light_r_fits):
    def broken_catalog(ra_deg, dec_deg, radius_deg):
        raise ConnectionError("catalogue server unreachable")

    result = analyze_image(light_r_fits, catalog=broken_catalog)
    assert result["status"] == "failed"
    assert "catalogue" in result["failure_reason"] and "unreachable" in result["failure_reason"]
    assert result["n_sources"] > 100  # what was measured before the failure is kept
