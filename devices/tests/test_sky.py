"""The simulated sky: geometry through the WCS, photometry of injected transients, determinism."""

from __future__ import annotations

import io
import math
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import sep
from astropy.io import fits
from astropy.wcs import WCS

from devices import sky
from devices.testing import scaled_s

WHEN = datetime(2026, 11, 21, 1, 0, 0, tzinfo=UTC)
FIELD_RA, FIELD_DEC = 150.0, 20.0


def _background_subtracted(data: np.ndarray):
    image = data.astype(np.float64)
    background = sep.Background(image)
    return image - background, background


def test_catalog_is_deterministic_and_independent_of_the_query():
    a = sky.catalog_stars(FIELD_RA, FIELD_DEC, 0.2, mag_limit=18)
    b = sky.catalog_stars(FIELD_RA + 0.05, FIELD_DEC, 0.3, mag_limit=19)
    assert 30 <= len(a) <= 500
    # every star of the small query is in the larger one with the same magnitudes
    key_b = {(round(r, 9), round(d, 9)): m for r, d, m in zip(b["ra_deg"], b["dec_deg"], b["mag_V"], strict=False)}
    for r, d, m in zip(a["ra_deg"], a["dec_deg"], a["mag_V"], strict=False):
        assert key_b[(round(r, 9), round(d, 9))] == m
    assert set(sky.FILTERS) == {name[4:] for name in a.dtype.names if name.startswith("mag_")}


def test_catalog_counts_follow_a_power_law_and_the_galactic_plane():
    field_area_deg2 = (1280 / 3600) * (1024 / 3600)
    radius = math.sqrt(field_area_deg2 / math.pi)
    pole = sky.catalog_stars(192.86, 27.13, radius, mag_limit=18)  # north Galactic pole
    plane = sky.catalog_stars(266.4, -28.9, radius, mag_limit=18)  # Galactic centre
    assert 20 <= len(pole) <= 150
    assert len(plane) > 2.5 * len(pole)
    bright = sky.catalog_stars(192.86, 27.13, 1.0, mag_limit=16)
    faint = sky.catalog_stars(192.86, 27.13, 1.0, mag_limit=18)
    assert 2.5 < len(faint) / len(bright) < 6.5  # 10^(0.3*2) = 4


@pytest.mark.parametrize("dec", [89.95, -89.95, 0.0])
def test_catalog_works_at_the_poles_and_across_ra_zero(dec):
    stars = sky.catalog_stars(359.99, dec, 0.2, mag_limit=18)
    assert len(stars) > 10
    sep_deg = sky._angular_separation_deg(359.99, dec, stars["ra_deg"], stars["dec_deg"])
    assert sep_deg.max() <= 0.2


def test_star_positions_match_the_catalogue_through_the_wcs():
    data, header = sky.render_frame(
        ra_deg=FIELD_RA, dec_deg=FIELD_DEC, exposure_s=30, filter_name="R", when_utc=WHEN, seed=1
    )
    assert data.dtype == np.uint16 and data.shape == (1024, 1280)
    wcs = WCS(header)
    stars = sky.catalog_stars(FIELD_RA, FIELD_DEC, 0.25, mag_limit=17)
    x, y = wcs.world_to_pixel_values(stars["ra_deg"], stars["dec_deg"])  # 0-based
    image, background = _background_subtracted(data)
    checked = 0
    for xi, yi, mag in zip(x, y, stars["mag_R"], strict=False):
        if not (20 < xi < 1260 and 20 < yi < 1004) or mag < 12.5:
            continue  # off the chip or saturated
        # isolated: no other star brighter than 19 within 10 px
        d = np.hypot(x - xi, y - yi)
        if np.sum((d < 10) & (d > 0.01)) > 0:
            continue
        xw, yw, flag = sep.winpos(image, [xi], [yi], [1.0])
        assert math.hypot(xw[0] - xi, yw[0] - yi) < 0.3, (xi, yi, xw[0], yw[0], mag)
        checked += 1
    assert checked >= 15
    # orientation: north up (+y), east left (-x)
    x0, y0 = wcs.world_to_pixel_values(FIELD_RA, FIELD_DEC)
    x_n, y_n = wcs.world_to_pixel_values(FIELD_RA, FIELD_DEC + 0.01)
    x_e, y_e = wcs.world_to_pixel_values(FIELD_RA + 0.01, FIELD_DEC)
    assert y_n > y0 and abs(x_n - x0) < 1e-6 and x_e < x0
    assert abs(x0 - 639.5) < 1e-6 and abs(y0 - 511.5) < 1e-6


def test_a_source_extractor_finds_dozens_of_stars():
    data, _ = sky.render_frame(ra_deg=192.86, dec_deg=27.13, exposure_s=30, filter_name="V", when_utc=WHEN, seed=2)
    image, background = _background_subtracted(data)
    objects = sep.extract(image, 5.0, err=background.globalrms)
    assert len(objects) >= 24


def _flat_normalised(filter_name: str, binning: int = 1) -> np.ndarray:
    flats = [
        sky.render_frame(
            ra_deg=0,
            dec_deg=0,
            exposure_s=2,
            frame_type="FLAT",
            filter_name=filter_name,
            binning=binning,
            when_utc=WHEN,
            seed=s,
        )[0].astype(np.float64)
        for s in range(3)
    ]
    bias = sky.render_frame(
        ra_deg=0,
        dec_deg=0,
        exposure_s=0,
        frame_type="BIAS",
        filter_name=filter_name,
        binning=binning,
        when_utc=WHEN,
        seed=9,
    )[0].astype(np.float64)
    flat = np.mean(flats, axis=0) - bias
    # the zero points refer to the optical axis, where the vignetting is nil
    h, w = flat.shape
    return flat / np.median(flat[h // 2 - 50 : h // 2 + 50, w // 2 - 50 : w // 2 + 50])


@pytest.mark.parametrize(("filter_name", "position_px"), [("V", (400.0, 300.0)), ("I", (1000.5, 800.25))])
def test_injected_transient_has_the_right_position_and_flux(filter_name, position_px):
    camera = sky.CameraModel()
    wcs = WCS(
        sky.render_frame(
            ra_deg=FIELD_RA, dec_deg=FIELD_DEC, exposure_s=0, frame_type="BIAS", when_utc=WHEN, filter_name=filter_name
        )[1]
    )
    ra, dec = wcs.pixel_to_world_values(*position_px)
    transient = sky.Transient(
        ra_deg=float(ra),
        dec_deg=float(dec),
        mag0=14.5,
        t0_utc=WHEN - timedelta(seconds=120),
        decay_index=1.2,
        filter_offsets={"I": 0.3},
    )
    exposure_s = 20.0
    kwargs = dict(
        ra_deg=FIELD_RA, dec_deg=FIELD_DEC, exposure_s=exposure_s, filter_name=filter_name, when_utc=WHEN, seed=3
    )
    with_t, _ = sky.render_frame(**kwargs, transients=[transient])
    without, _ = sky.render_frame(**kwargs)
    flat = _flat_normalised(filter_name)
    # difference imaging with the same noise seed leaves the transient (plus its own photon noise)
    diff = (with_t.astype(np.float64) - without.astype(np.float64)) / flat
    xw, yw, _ = sep.winpos(diff, [position_px[0]], [position_px[1]], [1.0])
    assert math.hypot(xw[0] - position_px[0], yw[0] - position_px[1]) < 0.1
    flux_adu, _, _ = sep.sum_circle(diff, [xw[0]], [yw[0]], [10.0])
    measured_mag = camera.zero_points[filter_name] - 2.5 * math.log10(flux_adu[0] * camera.gain_e_per_adu / exposure_s)
    expected = transient.mean_magnitude(WHEN, exposure_s, filter_name)
    mid_exposure = 14.5 + 2.5 * 1.2 * math.log10(130 / 60) + (0.3 if filter_name == "I" else 0)
    assert expected == pytest.approx(mid_exposure, abs=0.01)
    assert measured_mag == pytest.approx(expected, abs=0.05)


def test_transient_fades_as_a_power_law_and_is_absent_before_t0():
    t = sky.Transient(ra_deg=10, dec_deg=10, mag0=15, t0_utc=WHEN, decay_index=1.0, t_ref_s=60)
    assert t.magnitude_at(WHEN + timedelta(seconds=30), "R") == 15
    assert t.magnitude_at(WHEN + timedelta(seconds=600), "R") == pytest.approx(17.5)
    assert t.magnitude_at(WHEN - timedelta(seconds=1), "R") == math.inf


def test_two_exposures_of_a_field_match():
    a, ha = sky.render_frame(ra_deg=FIELD_RA, dec_deg=FIELD_DEC, exposure_s=30, filter_name="V", when_utc=WHEN)
    b, hb = sky.render_frame(
        ra_deg=FIELD_RA, dec_deg=FIELD_DEC, exposure_s=30, filter_name="V", when_utc=WHEN + timedelta(minutes=5)
    )
    assert not np.array_equal(a, b)  # fresh noise
    ia, bka = _background_subtracted(a)
    ib, bkb = _background_subtracted(b)
    oa = sep.extract(ia, 10.0, err=bka.globalrms)
    ob = sep.extract(ib, 10.0, err=bkb.globalrms)
    assert len(oa) >= 20
    matched = 0
    for obj in oa:
        d = np.hypot(ob["x"] - obj["x"], ob["y"] - obj["y"])
        if d.min() < 0.5:
            matched += 1
    assert matched >= 0.8 * len(oa)
    # the same stars have the same brightness (aperture photometry of the unsaturated bright ones)
    bright = oa[(oa["flux"] > 10000) & (oa["peak"] < 40000)]
    assert len(bright) >= 5
    flux_a, err_a, _ = sep.sum_circle(ia, bright["x"], bright["y"], 8.0, err=bka.globalrms, gain=1.0)
    flux_b, err_b, _ = sep.sum_circle(ib, bright["x"], bright["y"], 8.0, err=bkb.globalrms, gain=1.0)
    # Within their noise (5 sigma; a fixed 5 % failed one run in five for the faintest of them, whose
    # background noise alone is ~4 %), and the same on average to 1 %.
    assert np.all(np.abs(flux_a - flux_b) <= 5.0 * np.hypot(err_a, err_b)), (flux_a, flux_b, err_a)
    assert np.median(flux_b / flux_a) == pytest.approx(1.0, abs=0.01)
    # same seed, same frame
    c, _ = sky.render_frame(ra_deg=FIELD_RA, dec_deg=FIELD_DEC, exposure_s=30, filter_name="V", when_utc=WHEN, seed=5)
    d, _ = sky.render_frame(ra_deg=FIELD_RA, dec_deg=FIELD_DEC, exposure_s=30, filter_name="V", when_utc=WHEN, seed=5)
    assert np.array_equal(c, d)


def test_calibration_frames_look_real():
    camera = sky.CameraModel()
    bias, hb = sky.render_frame(ra_deg=0, dec_deg=0, exposure_s=5, frame_type="BIAS", filter_name="V", when_utc=WHEN)
    assert hb["IMAGETYP"] == "Bias Frame" and hb["EXPTIME"] == 0.0
    assert abs(np.median(bias) - camera.bias_adu) < 10
    assert 4 < np.std(bias) < 8  # read noise 8 e- / 1.5 e-/ADU = 5.3 ADU, plus the column pattern
    dark, hd = sky.render_frame(ra_deg=0, dec_deg=0, exposure_s=300, frame_type="DARK", filter_name="V", when_utc=WHEN)
    assert hd["IMAGETYP"] == "Dark Frame"
    assert np.median(dark) - np.median(bias) == pytest.approx(300 * camera.dark_e_per_s / camera.gain_e_per_adu, abs=3)
    assert np.sum(dark > camera.bias_adu + 300) >= 20  # hot pixels
    flat, hf = sky.render_frame(ra_deg=0, dec_deg=0, exposure_s=2, frame_type="FLAT", filter_name="B", when_utc=WHEN)
    assert hf["IMAGETYP"] == "Flat Field"
    centre = np.median(flat[462:562, 590:690]) - camera.bias_adu
    corner = np.median(flat[:60, :60]) - camera.bias_adu
    assert 10000 < centre < 60000
    assert 0.7 < corner / centre < 0.9  # vignetting
    saturated, _ = sky.render_frame(
        ra_deg=0, dec_deg=0, exposure_s=60, frame_type="FLAT", filter_name="V", when_utc=WHEN
    )
    assert saturated.max() == camera.saturation_adu


def test_sky_is_brighter_with_the_moon_and_in_twilight():
    dark = sky.SkyConditions()
    moon = sky.SkyConditions(moon_illumination=1.0, moon_separation_deg=30)
    twilight = sky.SkyConditions(sun_alt_deg=-10)
    assert moon.sky_brightness_mag_per_arcsec2("V") < dark.sky_brightness_mag_per_arcsec2("V") - 2.5
    assert twilight.sky_brightness_mag_per_arcsec2("V") < dark.sky_brightness_mag_per_arcsec2("V") - 4
    levels = []
    for conditions in (dark, moon):
        data, _ = sky.render_frame(
            ra_deg=FIELD_RA, dec_deg=FIELD_DEC, exposure_s=10, filter_name="V", when_utc=WHEN, conditions=conditions
        )
        levels.append(np.median(data))
    assert levels[1] > levels[0] + 100


def test_header_and_fits_bytes():
    data, header = sky.render_frame(
        ra_deg=FIELD_RA,
        dec_deg=FIELD_DEC,
        exposure_s=12.5,
        filter_name="B",
        binning=2,
        when_utc=WHEN,
        object_name="GRB 261121A",
    )
    assert data.shape == (512, 640)
    raw = sky.write_fits(data, header)
    with fits.open(io.BytesIO(raw)) as hdul:
        h = hdul[0].header
        assert np.array_equal(hdul[0].data, data)
    assert h["DATE-OBS"].startswith("2026-11-21T01:00:00")
    assert h["EXPTIME"] == 12.5 and h["FILTER"] == "B" and h["IMAGETYP"] == "Light Frame"
    assert h["OBJECT"] == "GRB 261121A" and h["XBINNING"] == 2 and h["YBINNING"] == 2
    assert h["RA"] == FIELD_RA and h["DEC"] == FIELD_DEC and h["TELESCOP"] and h["INSTRUME"]
    assert h["GAIN"] == 1.5 and h["RDNOISE"] == 8.0
    assert h["CRVAL1"] == FIELD_RA and h["CRPIX1"] == 320.5 and h["CD1_1"] == pytest.approx(-2 / 3600)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        sky.render_frame(ra_deg=0, dec_deg=0, exposure_s=1, frame_type="SCIENCE", filter_name="V", when_utc=WHEN)
    with pytest.raises(ValueError):
        sky.render_frame(ra_deg=0, dec_deg=0, exposure_s=1, filter_name="H", when_utc=WHEN)
    with pytest.raises(ValueError):
        sky.render_frame(ra_deg=0, dec_deg=0, exposure_s=1, filter_name="V", when_utc=datetime(2026, 1, 1))  # noqa: DTZ001


def test_rendering_is_fast():
    sky.render_frame(ra_deg=FIELD_RA, dec_deg=FIELD_DEC, exposure_s=10, filter_name="V", when_utc=WHEN)
    start = time.perf_counter()
    sky.render_frame(ra_deg=FIELD_RA + 1, dec_deg=FIELD_DEC, exposure_s=10, filter_name="V", when_utc=WHEN)
    assert time.perf_counter() - start < scaled_s(0.3)
