"""Frames from the simulated camera (devices.sky) and calibration masters built from them.

Everything is seeded, so each test sees the same pixels on every run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from analyzer.calibration import Masters, make_master_bias, make_master_dark, make_master_flat
from devices.sky import CameraModel, SkyConditions, catalog_stars, render_frame, write_fits

FIELD_RA_DEG = 150.0
FIELD_DEC_DEG = 30.0
NIGHT_UTC = datetime(2026, 3, 1, 22, 0, tzinfo=UTC)
CAMERA = CameraModel()
DARK_EXPOSURE_S = 30.0
FLAT_EXPOSURE_S = 1.0


def render(
    *,
    when_utc: datetime = NIGHT_UTC,
    exposure_s: float = 10.0,
    filter_name: str = "R",
    frame_type: str = "LIGHT",
    seed: int = 1,
    seeing_arcsec: float = 2.0,
    transients=(),
    ra_deg: float = FIELD_RA_DEG,
    dec_deg: float = FIELD_DEC_DEG,
):
    return render_frame(
        ra_deg=ra_deg,
        dec_deg=dec_deg,
        exposure_s=exposure_s,
        frame_type=frame_type,
        filter_name=filter_name,
        when_utc=when_utc,
        camera=CAMERA,
        conditions=SkyConditions(seeing_fwhm_arcsec=seeing_arcsec),
        transients=transients,
        seed=seed,
        object_name="test field",
    )


def render_fits(**kwargs) -> bytes:
    return write_fits(*render(**kwargs))


def empty_sky_position(ra_deg: float, dec_deg: float, *, clear_arcsec: float = 20.0) -> tuple[float, float]:
    """A position near the field centre with no catalogue star (down to V=22) within ``clear_arcsec``:
    where an injected transient is 'absent from the reference catalogue' and unblended."""
    stars = catalog_stars(ra_deg, dec_deg, 0.1, mag_limit=22.0)
    cos_dec = np.cos(np.radians(dec_deg))
    for step in range(1, 200):
        ra = ra_deg + 0.0013 * step * ((-1) ** step) / cos_dec
        dec = dec_deg - 0.0009 * step
        d_arcsec = np.hypot((stars["ra_deg"] - ra) * cos_dec, stars["dec_deg"] - dec) * 3600.0
        if d_arcsec.min() > clear_arcsec:
            return float(ra), float(dec)
    raise AssertionError("no empty sky found near the field centre")


@pytest.fixture(scope="session")
def masters() -> Masters:
    bias = make_master_bias([render(frame_type="BIAS", exposure_s=0.0, seed=100 + i)[0] for i in range(5)])
    dark = make_master_dark(
        [render(frame_type="DARK", exposure_s=DARK_EXPOSURE_S, seed=200 + i)[0] for i in range(3)],
        DARK_EXPOSURE_S,
        bias,
    )
    flats = {
        name: make_master_flat(
            [render(frame_type="FLAT", exposure_s=FLAT_EXPOSURE_S, filter_name=name, seed=300 + i)[0] for i in range(3)],
            name,
            bias,
            dark,
            exposure_s=FLAT_EXPOSURE_S,
        )
        for name in ("R", "V")
    }
    return Masters(bias=bias, dark=dark, flats=flats)


@pytest.fixture(scope="session")
def light_r_fits() -> bytes:
    return render_fits(seed=7)


def at(seconds: float) -> datetime:
    return NIGHT_UTC + timedelta(seconds=seconds)
