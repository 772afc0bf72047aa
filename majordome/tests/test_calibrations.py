"""Dusk/dawn calibrations on the simulators: bias, dark and flat series stored as Images of their
type, then the analyzer is asked for masters."""

import pytest
from astropy.io import fits
from django.conf import settings

from pyrosapp.models import Detector, Image, ObservatoryState

pytestmark = [pytest.mark.slow]


def test_calibration_series_are_taken_and_stored(night_observatory, monkeypatch):
    from majordome.execution import calibrations_execute
    from observation_manager import services

    seed, _port = night_observatory
    Detector.objects.filter(pk=seed.detector.pk).update(calibration_plan={
        "bias": 3, "darks": [[1.0, 2]], "flats": {"R": 2}, "flat_exposure_s": 0.5})
    requested = []
    monkeypatch.setattr(services, "send_after_commit", lambda name, **kw: requested.append((name, kw)))
    state = ObservatoryState.objects.get()
    ObservatoryState.objects.filter(pk=state.pk).update(progress={"kind": "calibration", "token": "t1"})
    assert calibrations_execute(when="dusk", token="t1") == 7
    kinds = sorted(Image.objects.values_list("frame_type", "filter_name", "exposure_s"))
    assert kinds == [("bias", "", 0.0)] * 3 + [("dark", "", 1.0)] * 2 + [("flat", "R", 0.5)] * 2
    for image in Image.objects.all():
        header = fits.getheader(settings.PYROS_DATA_DIR / image.file_path)
        assert header["PYFRAME"] == image.frame_type
        assert image.plan_id is None and image.sequence_id is None
    flat = Image.objects.filter(frame_type="flat").first()
    assert fits.getheader(settings.PYROS_DATA_DIR / flat.file_path)["FILTER"] == "R"
    assert requested == [("pyros.analyzer.calibration_masters_build", {"detector_id": seed.detector.pk, "when": "dusk"})]
    assert ObservatoryState.objects.get().progress == {}  # the telescope is free again
