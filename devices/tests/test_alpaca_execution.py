"""A submitted request executes and is analysed on the ASCOM Alpaca simulators exactly as on the INDI
ones: the majordome's claim/execute path (dome, slew, filters, exposures, FITS files, Image rows), the
analyzer's measurements, and an Alpaca device vanishing mid-exposure gives a retryable device error that the
existing retry policy plans again (the abort of a 30 s exposure within a second is majordome/tests/
test_execution.py's abort test, run on both backends; the fixtures come from there).

Selected the way an observatory selects it: ``PYROS_DEVICE_BACKEND=alpaca`` with ``PYROS_ALPACA_PORT``
in the environment, read by ``devices.observatory.connect()`` under ``majordome.device_link``."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from astropy.io import fits

from majordome.tests import test_execution
from majordome.tests.test_execution import claim, make_request

# the fixtures of the execution tests, by name: the Alpaca simulators, and either backend
alpaca_observatory = test_execution.alpaca_observatory
any_observatory = test_execution.any_observatory

pytestmark = [pytest.mark.slow]


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
