"""analyzer.services and selectors on simulated-camera FITS files stored under a temporary PYROS_DATA_DIR:
what an operator or astronomer later reads on the image, request and alert pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from analyzer import selectors, services
from analyzer.afterglow import angular_separation_deg
from analyzer.tests.conftest import (
    CAMERA,
    DARK_EXPOSURE_S,
    FIELD_DEC_DEG,
    FIELD_RA_DEG,
    FLAT_EXPOSURE_S,
    NIGHT_UTC,
    empty_sky_position,
    render_fits,
)
from devices.sky import Transient
from pyrosapp import models as m
from pyrosapp.tests import factories as f

DUSK_UTC = NIGHT_UTC - timedelta(hours=2)
# Alert images 5, 7.5, 10 and 15 minutes after the burst, as an alert sequence takes them.
ALERT_IMAGE_TIMES_S = (300.0, 450.0, 600.0, 900.0)
ALERT_EXPOSURE_S = 10.0
_FITS_CACHE: dict[tuple, bytes] = {}


def cached_fits(**kwargs) -> bytes:
    """Rendering a frame takes ~0.3 s: the same seeded frame is rendered once per test session."""
    key = tuple(sorted((k, repr(v)) for k, v in kwargs.items()))
    if key not in _FITS_CACHE:
        _FITS_CACHE[key] = render_fits(**kwargs)
    return _FITS_CACHE[key]


@pytest.fixture
def data_dir(settings, tmp_path) -> Path:
    settings.PYROS_DATA_DIR = tmp_path / "data"
    settings.PYROS_DATA_DIR.mkdir()
    return settings.PYROS_DATA_DIR


@pytest.fixture
def detector(db) -> m.Detector:
    return f.DetectorFactory(width_px=CAMERA.width_px, height_px=CAMERA.height_px)


def store_image(detector: m.Detector, *, when_utc: datetime = NIGHT_UTC, frame_type: str = "LIGHT",
                filter_name: str = "R", exposure_s: float = 10.0, seed: int = 1, sequence: m.Sequence | None = None,
                content: bytes | None = None, transients=()) -> m.Image:
    """What the observation manager does: write the FITS file under PYROS_DATA_DIR, then the Image row."""
    from django.conf import settings

    if content is None:
        content = cached_fits(when_utc=when_utc, frame_type=frame_type, filter_name=filter_name,
                              exposure_s=exposure_s, seed=seed, transients=tuple(transients))
    relative = f"raw/{when_utc:%Y-%m-%d}/{frame_type.lower()}_{filter_name}_{when_utc:%H%M%S}_{seed}.fits"
    path = Path(settings.PYROS_DATA_DIR) / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return m.Image.objects.create(
        detector=detector, sequence=sequence, frame_type=frame_type.lower(), file_path=relative, date_obs=when_utc,
        exposure_s=0.0 if frame_type == "BIAS" else exposure_s, filter_name=filter_name,
        ra_deg=FIELD_RA_DEG, dec_deg=FIELD_DEC_DEG,
    )


def store_calibration_series(detector: m.Detector, *, start_utc: datetime = DUSK_UTC, filters=("R",)) -> list[m.Image]:
    """A dusk series as the calibration plan takes it: 3 bias, 3 darks, 3 flats per filter, a minute apart."""
    images, k = [], 0
    plan = [("BIAS", "R", 0.0)] * 3 + [("DARK", "R", DARK_EXPOSURE_S)] * 3
    plan += [("FLAT", name, FLAT_EXPOSURE_S) for name in filters for _ in range(3)]
    for frame_type, filter_name, exposure_s in plan:
        images.append(store_image(detector, when_utc=start_utc + timedelta(minutes=k), frame_type=frame_type,
                                  filter_name=filter_name, exposure_s=exposure_s, seed=900 + k))
        k += 1
    return images


# --------------------------------------------------------------------------------------------
# One science image
# --------------------------------------------------------------------------------------------


def test_a_light_frame_is_measured_and_its_quicklook_stored(data_dir, detector):
    image = store_image(detector, seed=3)

    analysis = services.image_analyze(image_id=image.pk)

    analysis.refresh_from_db()
    assert analysis.status == m.AnalysisResult.Status.OK, analysis.failure_reason
    assert analysis.failure_reason == ""
    # No masters yet: a raw frame, whose vignetted corners pull the zero point down a little.
    assert analysis.zero_point_mag == pytest.approx(CAMERA.zero_points["R"], abs=0.15)
    assert analysis.fwhm_arcsec == pytest.approx(2.0, rel=0.1)
    assert analysis.n_sources > 100
    assert analysis.limiting_mag > 18.0
    assert analysis.wcs_offset_arcsec < 0.5
    assert analysis.results["calibrated_with"] == []
    assert any("no calibration masters" in note for note in analysis.results["warnings"])
    assert analysis.candidates == [] and analysis.results["burst"] is None
    png = data_dir / analysis.quicklook_path
    assert analysis.quicklook_path.startswith("quicklook/") and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_reanalysing_updates_the_one_result(data_dir, detector):
    image = store_image(detector, seed=4)
    first = services.image_analyze(image_id=image.pk)
    first_values = (first.zero_point_mag, first.fwhm_arcsec, first.n_sources, first.quicklook_path)

    second = services.image_analyze(image_id=image.pk)

    assert m.AnalysisResult.objects.filter(image=image).count() == 1
    assert second.pk == first.pk
    assert (second.zero_point_mag, second.fwhm_arcsec, second.n_sources, second.quicklook_path) == first_values
    assert len(list((data_dir / "quicklook").rglob("*.png"))) == 1


@pytest.mark.parametrize("content, reason", [
    (b"SIMPLE  =                    T" + b"garbage" * 200, "corrupt or unreadable FITS"),
    (b"", "empty file"),
])
def test_a_corrupt_file_is_stored_as_failed_with_its_reason(data_dir, detector, content, reason):
    image = store_image(detector, content=content)

    analysis = services.image_analyze(image_id=image.pk)

    analysis.refresh_from_db()
    assert analysis.status == m.AnalysisResult.Status.FAILED
    assert reason in analysis.failure_reason
    assert analysis.quicklook_path == ""
    assert selectors.analysis_queue_status()["failed"] == 1


def test_a_missing_file_or_a_path_outside_the_data_directory_fails_cleanly(data_dir, detector):
    image = store_image(detector, seed=5)
    (data_dir / image.file_path).unlink()
    assert "no such file" in services.image_analyze(image_id=image.pk).failure_reason

    outside = m.Image.objects.create(detector=detector, file_path="../../etc/passwd", date_obs=NIGHT_UTC,
                                     exposure_s=10.0, filter_name="R")
    analysis = services.image_analyze(image_id=outside.pk)
    assert analysis.status == "failed" and "outside the data directory" in analysis.failure_reason


def test_calibration_frames_are_skipped(data_dir, detector):
    bias = store_image(detector, frame_type="BIAS", exposure_s=0.0, seed=6)
    analysis = services.image_analyze(image_id=bias.pk)
    assert analysis.status == m.AnalysisResult.Status.SKIPPED
    assert "calibration frame (bias)" in analysis.failure_reason
    assert selectors.analysis_queue_status() == {"pending": 0, "running": 0, "failed": 0, "ok": 0}


def test_queue_status_counts_images_waiting_for_their_analysis(data_dir, detector):
    waiting = store_image(detector, seed=7)
    done = store_image(detector, seed=8, when_utc=NIGHT_UTC + timedelta(minutes=1))
    services.image_analyze(image_id=done.pk)
    assert selectors.analysis_queue_status() == {"pending": 1, "running": 0, "failed": 0, "ok": 1}
    m.AnalysisResult.objects.create(image=waiting, status=m.AnalysisResult.Status.RUNNING)
    assert selectors.analysis_queue_status() == {"pending": 0, "running": 1, "failed": 0, "ok": 1}


# --------------------------------------------------------------------------------------------
# Calibration masters
# --------------------------------------------------------------------------------------------


def test_a_calibration_series_builds_masters_that_the_next_analysis_uses(data_dir, detector):
    series = store_calibration_series(detector, filters=("R", "V"))
    series_end = DUSK_UTC + timedelta(minutes=len(series))

    built = services.calibration_masters_build(detector_id=detector.pk, when=series_end)

    assert sorted((mm.kind, mm.filter_name) for mm in built) == [("bias", ""), ("dark", ""), ("flat", "R"),
                                                                  ("flat", "V")]
    by_kind = {(mm.kind, mm.filter_name): mm for mm in built}
    bias, dark, flat_r = by_kind[("bias", "")], by_kind[("dark", "")], by_kind[("flat", "R")]
    assert set(bias.source_images.all()) == {img for img in series if img.frame_type == "bias"}
    assert set(flat_r.source_images.values_list("filter_name", flat=True)) == {"R"}
    assert bias.n_frames == 3 and flat_r.n_frames == 3
    assert bias.provenance["level"] == pytest.approx(CAMERA.bias_adu, abs=5.0)
    assert dark.provenance["bias_master_id"] == bias.pk
    assert flat_r.provenance["bias_master_id"] == bias.pk and flat_r.provenance["dark_master_id"] == dark.pk
    for master in built:
        assert (data_dir / master.file_path).is_file() and master.file_path.startswith("masters/")

    # The same task sent again finds no new frames.
    assert services.calibration_masters_build(detector_id=detector.pk, when=series_end) == []
    assert m.CalibrationMaster.objects.count() == 4

    # The night's first image is calibrated with them, and says so.
    image = store_image(detector, seed=9)
    analysis = services.image_analyze(image_id=image.pk)
    assert analysis.status == "ok", analysis.failure_reason
    used = analysis.results["calibrated_with"]
    assert [(u["kind"], u["id"]) for u in used] == [("bias", bias.pk), ("dark", dark.pk), ("flat", flat_r.pk)]
    assert used[0]["source_ids"] == sorted(img.pk for img in series if img.frame_type == "bias")
    # Flat-fielded: the zero point is the camera's to a few hundredths.
    assert analysis.zero_point_mag == pytest.approx(CAMERA.zero_points["R"], abs=0.05)
    assert [mm["row"] for mm in selectors.masters_used_by(analysis)] == [bias, dark, flat_r]


def test_masters_never_apply_to_images_taken_before_them_nor_when_invalidated(data_dir, detector):
    store_calibration_series(detector)
    services.calibration_masters_build(detector_id=detector.pk, when=DUSK_UTC + timedelta(hours=1))
    earlier = store_image(detector, when_utc=DUSK_UTC - timedelta(hours=1), seed=10)
    assert services.image_analyze(image_id=earlier.pk).results["calibrated_with"] == []

    m.CalibrationMaster.objects.filter(kind="dark").update(is_valid=False)
    later = store_image(detector, seed=11)
    kinds = [u["kind"] for u in services.image_analyze(image_id=later.pk).results["calibrated_with"]]
    assert kinds == ["bias", "flat"]


def test_a_short_or_bad_series_is_not_combined(data_dir, detector):
    for k in range(2):  # two bias frames are not enough
        store_image(detector, frame_type="BIAS", exposure_s=0.0, when_utc=DUSK_UTC + timedelta(minutes=k), seed=950 + k)
    flats = [store_image(detector, frame_type="FLAT", exposure_s=1.0, when_utc=DUSK_UTC + timedelta(minutes=5 + k),
                         seed=960 + k) for k in range(4)]
    (data_dir / flats[1].file_path).write_bytes(b"not a fits file at all" * 100)

    built = services.calibration_masters_build(detector_id=detector.pk, when=DUSK_UTC + timedelta(hours=1))

    assert [(mm.kind, mm.n_frames) for mm in built] == [("flat", 3)]
    assert flats[1] not in built[0].source_images.all()
    assert "corrupt" in built[0].provenance["frames_left_out"][0]


# --------------------------------------------------------------------------------------------
# An alert event and its afterglow
# --------------------------------------------------------------------------------------------


def make_alert_request(detector: m.Detector, *, burst_time: datetime = NIGHT_UTC, owner=None):
    """An alert event with its error circle (3 arcmin, centred 1 arcmin off the afterglow) and its request."""
    ra, dec = empty_sky_position(FIELD_RA_DEG, FIELD_DEC_DEG)
    event = m.AlertEvent.objects.create(name="GRB 260301A", burst_time=burst_time, ra_deg=ra, dec_deg=dec + 1 / 60,
                                        error_deg=0.05, status=m.AlertEvent.Status.OBSERVING)
    request = f.RequestFactory(is_alert=True, alert_event=event, **({"owner": owner} if owner else {}))
    sequence = f.SequenceFactory(request=request, ra_deg=FIELD_RA_DEG, dec_deg=FIELD_DEC_DEG)
    transient = Transient(ra_deg=ra, dec_deg=dec, mag0=15.0, t0_utc=burst_time, decay_index=1.0, t_ref_s=60.0)
    return event, sequence, transient


def store_alert_images(detector, sequence, transient, times_s=ALERT_IMAGE_TIMES_S) -> list[m.Image]:
    return [store_image(detector, when_utc=NIGHT_UTC + timedelta(seconds=t_s), exposure_s=ALERT_EXPOSURE_S,
                        seed=40 + k, sequence=sequence, transients=(transient,))
            for k, t_s in enumerate(times_s)]


def test_an_alert_event_gets_a_fading_light_curve_from_its_images(data_dir, detector):
    event, sequence, transient = make_alert_request(detector)
    images = store_alert_images(detector, sequence, transient)
    empty = selectors.event_light_curve(event)
    assert empty["n_images"] == 0 and empty["has_track"] is False

    for image in images:
        analysis = services.image_analyze(image_id=image.pk)
        assert analysis.status == "ok", analysis.failure_reason
        assert analysis.results["burst"]["error_deg"] == pytest.approx(0.05)
        assert analysis.candidates and analysis.candidates[0]["kind"] == "new"

    curve = selectors.event_light_curve(event)

    assert curve["has_track"] and curve["n_images"] == 4
    assert [p["t_s"] for p in curve["points"]] == pytest.approx([t + ALERT_EXPOSURE_S / 2 for t in ALERT_IMAGE_TIMES_S])
    mags = [p["mag"] for p in curve["points"]]
    assert all(later > earlier for earlier, later in zip(mags, mags[1:], strict=False))
    assert curve["decay_index"] == pytest.approx(1.0, abs=0.15) and curve["fading"] is True
    assert [p["image_id"] for p in curve["points"]] == [img.pk for img in images]
    offset_arcsec = float(angular_separation_deg(curve["track"]["ra_deg"], curve["track"]["dec_deg"],
                                                 transient.ra_deg, transient.dec_deg)) * 3600.0
    assert offset_arcsec < 1.0
    candidates = selectors.event_candidates(event)
    assert candidates[0]["rank"] == 1 and candidates[0]["n_detections"] == 4 and candidates[0]["fading"] is True
    assert [img.pk for img in selectors.images_for_request(sequence.request_id)] == [img.pk for img in images]
    assert list(selectors.images_for_sequence(sequence.pk)) == images


def test_a_late_image_that_misses_the_afterglow_gives_an_upper_limit(data_dir, detector):
    event, sequence, transient = make_alert_request(detector)
    # Two detections, then two hours later the afterglow (R ~20.2) is below the frame's limit (~19.9).
    images = store_alert_images(detector, sequence, transient, times_s=(300.0, 600.0, 7200.0))
    for image in images:
        services.image_analyze(image_id=image.pk)

    curve = selectors.event_light_curve(event)

    assert len(curve["points"]) == 2
    late = m.AnalysisResult.objects.get(image=images[2])
    assert curve["upper_limits"] == [{"t_s": pytest.approx(7205.0), "limiting_mag": late.limiting_mag,
                                      "time_utc": late.results["mid_time_utc"], "image_id": images[2].pk}]


def test_an_ordinary_request_image_has_no_afterglow_search(data_dir, detector):
    sequence = f.SequenceFactory(ra_deg=FIELD_RA_DEG, dec_deg=FIELD_DEC_DEG)
    image = store_image(detector, seed=12, sequence=sequence)
    assert services.burst_region_for_image(image) is None
    event = m.AlertEvent.objects.create(name="GBM 1", burst_time=NIGHT_UTC, ra_deg=FIELD_RA_DEG,
                                        dec_deg=FIELD_DEC_DEG, error_deg=0.0)
    sequence.request.alert_event = event
    sequence.request.save()
    image.refresh_from_db()
    # An unknown error radius (0) searches the whole frame rather than nothing.
    assert services.burst_region_for_image(image).error_deg == services.UNKNOWN_ERROR_RADIUS_DEG
    assert services.burst_region_for_image(image).t0_utc == datetime(2026, 3, 1, 22, 0, tzinfo=UTC)


def test_the_solved_wcs_replaces_the_pointing_wcs_in_the_stored_file(data_dir, detector):
    import warnings

    from astropy.io import fits
    from astropy.wcs import WCS

    from devices.sky import render_frame, write_fits

    data, header = render_frame(ra_deg=FIELD_RA_DEG, dec_deg=FIELD_DEC_DEG, exposure_s=10.0, filter_name="R",
                                when_utc=NIGHT_UTC, seed=31)
    header["CRVAL2"] += 40.0 / 3600.0  # the mount's pointing was 40" off
    header["WCSSRC"] = "pointing"
    image = store_image(detector, content=write_fits(data, header), seed=31)
    image.header = {"WCSSRC": "pointing", "CRVAL2": header["CRVAL2"], "OBJECT": "test field"}
    image.save()
    analysis = services.image_analyze(image_id=image.pk)
    assert analysis.status == m.AnalysisResult.Status.OK
    assert analysis.wcs_offset_arcsec == pytest.approx(40.0, abs=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with fits.open(services.data_path(image.file_path)) as hdul:
            hdul.verify("exception")
            written = hdul[0].header
            wcs = WCS(written)
    assert written["WCSSRC"] == "refine" and written["WCSNSTAR"] >= 100 and written["WCSRMS"] < 0.3
    assert wcs.wcs.crval[1] == pytest.approx(FIELD_DEC_DEG, abs=0.3 / 3600.0)
    image.refresh_from_db()
    assert image.header["WCSSRC"] == "refine" and image.header["OBJECT"] == "test field"
