"""A corrupt FITS file, or one missing what the analysis needs, fails with a clear reason; nothing crashes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from astropy.io import fits

from analyzer.calibration import AnalysisError, load_fits
from analyzer.pipeline import analyze_image
from analyzer.tests.conftest import render
from devices.sky import write_fits


@pytest.fixture(scope="module")
def good_frame():
    return render(seed=21)


def _without(frame, *keys: str) -> bytes:
    data, header = frame
    header = header.copy()
    for key in keys:
        del header[key]
    return write_fits(data, header)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty file"),
        (b"this is not a FITS file at all" * 200, "corrupt or unreadable FITS"),
        (b"SIMPLE  =                    T" + b" " * 2850, "corrupt or unreadable FITS"),
    ],
    ids=["empty", "garbage", "header-only-junk"],
)
def test_junk_bytes_fail_with_a_reason(content, reason):
    result = analyze_image(content)
    assert result["status"] == "failed"
    assert reason in result["failure_reason"]


def test_truncated_download_fails_instead_of_being_zero_padded(good_frame):
    content = write_fits(*good_frame)
    result = analyze_image(content[: len(content) // 2])
    assert result["status"] == "failed"
    assert "truncated" in result["failure_reason"]


@pytest.mark.parametrize(
    ("keys", "reason"),
    [
        (("DATE-OBS", "MJD-OBS"), "DATE-OBS"),
        (("EXPTIME", "EXPOSURE"), "EXPTIME"),
        (("FILTER",), "FILTER"),
    ],
)
def test_missing_headers_fail_with_the_header_named(good_frame, keys, reason):
    result = analyze_image(_without(good_frame, *keys))
    assert result["status"] == "failed"
    assert reason in result["failure_reason"]


def test_without_a_wcs_the_pointing_and_plate_scale_are_refined(good_frame):
    result = analyze_image(_without(good_frame, "CTYPE1", "CTYPE2", "CD1_1", "CD1_2", "CD2_1", "CD2_2"))
    assert result["status"] == "ok", result["failure_reason"]
    assert result["astrometry"]["method"] == "refine"
    assert result["zero_point_mag"] is not None


def test_a_frame_that_cannot_be_placed_is_measured_without_astrometry_with_the_reason(good_frame):
    content = _without(good_frame, "CTYPE1", "CTYPE2", "RA", "DEC")
    result = analyze_image(content, astrometry_index_dir=None)
    assert result["status"] == "ok"
    assert result["astrometry"]["method"] is None
    assert "no pointing in the header" in result["astrometry"]["reason"]
    assert "blind solving is off" in result["astrometry"]["reason"]
    assert any("measured without astrometry" in w for w in result["warnings"])
    assert result["n_sources"] > 100 and result["fwhm_px"] is not None
    assert result["zero_point_mag"] is None and result["candidates"] == []


def test_unreadable_date_is_named(good_frame):
    data, header = good_frame
    header = header.copy()
    header["DATE-OBS"] = "last tuesday"
    result = analyze_image(write_fits(data, header))
    assert result["status"] == "failed"
    assert "DATE-OBS" in result["failure_reason"] and "last tuesday" in result["failure_reason"]


def test_file_without_an_image_fails():
    buffer = io.BytesIO()
    table = fits.BinTableHDU.from_columns([fits.Column(name="a", format="E", array=np.zeros(3))])
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(buffer)
    result = analyze_image(buffer.getvalue())
    assert result["status"] == "failed"
    assert "no 2-D image" in result["failure_reason"]


def test_missing_path_fails(tmp_path):
    result = analyze_image(tmp_path / "nope.fits")
    assert result["status"] == "failed"
    assert "no such file" in result["failure_reason"]


def test_constant_frame_fails_clearly(good_frame):
    _, header = good_frame
    result = analyze_image(write_fits(np.full((1024, 1280), 1000, dtype=np.uint16), header))
    assert result["status"] == "failed"
    assert "constant" in result["failure_reason"]


def test_a_bias_frame_is_skipped_not_failed():
    result = analyze_image(write_fits(*render(frame_type="BIAS", exposure_s=0.0, seed=22)))
    assert result["status"] == "skipped"
    assert "Bias Frame" in result["failure_reason"]


def test_load_fits_raises_analysis_error_and_reads_paths(tmp_path, good_frame):
    path = tmp_path / "frame.fits"
    path.write_bytes(write_fits(*good_frame))
    data, header = load_fits(path)
    assert data.shape == (1024, 1280) and data.dtype == np.float32
    assert np.array_equal(data, good_frame[0].astype(np.float32))
    with pytest.raises(AnalysisError, match="FILTER"):
        load_fits(_without(good_frame, "FILTER"), require_light_headers=True)
