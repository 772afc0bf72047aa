"""Plate solving on a simulated real-catalogue field: a 2' pointing error refined to within 0.3" (with
the field's distortion), a frame without any WCS solved blind by astrometry.net to within 1" (indexes
built from the local catalogue by build-astrometry-index), and the reasons when neither works."""

from __future__ import annotations

import math
import shutil
import subprocess

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from analyzer.pipeline import analyze_image
from analyzer.tests.realsky import REAL_DEC_DEG, REAL_RA_DEG, render_real, write_local_catalog
from common.testing import scaled_s
from conftest import service_missing
from devices.catalogs import LocalCatalogFile, julian_year
from devices.sky import CameraModel, sky_to_pixel, write_fits

POINTING_ERROR = (90.0, -80.0)  # east, north arcsec: 2' off
DISTORTION_PX = 2.0


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> LocalCatalogFile:
    return LocalCatalogFile(write_local_catalog(tmp_path_factory.mktemp("realsky")))


def _true_pixels(catalog, frame_header, shape, *, pointing_error, distortion_px):
    """Where the renderer put each catalogue star (0-based pixels), for the stars inside the frame."""
    camera = CameraModel()
    height, width = shape
    dec0 = REAL_DEC_DEG + pointing_error[1] / 3600.0
    ra0 = REAL_RA_DEG + pointing_error[0] / 3600.0 / math.cos(math.radians(dec0))
    stars = catalog.cone(ra0, dec0, 0.25, epoch_jyear=julian_year(frame_header["MJD-OBS"]))
    crpix = (width / 2.0 + 0.5, height / 2.0 + 0.5)
    x, y, _ = sky_to_pixel(stars["ra_deg"], stars["dec_deg"], center_ra_deg=ra0, center_dec_deg=dec0,
                           scale_arcsec_px=camera.pixel_scale_arcsec, crpix=crpix)
    dx, dy = x - crpix[0], y - crpix[1]
    r_corner = math.hypot(width, height) / 2.0
    factor = 1.0 - distortion_px / r_corner * (np.hypot(dx, dy) / r_corner) ** 2
    x, y = crpix[0] + dx * factor - 1.0, crpix[1] + dy * factor - 1.0
    inside = (x > 10) & (x < width - 10) & (y > 10) & (y < height - 10)
    return stars[inside], x[inside], y[inside]


def _solved_error_arcsec(result, catalog, header, **truth) -> np.ndarray:
    from astropy.wcs import WCS

    wcs = WCS(fits.Header(result["wcs_header"]))
    stars, x, y = _true_pixels(catalog, header, result["image_shape"], **truth)
    sx, sy = wcs.all_world2pix(stars["ra_deg"], stars["dec_deg"], 0)
    return np.hypot(sx - x, sy - y) * CameraModel().pixel_scale_arcsec


def test_a_two_arcminute_pointing_error_is_refined_to_a_third_of_an_arcsecond(catalog, masters):
    data, header = render_real(catalog, seed=3, pointing_error_arcsec=POINTING_ERROR,
                               distortion_corner_px=DISTORTION_PX)
    result = analyze_image(write_fits(data, header), catalog=catalog, masters=masters)
    assert result["status"] == "ok", result["failure_reason"]
    info = result["astrometry"]
    assert info["method"] == "refine" and info["reason"] is None
    assert info["n_matched"] >= 100
    assert info["residual_arcsec"] < 0.3
    assert info["distortion"] is not None  # 2 px at the corners needs SIP terms
    # The header was 2' off, and the report says so.
    assert result["wcs_offset_arcsec"] == pytest.approx(math.hypot(*POINTING_ERROR), abs=1.0)
    assert result["wcs_offset_ra_arcsec"] == pytest.approx(-POINTING_ERROR[0], abs=1.0)
    assert result["wcs_offset_dec_arcsec"] == pytest.approx(-POINTING_ERROR[1], abs=1.0)
    error = _solved_error_arcsec(result, catalog, header, pointing_error=POINTING_ERROR,
                                 distortion_px=DISTORTION_PX)
    assert np.median(error) < 0.1 and np.percentile(error, 95) < 0.3
    assert result["timings_s"]["astrometry"] < scaled_s(0.3)
    # The zero point comes from the catalogue's R (Gaia transformed): the camera's own.
    assert result["zero_point_mag"] == pytest.approx(CameraModel().zero_points["R"], abs=0.05)
    assert result["catalog"]["band"] == "mag_R" and result["catalog"]["ab_minus_vega"] == 0.21


def test_without_a_distortion_no_sip_terms_are_fitted(catalog):
    result = analyze_image(write_fits(*render_real(catalog, seed=4, pointing_error_arcsec=(20.0, 10.0))),
                           catalog=catalog)
    assert result["astrometry"]["method"] == "refine"
    assert result["astrometry"]["distortion"] is None
    assert result["wcs_header"]["CTYPE1"] == "RA---TAN"


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory, catalog):
    """astrometry.net indexes for 6'-30' quads, built from the local catalogue (as production would
    from its own catalogue, or use Debian's astrometry-data-tycho2 for fields of 22' and more)."""
    if shutil.which("solve-field") is None or shutil.which("build-astrometry-index") is None:
        service_missing("astrometry.net is not installed (apt-get install astrometry.net; CI installs it)")
    directory = tmp_path_factory.mktemp("astrometry-index")
    stars = catalog.cone(REAL_RA_DEG, REAL_DEC_DEG, 0.45, epoch_jyear=2026.2)
    table = directory / "stars.fits"
    Table({"RA": stars["ra_deg"], "DEC": stars["dec_deg"], "MAG": stars["mag_R"]}).write(table)
    for preset in (1, 2, 3, 4):
        subprocess.run(["build-astrometry-index", "-i", str(table), "-o", str(directory / f"index-{preset:02d}.fits"),
                        "-P", str(preset), "-S", "MAG", "-E", "-A", "RA", "-D", "DEC", "-I", str(9000 + preset)],
                       check=True, capture_output=True, timeout=300)
    table.unlink()
    return directory


def test_a_frame_without_wcs_nor_pointing_is_solved_blind_to_within_an_arcsecond(catalog, index_dir, masters):
    data, header = render_real(catalog, seed=5)
    for key in ("CTYPE1", "CTYPE2", "CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2", "CD1_1", "CD1_2", "CD2_1", "CD2_2",
                "RA", "DEC", "WCSAXES", "CUNIT1", "CUNIT2"):
        header.remove(key, ignore_missing=True)
    result = analyze_image(write_fits(data, header), catalog=catalog, astrometry_index_dir=str(index_dir),
                           masters=masters)
    assert result["status"] == "ok", result["failure_reason"]
    info = result["astrometry"]
    assert info["method"] == "astrometry.net", info["reason"]
    assert info["n_matched"] >= 100 and info["residual_arcsec"] < 0.3
    assert result["wcs_offset_arcsec"] is None  # there was no header WCS to compare with
    error = _solved_error_arcsec(result, catalog, header, pointing_error=(0.0, 0.0), distortion_px=0.0)
    assert np.percentile(error, 95) < 1.0
    assert result["zero_point_mag"] == pytest.approx(CameraModel().zero_points["R"], abs=0.05)


def test_a_pointing_far_off_falls_back_on_the_blind_solve(catalog, index_dir):
    data, header = render_real(catalog, seed=6, pointing_error_arcsec=(900.0, 0.0))  # 15' off: beyond refinement
    result = analyze_image(write_fits(data, header), catalog=catalog, astrometry_index_dir=str(index_dir))
    assert result["astrometry"]["method"] == "astrometry.net"
    assert result["wcs_offset_arcsec"] == pytest.approx(900.0, abs=2.0)


def test_an_unsolvable_frame_says_why_and_is_still_measured(catalog):
    data, header = render_real(catalog, seed=7, pointing_error_arcsec=(900.0, 0.0))
    result = analyze_image(write_fits(data, header), catalog=catalog, astrometry_index_dir=None)
    assert result["status"] == "ok"
    assert result["astrometry"]["method"] is None
    assert "refinement" in result["astrometry"]["reason"] and "blind solving is off" in result["astrometry"]["reason"]
    assert result["n_sources"] > 100 and result["zero_point_mag"] is None
