"""The analyzer's Celery tasks, called directly (the lead's round-trip tests run a real worker): the names other
apps send, the queue they land on, and what they store."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import time_machine
from celery.exceptions import SoftTimeLimitExceeded
from django.utils import timezone

from analyzer import services, tasks
from analyzer.tests.test_services import DUSK_UTC, data_dir, detector, store_calibration_series, store_image  # noqa: F401
from pyros.celery import app, route_task
from pyrosapp import models as m


def test_tasks_are_registered_under_the_names_other_apps_send_and_go_to_the_analysis_queue():
    for name in ("pyros.analyzer.analyze_image", "pyros.analyzer.calibration_masters_build",
                 "pyros.analyzer.analysis_sweep"):
        assert name in app.tasks
        assert route_task(name, (), {}, {}) == {"queue": "analysis"}
    assert tasks.analyze_image.soft_time_limit == tasks.ANALYZE_SOFT_TIME_LIMIT_S
    assert tasks.analyze_image.time_limit > tasks.analyze_image.soft_time_limit


def test_analyze_image_task_stores_the_result(data_dir, detector):  # noqa: F811
    image = store_image(detector, seed=21)

    outcome = tasks.analyze_image.run(image_id=image.pk)

    assert outcome["status"] == "ok" and outcome["image_id"] == image.pk
    assert m.AnalysisResult.objects.get(image=image).zero_point_mag is not None


def test_analyze_image_task_for_a_deleted_image_does_not_raise(db):
    assert tasks.analyze_image.run(image_id=999_999) == {"image_id": 999_999, "status": "missing"}


def test_an_analysis_stopped_by_the_time_limit_is_stored_as_failed(data_dir, detector):  # noqa: F811
    image = store_image(detector, seed=22)
    # The worker's soft time limit arrives as an exception inside the running analysis.
    with mock.patch.object(services, "analyze_image_with_quicklook", side_effect=SoftTimeLimitExceeded()):
        outcome = tasks.analyze_image.run(image_id=image.pk)
    assert outcome["status"] == "failed"
    analysis = m.AnalysisResult.objects.get(image=image)
    assert analysis.status == "failed" and "longer than 120 s" in analysis.failure_reason


def test_masters_task_takes_an_iso_time_and_reports_what_it_built(data_dir, detector):  # noqa: F811
    store_calibration_series(detector)
    when = (DUSK_UTC + timedelta(minutes=30)).isoformat().replace("+00:00", "Z")

    outcome = tasks.calibration_masters_build.run(detector_id=detector.pk, when=when)

    assert outcome["detector_id"] == detector.pk
    assert sorted((row["kind"], row["filter"], row["n_frames"]) for row in outcome["masters"]) == [
        ("bias", "", 3), ("dark", "", 3), ("flat", "R", 3)]
    # Sent again (a retried message): nothing new.
    assert tasks.calibration_masters_build.run(detector_id=detector.pk, when=when)["masters"] == []


def test_masters_task_takes_the_series_name_the_observation_manager_sends(data_dir, detector):  # noqa: F811
    store_calibration_series(detector)
    # The observation manager sends when="dusk" right after the series: its frames are the newest ones.
    with time_machine.travel(DUSK_UTC + timedelta(minutes=12), tick=False):
        outcome = tasks.calibration_masters_build.run(detector_id=detector.pk, when="dusk")
    assert len(outcome["masters"]) == 3
    assert {row.provenance["series"] for row in m.CalibrationMaster.objects.all()} == {"dusk"}


def test_the_sweep_requeues_analyses_never_sent_or_lost(data_dir, detector, django_capture_on_commit_callbacks):  # noqa: F811
    image = store_image(detector, seed=23)
    calibration = store_image(detector, frame_type="BIAS", exposure_s=0.0, seed=24)
    created = timezone.now()
    with mock.patch.object(tasks.analyze_image, "apply_async") as send:
        with django_capture_on_commit_callbacks(execute=True):
            assert tasks.analysis_sweep.run() == {"queued": []}  # just stored: its own message is on its way
        with time_machine.travel(created + timedelta(minutes=3)), django_capture_on_commit_callbacks(execute=True):
            assert tasks.analysis_sweep.run() == {"queued": [image.pk]}  # calibration frames are not analysed
            assert tasks.analysis_sweep.run() == {"queued": []}  # now pending: not sent twice
        with time_machine.travel(created + timedelta(minutes=30)), django_capture_on_commit_callbacks(execute=True):
            assert tasks.analysis_sweep.run() == {"queued": [image.pk]}  # still pending: the message was lost
    assert send.call_args_list == [mock.call(kwargs={"image_id": image.pk})] * 2
    assert not m.AnalysisResult.objects.filter(image=calibration).exists()
