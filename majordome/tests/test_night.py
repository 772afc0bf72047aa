"""A night on the simulators with real Celery workers: submit -> schedule -> execute -> FITS and
Image rows -> request completed; the next sequence follows within a second."""

from __future__ import annotations

from datetime import timedelta

import pytest
from astropy.io import fits
from django.conf import settings as django_settings
from django.utils import timezone

from common.testing import celery_worker, scaled_s, wait_until, zenith_target
from pyrosapp.models import Image, Request, Sequence
from routine_manager.builder import RequestBuilder

pytestmark = [pytest.mark.slow]


def submit(seed, name, dec_offset_deg):
    ra, dec = zenith_target(seed.site, dec_offset_deg=dec_offset_deg)
    now = timezone.now()
    builder = RequestBuilder(owner=seed.program.pi, program=seed.program, name=name)
    builder.add_sequence(name=name, target_name=name, ra_deg=ra, dec_deg=dec, window_start=now + timedelta(seconds=5),
                         window_end=now + timedelta(hours=2), priority=5, min_altitude_deg=30
                         ).add_album(detector=seed.detector.name).add_plan(filter="R", exposure_s=1.0, count=2)
    return builder.save(submit=True)  # validated, observability included


def test_submitted_requests_are_scheduled_and_executed(night_observatory, settings, tmp_path):
    from majordome.night import majordome_tick
    from scheduler.services import schedule_make

    seed, port = night_observatory
    first = submit(seed, "Field A", -5.0)
    second = submit(seed, "Field B", +5.0)
    outcome = schedule_make(reason="test night")
    assert outcome.planned == 2, outcome
    assert set(Sequence.objects.values_list("status", flat=True)) == {"planned"}
    env = {"PYROS_INDI_PORT": str(port), "PYROS_DATA_DIR": str(settings.PYROS_DATA_DIR)}
    with celery_worker("execution", env=env, log_path=tmp_path / "worker.log"), \
            celery_worker("scheduling", env=env, log_path=tmp_path / "scheduling.log"):
        wait_until(lambda: majordome_tick().startswith("dispatched"), timeout_s=30, interval_s=1,
                   what="first sequence dispatched")
        wait_until(lambda: Request.objects.filter(status="completed").count() == 2, timeout_s=120, interval_s=0.5,
                   what="both requests completed")
    seqs = sorted(Sequence.objects.all(), key=lambda s: s.started_at)
    gap_s = (seqs[1].started_at - seqs[0].ended_at).total_seconds()
    assert gap_s < scaled_s(1.0), f"next sequence started {gap_s:.2f} s after the previous ended"
    for request in (first, second):
        images = Image.objects.filter(sequence__request=request).order_by("index_in_plan")
        assert images.count() == 2
        header = fits.getheader(django_settings.PYROS_DATA_DIR / images[0].file_path)
        assert header["PYREQID"] == request.pk and header["OBJECT"] == request.name
        assert header["IMAGETYP"].lower().startswith("light")
