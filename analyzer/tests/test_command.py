"""``python manage.py analyze_image FILE --json``: same pipeline, printed."""

from __future__ import annotations

import io
import json

import pytest

pytest.importorskip("django")
from django.core.management import call_command  # noqa: E402

from analyzer.tests.conftest import NIGHT_UTC, at, empty_sky_position, render_fits  # noqa: E402
from devices.sky import Transient  # noqa: E402


def _run(*args: str) -> tuple[str, int]:
    out = io.StringIO()
    try:
        call_command("analyze_image", *args, stdout=out)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return out.getvalue(), code


def test_json_output_of_a_good_frame_says_it_ran_without_masters(tmp_path, light_r_fits):
    path = tmp_path / "light.fits"
    path.write_bytes(light_r_fits)
    output, code = _run(str(path), "--json")
    result = json.loads(output)
    assert code == 0 and result["status"] == "ok"
    assert result["n_sources"] > 100 and result["zero_point_mag"] > 20
    assert any("no calibration masters" in w for w in result["warnings"])


def test_masters_and_burst_from_the_command_line(tmp_path, masters):
    for name, master in (("bias", masters.bias), ("dark", masters.dark), ("flat", masters.flats["R"])):
        (tmp_path / f"{name}.fits").write_bytes(master.to_fits_bytes())
    ra, dec = empty_sky_position(150.0, 30.0)
    light = tmp_path / "alert.fits"
    light.write_bytes(render_fits(when_utc=at(300), seed=90,
                                  transients=(Transient(ra_deg=ra, dec_deg=dec, mag0=15.0, t0_utc=NIGHT_UTC),)))
    png = tmp_path / "ql.png"
    output, code = _run(str(light), "--json", "--bias", str(tmp_path / "bias.fits"), "--dark",
                        str(tmp_path / "dark.fits"), "--flat", str(tmp_path / "flat.fits"), "--burst-ra", str(ra),
                        "--burst-dec", str(dec), "--burst-error", "0.05", "--burst-t0", NIGHT_UTC.isoformat(),
                        "--png", str(png))
    result = json.loads(output)
    assert code == 0
    assert [m["kind"] for m in result["calibrated_with"]] == ["bias", "dark", "flat"]
    assert result["n_candidates"] >= 1 and result["candidates"][0]["kind"] == "new"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_corrupt_file_prints_the_reason_and_exits_1(tmp_path):
    path = tmp_path / "broken.fits"
    path.write_bytes(b"SIMPLE  = garbage")
    output, code = _run(str(path))
    assert code == 1
    assert output.startswith("failed:") and "corrupt or unreadable FITS" in output


def test_a_frame_written_by_pyros_with_a_configured_local_catalogue_is_solved_and_calibrated(tmp_path):
    """The issue's 'done when': PyROS's own FILE (standard headers, pointing WCS 2' off the sky), a
    local catalogue named in the settings -> a solved WCS, a zero point and the limiting magnitude."""
    from django.test import override_settings

    from analyzer.tests.realsky import REAL_DEC_DEG, REAL_RA_DEG, render_real, write_local_catalog
    from devices.catalogs import LocalCatalogFile
    from devices.sky import write_fits
    from observation_manager.fits_files import ImageContext, add_pyros_headers

    catalog_path = write_local_catalog(tmp_path)
    camera_fits = write_fits(*render_real(LocalCatalogFile(catalog_path), seed=9, pointing_error_arcsec=(100.0, 60.0)))
    ctx = ImageContext(telescope="T60", detector="PyROS Simulated Camera", target="field", frame_type="light",
                       filter_name="R", exposure_s=30.0, site_name="OHP", site_lat_deg=43.93, site_lon_deg=5.71,
                       site_elev_m=650.0, ra_deg=REAL_RA_DEG, dec_deg=REAL_DEC_DEG, pixel_scale_arcsec=1.0)
    written, _ = add_pyros_headers(camera_fits, ctx, airmass=1.3, ccd_temp_c=-60.0)
    path = tmp_path / "pyros.fits"
    path.write_bytes(written)
    with override_settings(PYROS_REFERENCE_CATALOG={"NAME": "local", "OPTIONS": {"path": str(catalog_path)}}):
        output, code = _run(str(path))
    assert code == 0, output
    assert "WCS solved by refine" in output
    assert "catalogue: local catalogue gaia_dr3_cone.fits" in output
    result_lines = dict(line.split(":", 1) for line in output.splitlines() if line.startswith(("zero point",)))
    assert float(result_lines["zero point"].split("+-")[0]) > 23.0
    assert "limiting mag (5 sigma): 2" in output
