"""Reference catalogues behind one interface: a local file (FITS/CSV/ECSV, Gaia's columns or PyROS's),
Gaia DR3 with its per-field cache (a stub instead of the archive: tests never touch the network), the
simulator's sky, and the settings registry that picks one."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from analyzer import catalogs
from analyzer.tests.realsky import REAL_DEC_DEG, REAL_RA_DEG, gaia_like_table, write_local_catalog
from devices.catalogs import (
    AB_MINUS_VEGA,
    BANDS,
    CatalogError,
    GaiaDR3Catalog,
    LocalCatalogFile,
    SimulatedSkyCatalog,
    catalog_from_spec,
    gaia_to_johnson,
)


@pytest.fixture(scope="module")
def catalog_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("catalogs")


def test_fits_csv_and_ecsv_files_give_the_same_cone(catalog_dir):
    cones = [LocalCatalogFile(write_local_catalog(catalog_dir, fmt)).cone(REAL_RA_DEG, REAL_DEC_DEG, 0.2,
                                                                        epoch_jyear=2026.0)
             for fmt in ("fits", "csv", "ecsv")]
    assert len(cones[0]) > 300
    for other in cones[1:]:
        assert len(other) == len(cones[0])
        assert np.allclose(other["ra_deg"], cones[0]["ra_deg"], atol=1e-9)
        assert np.allclose(other["mag_R"], cones[0]["mag_R"], atol=1e-4, equal_nan=True)
    # Brightest first, all within the radius, magnitudes with errors in V, R, I and Clear; none in U, B.
    stars = cones[0]
    assert np.all(np.diff(stars["mag_V"][np.isfinite(stars["mag_V"])]) >= 0)
    for band in ("V", "R", "I", "Clear"):
        assert np.isfinite(stars[f"mag_{band}"]).mean() > 0.95
        assert np.all(stars[f"mag_{band}_err"][np.isfinite(stars[f"mag_{band}"])] >= 0.03)
    assert not np.isfinite(stars["mag_U"]).any() and not np.isfinite(stars["mag_B"]).any()


def test_a_parquet_file_gives_the_same_cone(catalog_dir):
    pytest.importorskip("pyarrow", reason="Parquet catalogues need pyarrow (pip install pyros[catalogs])")
    fits_cone = LocalCatalogFile(write_local_catalog(catalog_dir, "fits")).cone(REAL_RA_DEG, REAL_DEC_DEG, 0.2)
    parquet_cone = LocalCatalogFile(write_local_catalog(catalog_dir, "parquet")).cone(REAL_RA_DEG, REAL_DEC_DEG, 0.2)
    assert np.array_equal(parquet_cone["ra_deg"], fits_cone["ra_deg"])


def test_gaia_bands_are_transformed_with_the_documented_relations():
    # Riello et al. 2021, table C.2, at BP-RP = 1.0: G-V = -0.21414, G-R = 0.238865, G-I = 0.67843.
    out = gaia_to_johnson(np.array([15.0]), np.array([15.4]), np.array([14.4]))
    assert out["V"][0][0] == pytest.approx(15.0 + 0.21414, abs=1e-4)
    assert out["R"][0][0] == pytest.approx(15.0 - 0.238865, abs=1e-4)
    assert out["I"][0][0] == pytest.approx(15.0 - 0.67843, abs=1e-4)
    assert out["Clear"][0][0] == 15.0
    # Outside the colour range of the fit: no magnitude rather than a wrong one.
    red = gaia_to_johnson(np.array([15.0]), np.array([17.0]), np.array([13.5]))
    assert np.isnan(red["V"][0][0])
    assert set(AB_MINUS_VEGA) == set(BANDS)


def test_proper_motion_is_applied_to_the_epoch_of_the_frame(tmp_path):
    path = tmp_path / "two.csv"
    Table({"ra_deg": [10.0, 10.01], "dec_deg": [0.0, 0.0], "pmra": [0.0, 0.0], "pmdec": [1000.0, 0.0],
           "ref_epoch": [2016.0, 2016.0], "mag_R": [12.0, 13.0], "mag_R_err": [0.02, 0.03]}).write(path)
    catalog = LocalCatalogFile(path)
    at_2016 = catalog.cone(10.0, 0.0, 0.1)
    at_2026 = catalog.cone(10.0, 0.0, 0.1, epoch_jyear=2026.0)
    assert (at_2026["dec_deg"][0] - at_2016["dec_deg"][0]) * 3600.0 == pytest.approx(10.0, abs=1e-6)
    assert at_2026["dec_deg"][1] == at_2016["dec_deg"][1]
    assert at_2026["mag_R_err"][0] == pytest.approx(0.02)


def test_a_file_without_positions_or_missing_says_why(tmp_path):
    path = tmp_path / "bad.csv"
    Table({"x": [1.0], "y": [2.0]}).write(path)
    with pytest.raises(CatalogError, match="no RA/Dec columns"):
        LocalCatalogFile(path).cone(0.0, 0.0, 1.0)
    with pytest.raises(CatalogError, match="not readable"):
        LocalCatalogFile(tmp_path / "absent.fits").cone(0.0, 0.0, 1.0)


def test_gaia_fetches_a_field_once_then_reads_its_cache(tmp_path):
    calls = []

    def archive(ra_deg, dec_deg, radius_deg, g_limit):  # stands for the ESA archive: no network in tests
        calls.append((ra_deg, dec_deg, radius_deg, g_limit))
        return gaia_like_table(ra_deg, dec_deg, radius_deg, g_limit)

    gaia = GaiaDR3Catalog(tmp_path / "cache", query=archive)
    first = gaia.cone(REAL_RA_DEG, REAL_DEC_DEG, 0.2, epoch_jyear=2026.0)
    again = gaia.cone(REAL_RA_DEG + 0.01, REAL_DEC_DEG, 0.2, epoch_jyear=2026.0)  # next frame, same field
    assert len(calls) == 1 and calls[0][2] >= 0.24
    assert len(first) > 300 and np.isfinite(first["mag_R"]).mean() > 0.95
    assert len(again) > 300
    # A new process (new instance) reads the cache on disk; a field elsewhere is fetched.
    offline = GaiaDR3Catalog(tmp_path / "cache", query=lambda *a: pytest.fail("fetched a cached field"))
    assert len(offline.cone(REAL_RA_DEG, REAL_DEC_DEG, 0.2)) == len(gaia.cone(REAL_RA_DEG, REAL_DEC_DEG, 0.2))
    gaia.cone(REAL_RA_DEG + 2.0, REAL_DEC_DEG, 0.2)
    assert len(calls) == 2


def test_the_simulated_sky_goes_through_the_same_interface():
    stars = SimulatedSkyCatalog().cone(150.0, 30.0, 0.2)
    assert len(stars) > 500 and np.isfinite(stars["mag_B"]).all() and (stars["mag_R_err"] > 0).all()
    assert isinstance(catalog_from_spec("simulated"), SimulatedSkyCatalog)
    with pytest.raises(CatalogError, match="unknown catalogue"):
        catalog_from_spec("vizier")


def test_the_settings_pick_the_catalogue_and_name_what_is_missing(catalog_dir):
    path = write_local_catalog(catalog_dir)
    with override_settings(PYROS_REFERENCE_CATALOG={"NAME": "local", "OPTIONS": {"path": str(path)}}):
        assert isinstance(catalogs.reference_catalog(), LocalCatalogFile)
    with override_settings(PYROS_REFERENCE_CATALOG={"NAME": "local", "OPTIONS": {}}):
        with pytest.raises(ImproperlyConfigured, match=r"PYROS_REFERENCE_CATALOG\['OPTIONS'\]\['path'\]"):
            catalogs.reference_catalog()
    with override_settings(PYROS_REFERENCE_CATALOG={"NAME": "usno-b1", "OPTIONS": {}}):
        with pytest.raises(ImproperlyConfigured, match="not in PYROS_CATALOG_CLASSES"):
            catalogs.reference_catalog()
    with override_settings(PYROS_REFERENCE_CATALOG=None):
        assert isinstance(catalogs.reference_catalog(), SimulatedSkyCatalog)
