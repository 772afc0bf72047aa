"""The afterglow search on a simulated real-catalogue field (a Gaia-like local file the camera renders,
with a pointing error and distortion): the injected transient is found in every frame with its AB
magnitude to 0.1 mag, nothing else is ever a candidate, a known asteroid is removed, and a frame
without the transient gives an upper limit."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pytest

from analyzer.afterglow import BurstRegion
from analyzer.pipeline import analyze_image
from analyzer.tests.realsky import REAL_DEC_DEG, REAL_RA_DEG, WHEN, render_real_fits, write_local_catalog
from devices.catalogs import AB_MINUS_VEGA, LocalCatalogFile
from devices.sky import Transient

N_FRAMES = 20
EXPOSURE_S = 30.0
T0 = WHEN - timedelta(minutes=5)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> LocalCatalogFile:
    return LocalCatalogFile(write_local_catalog(tmp_path_factory.mktemp("realsky")))


def empty_position(catalog: LocalCatalogFile, clear_arcsec: float = 20.0) -> tuple[float, float]:
    stars = catalog.cone(REAL_RA_DEG, REAL_DEC_DEG, 0.1, epoch_jyear=2026.2)
    cos_dec = math.cos(math.radians(REAL_DEC_DEG))
    for step in range(1, 300):
        ra = REAL_RA_DEG + 0.0011 * step * ((-1) ** step) / cos_dec
        dec = REAL_DEC_DEG + 0.0008 * step
        if np.min(np.hypot((stars["ra_deg"] - ra) * cos_dec, stars["dec_deg"] - dec)) * 3600.0 > clear_arcsec:
            return ra, dec
    raise AssertionError("no empty sky in the field")


@pytest.fixture(scope="module")
def transient(catalog) -> Transient:
    ra, dec = empty_position(catalog)
    return Transient(ra_deg=ra, dec_deg=dec, mag0=15.5, t0_utc=T0, decay_index=1.0)


@pytest.fixture(scope="module")
def burst(transient) -> BurstRegion:
    # A Swift/XRT-like circle of 3', its centre 40" from the afterglow.
    return BurstRegion(ra_deg=transient.ra_deg + 40.0 / 3600.0, dec_deg=transient.dec_deg, error_deg=0.05,
                       t0_utc=T0)


def test_the_injected_afterglow_is_found_in_every_frame_with_its_ab_magnitude_and_nothing_else(
        catalog, transient, burst, masters):
    found = []
    for k in range(N_FRAMES):
        start = WHEN + timedelta(seconds=k * 45.0)
        content = render_real_fits(catalog, seed=100 + k, when_utc=start, exposure_s=EXPOSURE_S,
                                   pointing_error_arcsec=(35.0, -25.0), distortion_corner_px=1.0,
                                   transients=(transient,))
        result = analyze_image(content, catalog=catalog, burst=burst, masters=masters)
        assert result["status"] == "ok", result["failure_reason"]
        assert result["astrometry"]["method"] == "refine"
        # 0 false candidates: the one candidate of each frame is the afterglow.
        assert result["n_candidates"] == 1, result["candidates"]
        candidate = result["candidates"][0]
        offset = math.hypot((candidate["ra_deg"] - transient.ra_deg) * math.cos(math.radians(transient.dec_deg)),
                            candidate["dec_deg"] - transient.dec_deg) * 3600.0
        assert offset < 0.5
        true_ab = transient.mean_magnitude(start, EXPOSURE_S, "R") + AB_MINUS_VEGA["R"]
        assert candidate["mag_ab"] == pytest.approx(true_ab, abs=0.1)
        assert candidate["band"] == "R" and candidate["kind"] == "new"
        found.append(candidate["mag_ab"] - true_ab)
    assert abs(float(np.mean(found))) < 0.03  # no bias in the AB magnitudes


def test_a_known_asteroid_is_not_a_candidate(catalog, transient, burst):
    content = render_real_fits(catalog, seed=150, when_utc=WHEN, transients=(transient,))

    def ephemeris(ra_deg, dec_deg, radius_deg, when_utc):  # as SkyBoT would answer, offline
        assert radius_deg >= burst.error_deg
        return [{"name": "(4179) Toutatis", "ra_deg": transient.ra_deg + 2.0 / 3600.0, "dec_deg": transient.dec_deg,
                 "mag": 17.0}]

    result = analyze_image(content, catalog=catalog, burst=burst, moving_objects=ephemeris)
    assert result["candidates"] == []
    assert "Toutatis" in result["rejected_candidates"][0]["reason"]
    assert result["upper_limit_mag_ab"] == result["limiting_mag_ab"]


def test_before_the_burst_nothing_is_found_and_the_limit_is_an_upper_limit(catalog, transient, burst):
    content = render_real_fits(catalog, seed=151, when_utc=T0 - timedelta(minutes=10), transients=(transient,))
    result = analyze_image(content, catalog=catalog, burst=burst)
    assert result["n_candidates"] == 0
    assert result["upper_limit_mag_ab"] == pytest.approx(result["limiting_mag"] + 0.21, abs=0.001)
    assert result["upper_limit_mag_ab"] > 20.0
