"""A submitted request executes and is analysed on the ASCOM Alpaca simulators exactly as on the INDI
ones: the majordome's claim/execute path (dome, slew, filters, exposures, FITS files, Image rows), the
analyzer's measurements, an abort of a 30 s exposure within a second, and an Alpaca device vanishing
mid-exposure gives a retryable device error that the existing retry policy plans again.

Selected the way an observatory selects it: ``PYROS_DEVICE_BACKEND=alpaca`` with ``PYROS_ALPACA_PORT``
in the environment, read by ``devices.observatory.connect()`` under ``majordome.device_link``."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from astropy.io import fits

from common.testing import scaled_s, zenith_target
from devices.interfaces import Site as DeviceSite
from devices.testing import AlpacaSimulators, alpaca_simulators_unavailable_reason
from majordome.tests.test_execution import claim, make_request

pytestmark = [pytest.mark.slow]


def _night(seed, settings, tmp_path) -> None:
    from pyrosapp.models import ObservatoryState, Telescope

    Telescope.objects.update(settle_s=0.0)
    ObservatoryState.objects.filter(site=seed.site).update(phase="night", safety="safe", mode="automatic")
    settings.PYROS_DATA_DIR = tmp_path / "data"


@pytest.fixture
def alpaca_observatory(transactional_db, settings, tmp_path, monkeypatch):
    """The demo observatory at night on the Alpaca simulators (all devices), the sky around the zenith
    rendered from devices.sky's catalogue."""
    import os

    from majordome.device_link import reset_observatory
    from pyros.demo import seed_demo

    reason = alpaca_simulators_unavailable_reason()
    if reason:
        if os.environ.get("PYROS_REQUIRE_SERVICES") == "1":
            pytest.fail(f"required in CI: {reason}")
        pytest.skip(reason)
    seed = seed_demo()
    _night(seed, settings, tmp_path)
    site = seed.site
    ra, dec = zenith_target(site)
    sims = AlpacaSimulators(
        tmp_path / "alpaca",
        site=DeviceSite(site.latitude_deg, site.longitude_deg, site.elevation_m),
        fields=[(ra, dec, 1.0)],
        slew_rate_deg_s=20.0,
    ).start()
    monkeypatch.setenv("PYROS_DEVICE_BACKEND", "alpaca")
    monkeypatch.setenv("PYROS_ALPACA_HOST", sims.host)
    monkeypatch.setenv("PYROS_ALPACA_PORT", str(sims.port))
    reset_observatory()
    try:
        yield seed, sims
    finally:
        reset_observatory()
        sims.stop()


@pytest.fixture(params=["indi", "alpaca"])
def any_observatory(request, transactional_db):
    """The same test on the INDI simulators (the reference) and on the Alpaca ones."""
    fixture = "night_observatory" if request.param == "indi" else "alpaca_observatory"
    seed, _ = request.getfixturevalue(fixture)
    return request.param, seed


def test_a_sequence_executes_and_is_analysed_on_either_backend(any_observatory):
    from django.conf import settings

    from analyzer.services import image_analyze
    from majordome.device_link import get_observatory
    from majordome.execution import sequence_execute
    from pyrosapp.models import Allocation, Image, Plan

    backend, seed = any_observatory
    request, sequence = make_request(seed)
    token = claim(sequence)
    assert sequence_execute(sequence_id=sequence.pk, token=token) == "completed"
    assert get_observatory().backends["camera"] == backend

    sequence.refresh_from_db()
    request.refresh_from_db()
    assert sequence.status == "completed" and request.status == "completed"
    images = list(Image.objects.filter(sequence=sequence).order_by("plan__order", "index_in_plan"))
    assert [(i.filter_name, i.index_in_plan) for i in images] == [("R", 1), ("R", 2), ("V", 1)]
    assert all(p.status == "completed" and p.images_done == p.count for p in Plan.objects.filter(
        album__sequence=sequence))
    first = images[0]
    path = Path(settings.PYROS_DATA_DIR) / first.file_path
    assert path.exists() and "Zenith_R_1s" in path.name
    header = fits.getheader(path)
    assert header["PYREQID"] == request.pk and header["PYSEQID"] == sequence.pk
    assert header["FILTER"] == "R" and header["EXPTIME"] == pytest.approx(1.0)
    assert header["OBSERVAT"] == seed.site.name and 1.0 <= header["AIRMASS"] < 1.2
    assert abs(header["CRVAL1"] - sequence.ra_deg) < 0.05 and abs(header["CRVAL2"] - sequence.dec_deg) < 0.05
    assert sequence.used_s > 3.0
    assert Allocation.objects.get(program=seed.program).used_s == pytest.approx(sequence.used_s, rel=1e-6)

    # analysed as on INDI: stars found, the WCS agrees with the reference catalogue, seeing and zero point
    for image in images:
        analysis = image_analyze(image_id=image.pk)
        assert analysis.status == "ok", f"{backend}: {analysis.failure_reason}"
        assert analysis.n_sources >= 20
        assert 1.0 < analysis.fwhm_arcsec < 5.0
        assert analysis.zero_point_mag is not None
        assert (analysis.results.get("n_matched") or 0) >= 10, analysis.results
        assert analysis.wcs_offset_arcsec is not None and analysis.wcs_offset_arcsec < 5.0


def test_abort_of_a_30_s_alpaca_exposure_within_a_second(alpaca_observatory):
    from majordome.controls import observatory_abort
    from majordome.execution import sequence_execute
    from pyrosapp.models import Image, Plan

    seed, _sims = alpaca_observatory
    request, sequence = make_request(seed, plans=(("R", 1.0, 1), ("B", 30.0, 2)))
    token = claim(sequence)
    result = {}
    runner = threading.Thread(target=lambda: result.update(status=sequence_execute(sequence_id=sequence.pk,
                                                                                   token=token)))
    runner.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if Plan.objects.filter(album__sequence=sequence, filter__name="B", status="running").exists() and \
                Image.objects.filter(sequence=sequence).count() == 1:
            break
        time.sleep(0.1)
    time.sleep(1.5)  # well inside the 30 s exposure
    t0 = time.monotonic()
    assert observatory_abort(by="operator@test") == sequence.pk
    runner.join(timeout=10)
    elapsed = time.monotonic() - t0
    assert not runner.is_alive()
    assert elapsed < scaled_s(1.5), f"abort took {elapsed:.2f} s"
    assert result["status"] == "partially_completed"
    sequence.refresh_from_db()
    assert "aborted by operator@test" in sequence.status_reason
    assert Image.objects.filter(sequence=sequence).count() == 1


def test_an_alpaca_device_vanishing_mid_exposure_is_retried(alpaca_observatory):
    """The Alpaca server dies during an exposure: a transient device error, the sequence goes back to
    pending with one device retry counted (the existing policy); with the server back it completes."""
    from majordome.execution import sequence_execute
    from pyrosapp.models import Image, Sequence

    seed, sims = alpaca_observatory
    request, sequence = make_request(seed, plans=(("R", 1.0, 1), ("V", 10.0, 1)))
    token = claim(sequence)
    result = {}
    runner = threading.Thread(target=lambda: result.update(status=sequence_execute(sequence_id=sequence.pk,
                                                                                   token=token)))
    runner.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not Image.objects.filter(sequence=sequence).exists():
        time.sleep(0.1)
    time.sleep(2.0)  # inside the 10 s V exposure
    sims.kill()
    runner.join(timeout=30)
    assert not runner.is_alive()
    assert result["status"] == "pending"
    sequence = Sequence.objects.get(pk=sequence.pk)
    assert sequence.device_retries == 1
    assert "DeviceDisconnected" in sequence.status_reason and "planned again" in sequence.status_reason
    assert Image.objects.filter(sequence=sequence).count() == 1  # the R image is kept

    sims.start()  # the device is back: the retry runs the rest
    token = claim(sequence)
    assert sequence_execute(sequence_id=sequence.pk, token=token) == "completed"
    assert sorted(Image.objects.filter(sequence=sequence).values_list("filter_name", flat=True)) == ["R", "V"]
