"""Calibration masters from simulated-camera bias/dark/flat frames, and their effect on a light frame."""

from __future__ import annotations

import numpy as np
import pytest

from analyzer.calibration import (
    AnalysisError,
    MasterFrame,
    Masters,
    calibrate_frame,
    make_master_bias,
    make_master_dark,
    make_master_flat,
)
from analyzer.measure import estimate_background
from analyzer.tests.conftest import CAMERA, render


def test_master_bias_rejects_a_cosmic_ray_and_keeps_the_column_pattern():
    frames = [render(frame_type="BIAS", exposure_s=0.0, seed=500 + i)[0].astype(np.float32) for i in range(5)]
    frames[2][400, 600] += 30000.0  # a cosmic-ray hit in one frame
    master = make_master_bias(frames)
    assert master.n_frames == 5 and master.kind == "bias"
    assert master.data[400, 600] == pytest.approx(np.median([f[400, 600] for f in frames]), abs=6.0)
    # The fixed column pattern (a few ADU) survives: columns differ far more than the noise of the mean.
    column_means = master.data.mean(axis=0)
    assert np.std(column_means) > 1.0
    assert master.level == pytest.approx(CAMERA.bias_adu, abs=5.0)


def test_master_dark_is_a_rate_that_scales_to_any_exposure():
    bias = make_master_bias([render(frame_type="BIAS", exposure_s=0.0, seed=510 + i)[0] for i in range(5)])
    dark = make_master_dark([render(frame_type="DARK", exposure_s=30.0, seed=520 + i)[0] for i in range(3)], 30.0, bias)
    # A 120 s dark, calibrated with the 30 s master, has its hot pixels removed.
    long_dark = render(frame_type="DARK", exposure_s=120.0, seed=530)[0].astype(np.float32)
    hot = dark.data > 20 * max(dark.level, 1e-3)
    assert 20 <= hot.sum() <= 2 * CAMERA.hot_pixel_count
    raw_excess = long_dark[hot] - bias.data[hot]
    calibrated = long_dark - bias.data - dark.data * 120.0
    assert np.median(raw_excess) > 100.0
    assert abs(np.median(calibrated[hot])) < 0.1 * np.median(raw_excess)
    # The mean dark current is the camera's, in ADU/s.
    assert dark.level == pytest.approx(CAMERA.dark_e_per_s / CAMERA.gain_e_per_adu, rel=0.5)


def test_master_flat_flattens_an_independent_flat_and_the_sky(masters):
    flat = masters.flats["R"]
    assert flat.kind == "flat" and flat.filter_name == "R"
    h, w = flat.shape
    assert np.median(flat.data[h // 2 - 20 : h // 2 + 20, w // 2 - 20 : w // 2 + 20]) == pytest.approx(1.0, abs=0.01)
    assert np.median(flat.data[:40, :40]) < 0.9  # the vignetted corner
    other, header = render(frame_type="FLAT", exposure_s=1.0, seed=540)
    flattened, used, _ = calibrate_frame(other, exposure_s=1.0, filter_name="R", masters=masters)
    assert [m["kind"] for m in used] == ["bias", "dark", "flat"]
    corner, centre = np.median(flattened[:100, :100]), np.median(flattened[462:562, 590:690])
    assert corner / centre == pytest.approx(1.0, abs=0.01)
    # And a science frame's sky is flat after calibration (it is not before).
    light, _ = render(seed=541)
    raw_back = estimate_background(light.astype(np.float32) - masters.bias.data).back
    cal_back = estimate_background(calibrate_frame(light, exposure_s=10.0, filter_name="R", masters=masters)[0]).back
    assert raw_back[:64, :64].mean() / raw_back[480:544, 608:672].mean() < 0.9
    assert cal_back[:64, :64].mean() / cal_back[480:544, 608:672].mean() == pytest.approx(1.0, abs=0.02)


def test_flat_combination_rejects_a_star_in_one_twilight_flat():
    bias = make_master_bias([render(frame_type="BIAS", exposure_s=0.0, seed=550 + i)[0] for i in range(3)])
    frames = [render(frame_type="FLAT", exposure_s=1.0, seed=560 + i)[0].astype(np.float32) for i in range(5)]
    frames[1][300:305, 300:305] *= 1.5  # a star caught in one flat
    master = make_master_flat(frames, "R", bias)
    neighbourhood = np.median(master.data[290:315, 290:296])
    assert np.median(master.data[300:305, 300:305]) == pytest.approx(neighbourhood, abs=0.02)


def test_masters_refuse_what_cannot_be_right():
    bias = make_master_bias([np.full((32, 32), 1000.0), np.full((32, 32), 1001.0)])
    with pytest.raises(AnalysisError, match="different shapes"):
        make_master_bias([np.zeros((32, 32)), np.zeros((16, 16))])
    with pytest.raises(AnalysisError, match="needs a master bias"):
        make_master_dark([np.zeros((32, 32))], 10.0, None)
    with pytest.raises(AnalysisError, match="exposure time > 0"):
        make_master_dark([np.zeros((32, 32))], 0.0, bias)
    with pytest.raises(AnalysisError, match="no signal"):
        make_master_flat([np.full((32, 32), 1000.0)], "R", bias)
    with pytest.raises(AnalysisError, match="no frames"):
        make_master_bias([])


def test_master_survives_a_fits_round_trip_with_its_provenance(masters):
    flat = masters.flats["V"]
    flat.source_ids = [11, 12, 13]
    again = MasterFrame.from_fits_bytes(flat.to_fits_bytes(), master_id=7)
    assert again.kind == "flat" and again.filter_name == "V" and again.n_frames == 3
    assert np.array_equal(again.data, flat.data)
    assert again.describe()["id"] == 7
    assert flat.describe()["source_ids"] == [11, 12, 13]


def test_calibrate_without_a_flat_for_the_filter_notes_it(masters):
    light, _ = render(filter_name="B", seed=570)
    _, used, notes = calibrate_frame(light, exposure_s=10.0, filter_name="B", masters=masters)
    assert [m["kind"] for m in used] == ["bias", "dark"]
    assert any("no master flat for filter B" in n for n in notes)
    only_bias = Masters(bias=masters.bias)
    _, used, notes = calibrate_frame(light, exposure_s=10.0, filter_name="B", masters=only_bias)
    assert [m["kind"] for m in used] == ["bias"]


def test_build_master_from_fits_checks_frame_types_and_filters():
    from datetime import timedelta

    from analyzer.calibration import build_master, select_masters
    from devices.sky import write_fits

    bias = build_master("bias", [write_fits(*render(frame_type="BIAS", exposure_s=0.0, seed=600 + i)) for i in range(3)],
                        source_ids=[1, 2, 3])
    assert bias.describe()["source_ids"] == [1, 2, 3]
    darks = [write_fits(*render(frame_type="DARK", exposure_s=exposure_s, seed=610 + i))
             for i, exposure_s in enumerate((20.0, 40.0, 60.0))]
    dark = build_master("dark", darks, master_bias=bias)
    assert dark.level == pytest.approx(CAMERA.dark_e_per_s / CAMERA.gain_e_per_adu, rel=0.5)
    flats_r = [write_fits(*render(frame_type="FLAT", exposure_s=1.0, seed=620 + i)) for i in range(2)]
    flat_v = write_fits(*render(frame_type="FLAT", exposure_s=1.0, filter_name="V", seed=630))
    with pytest.raises(AnalysisError, match="share one FILTER"):
        build_master("flat", [*flats_r, flat_v], master_bias=bias)
    with pytest.raises(AnalysisError, match="frame 1 is a 'Dark Frame', not a bias frame"):
        build_master("bias", [write_fits(*render(frame_type="BIAS", exposure_s=0.0, seed=640)), darks[0]])
    with pytest.raises(AnalysisError, match="frame 0: .*corrupt"):
        build_master("bias", [b"junk" * 1000])
    flat = build_master("flat", flats_r, master_bias=bias, master_dark=dark)
    assert flat.filter_name == "R"

    # The newest master that fits the image applies, never one made after the image.
    old_bias = make_master_bias([bias.data])
    old_bias.created_utc = bias.created_utc - timedelta(days=2)
    binned = make_master_bias([np.zeros((512, 640))])
    chosen = select_masters([old_bias, bias, binned, dark, flat], shape=(1024, 1280), filter_name="r")
    assert chosen.bias is bias and chosen.dark is dark and chosen.flat_for("R") is flat
    before = select_masters([old_bias, bias], shape=(1024, 1280), filter_name="R",
                            when_utc=bias.created_utc - timedelta(days=1))
    assert before.bias is old_bias and before.flats == {}
