"""Dusk/dawn calibrations on the simulators: bias, dark and flat series stored as Images of their
type, then the analyzer is asked for masters."""

import pytest
from astropy.io import fits
from django.conf import settings

from pyrosapp.models import Detector, Image, ObservatoryState

pytestmark = [pytest.mark.slow]


def test_calibration_series_are_taken_and_stored(night_observatory, monkeypatch):
    from observation_manager import services

    seed, _port = night_observatory
    Detector.objects.filter(pk=seed.detector.pk).update(calibration_plan={
        "bias": 3, "darks": [[1.0, 2]], "flats": {"R": 2}, "flat_exposure_s": 0.5})
    requested = []
    monkeypatch.setattr(services, "_request_masters", lambda detector_id, when: requested.append((detector_id, when)))
    state = ObservatoryState.objects.get()
    ObservatoryState.objects.filter(pk=state.pk).update(progress={"kind": "calibration", "token": "t1"})
    assert services.calibrations_run(when="dusk", token="t1") == 7
    kinds = sorted(Image.objects.values_list("frame_type", "filter_name", "exposure_s"))
    assert kinds == [("bias", "", 0.0)] * 3 + [("dark", "", 1.0)] * 2 + [("flat", "R", 0.5)] * 2
    for image in Image.objects.all():
        header = fits.getheader(settings.PYROS_DATA_DIR / image.file_path)
        assert header["PYFRAME"] == image.frame_type
        assert image.plan_id is None and image.sequence_id is None
    flat = Image.objects.filter(frame_type="flat").first()
    assert fits.getheader(settings.PYROS_DATA_DIR / flat.file_path)["FILTER"] == "R"
    assert requested == [(seed.detector.pk, "dusk")]
    assert ObservatoryState.objects.get().progress == {}  # the telescope is free again
