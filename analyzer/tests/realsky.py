"""A 'real' star field for the tests, written by the tests themselves: a Gaia-DR3-like cone (G, BP, RP,
flux-over-error, proper motions at epoch 2016.0) built from the simulator's sky at another position,
saved as the file an observatory without internet would keep. The simulated camera renders it through
the catalogue interface, so the analyzer sees a field whose only reference is that file."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from astropy.table import Table

from devices.catalogs import LocalCatalogFile
from devices.sky import CameraModel, SkyConditions, catalog_stars, render_frame, write_fits

REAL_RA_DEG = 210.0
REAL_DEC_DEG = 12.0
CONE_RADIUS_DEG = 0.45
WHEN = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)


def gaia_like_table(ra_deg: float = REAL_RA_DEG, dec_deg: float = REAL_DEC_DEG, radius_deg: float = CONE_RADIUS_DEG,
                    g_limit: float = 21.0) -> Table:
    stars = catalog_stars(ra_deg, dec_deg, radius_deg, mag_limit=g_limit + 0.5)
    rng = np.random.default_rng(zlib.crc32(b"pyros-gaia-like"))
    b_v = np.asarray(stars["mag_B"] - stars["mag_V"], dtype=np.float64)
    bp_rp = np.clip(0.05 + 1.25 * b_v + rng.normal(0.0, 0.05, len(stars)), -0.3, 2.6)
    # G from V with the inverse of Riello et al.'s G-V relation, BP and RP around G with that colour.
    g = stars["mag_V"] + (-0.02704 + 0.01424 * bp_rp - 0.2156 * bp_rp**2 + 0.01426 * bp_rp**3)
    keep = g <= g_limit
    n = int(keep.sum())
    g, bp_rp = g[keep], bp_rp[keep]
    # Proper motions: most stars a few mas/yr, 3% fast movers (up to 300 mas/yr: 3" in ten years).
    pm_ra = rng.normal(0.0, 6.0, n)
    pm_dec = rng.normal(-3.0, 6.0, n)
    fast = rng.random(n) < 0.03
    pm_ra[fast] = rng.uniform(-300.0, 300.0, fast.sum())
    pm_dec[fast] = rng.uniform(-300.0, 300.0, fast.sum())
    # Positions at 2016.0 such that at WHEN (2026.17) they are where the simulator's sky has them.
    years = 2026.17 - 2016.0
    dec = stars["dec_deg"][keep] - pm_dec * years / 3.6e6
    ra = stars["ra_deg"][keep] - pm_ra * years / 3.6e6 / np.cos(np.radians(dec))
    flux_over_error = np.clip(10 ** (0.4 * (21.5 - g)) * 2.0, 5.0, 5000.0)
    return Table({
        "source_id": np.arange(n, dtype=np.int64) + 4_000_000_000,
        "ra": ra, "dec": dec, "pmra": pm_ra, "pmdec": pm_dec, "ref_epoch": np.full(n, 2016.0),
        "phot_g_mean_mag": g.astype(np.float32),
        "phot_bp_mean_mag": (g + 0.45 * bp_rp).astype(np.float32),
        "phot_rp_mean_mag": (g - 0.55 * bp_rp).astype(np.float32),
        "phot_g_mean_flux_over_error": flux_over_error.astype(np.float32),
        "phot_bp_mean_flux_over_error": (flux_over_error / 3).astype(np.float32),
        "phot_rp_mean_flux_over_error": (flux_over_error / 3).astype(np.float32),
    })


def write_local_catalog(directory: Path, fmt: str = "fits") -> Path:
    path = directory / f"gaia_dr3_cone.{fmt}"
    if not path.exists():
        table = gaia_like_table()
        table.write(path, format={"fits": "fits", "csv": "ascii.csv", "ecsv": "ascii.ecsv"}.get(fmt, fmt))
    return path


def render_real(catalog: LocalCatalogFile, *, seed: int = 1, when_utc: datetime = WHEN, filter_name: str = "R",
                exposure_s: float = 30.0, pointing_error_arcsec=(0.0, 0.0), distortion_corner_px: float = 0.0,
                transients=(), ra_deg: float = REAL_RA_DEG, dec_deg: float = REAL_DEC_DEG):
    return render_frame(
        ra_deg=ra_deg, dec_deg=dec_deg, exposure_s=exposure_s, filter_name=filter_name, when_utc=when_utc,
        camera=CameraModel(), conditions=SkyConditions(seeing_fwhm_arcsec=2.0), transients=transients, seed=seed,
        object_name="real field", catalog=catalog, pointing_error_arcsec=pointing_error_arcsec,
        distortion_corner_px=distortion_corner_px,
    )


def render_real_fits(catalog: LocalCatalogFile, **kwargs) -> bytes:
    return write_fits(*render_real(catalog, **kwargs))
