"""The FITS files PyROS writes: the standard keywords whatever the camera sent, a WCS DS9/Aladin read
like astropy, and astropy's FITS verification without a single warning."""

from __future__ import annotations

import io
import warnings
from datetime import UTC, datetime

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS

from devices.sky import render_frame, write_fits
from observation_manager.fits_files import ImageContext, add_pyros_headers, header_date_obs

WHEN = datetime(2026, 3, 1, 22, 0, 0, 250000, tzinfo=UTC)
STANDARD_KEYWORDS = ("DATE-OBS", "MJD-OBS", "EXPTIME", "FILTER", "RA", "DEC", "EQUINOX", "RADESYS", "AIRMASS",
                     "OBSERVAT", "TELESCOP", "INSTRUME", "OBJECT", "SITELAT", "SITELONG", "SITEELEV", "CCD-TEMP",
                     "CTYPE1", "CTYPE2", "CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2", "CD1_1", "CD1_2", "CD2_1", "CD2_2")


def _context(**overrides) -> ImageContext:
    values = dict(telescope="T60", detector="Andor iKon", target="GRB 260301A", frame_type="light", filter_name="R",
                  exposure_s=30.0, site_name="OHP", site_lat_deg=43.93, site_lon_deg=5.71, site_elev_m=650.0,
                  request_id=4, sequence_id=5, album_id=6, plan_id=7, index=1, count=3, program="GRB",
                  observer="astronomer@pyros.local", is_alert=True, ra_deg=150.25, dec_deg=30.5,
                  pixel_scale_arcsec=0.8, binning=2)
    values.update(overrides)
    return ImageContext(**values)


def _bare_camera_fits(shape=(512, 640)) -> bytes:
    """What a minimal camera driver sends: pixels and almost nothing else."""
    hdu = fits.PrimaryHDU(np.full(shape, 1000, dtype=np.uint16))
    hdu.header["IMAGETYP"] = "Light Frame"
    out = io.BytesIO()
    hdu.writeto(out)
    return out.getvalue()


def _verified(content: bytes) -> fits.Header:
    """Open as a viewer would, failing on any FITS or WCS warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with fits.open(io.BytesIO(content)) as hdul:
            hdul.verify("exception")
            header = hdul[0].header.copy()
        WCS(header)
    return header


@pytest.mark.parametrize("source", ["bare camera", "simulator"])
def test_every_standard_keyword_is_written_and_verifies_without_warning(source):
    if source == "bare camera":
        content = _bare_camera_fits()
    else:
        data, header = render_frame(ra_deg=150.25, dec_deg=30.5, exposure_s=30.0, filter_name="R", binning=2,
                                    when_utc=WHEN, seed=1)
        content = write_fits(data, header)
    out, header = add_pyros_headers(content, _context(), airmass=1.2345, date_obs=WHEN, ccd_temp_c=-60.0)
    written = _verified(out)
    missing = [key for key in STANDARD_KEYWORDS if key not in written]
    assert missing == []
    assert written["EXPTIME"] == 30.0 and written["FILTER"] == "R" and written["OBJECT"] == "GRB 260301A"
    assert (written["EQUINOX"], written["RADESYS"]) == (2000.0, "ICRS")
    assert written["MJD-OBS"] == pytest.approx(Time(header_date_obs(written)).mjd, abs=1e-8)
    assert written["WCSSRC"] == "pointing"
    # The WCS centre is the pointing, the scale the binned plate scale, north up and east left.
    wcs = WCS(written)
    centre = wcs.pixel_to_world((written["NAXIS1"] - 1) / 2.0, (written["NAXIS2"] - 1) / 2.0)
    assert centre.separation(SkyCoord(150.25, 30.5, unit="deg")).arcsec < 0.01
    east = wcs.pixel_to_world((written["NAXIS1"] - 1) / 2.0 - 100, (written["NAXIS2"] - 1) / 2.0)
    north = wcs.pixel_to_world((written["NAXIS1"] - 1) / 2.0, (written["NAXIS2"] - 1) / 2.0 + 100)
    assert centre.position_angle(east).deg == pytest.approx(90.0, abs=0.01)
    assert centre.position_angle(north).deg == pytest.approx(0.0, abs=0.01) or \
        centre.position_angle(north).deg == pytest.approx(360.0, abs=0.01)
    assert centre.separation(north).arcsec == pytest.approx(100 * 1.6, rel=1e-3)


def test_the_cameras_date_and_temperature_win_and_pyros_fills_the_gaps():
    data, header = render_frame(ra_deg=150.0, dec_deg=30.0, exposure_s=10.0, filter_name="V", when_utc=WHEN, seed=2)
    header["CCD-TEMP"] = -20.5
    out, written = add_pyros_headers(write_fits(data, header), _context(filter_name="V", binning=1), airmass=None,
                                     date_obs=datetime(2026, 3, 1, 23, 0, tzinfo=UTC), ccd_temp_c=-60.0)
    assert written["DATE-OBS"] == "2026-03-01T22:00:00.250"
    assert written["CCD-TEMP"] == -20.5
    assert "AIRMASS" not in written  # unknown: not invented
    _verified(out)


def test_calibration_frames_carry_time_instrument_and_site_but_no_pointing():
    out, written = add_pyros_headers(_bare_camera_fits(), _context(frame_type="bias", filter_name=""), airmass=None,
                                     date_obs=WHEN, ccd_temp_c=-60.0)
    _verified(out)
    for key in ("DATE-OBS", "MJD-OBS", "EXPTIME", "TELESCOP", "INSTRUME", "OBSERVAT", "SITELAT", "CCD-TEMP"):
        assert key in written
    assert "CTYPE1" not in written and "RA" not in written


def test_not_fits_is_refused():
    with pytest.raises(ValueError, match="not a FITS file"):
        add_pyros_headers(b"garbage" * 500, _context(), airmass=None)
