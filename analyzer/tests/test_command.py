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
