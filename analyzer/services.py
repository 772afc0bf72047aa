"""Writes of the analyzer: analyse one stored image, build calibration masters from a calibration series.

The science lives in the pure modules (``analyzer.pipeline``, ``analyzer.calibration``, ``analyzer.afterglow``);
these functions only load rows and files, choose the inputs (masters, burst region), call the pure code and
store what it returns. Files live under ``settings.PYROS_DATA_DIR``; rows keep paths relative to it.
"""

from __future__ import annotations

import io
import logging
import os
import re
import tempfile
import warnings
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from analyzer import catalogs
from analyzer.afterglow import BurstRegion
from analyzer.calibration import AnalysisError, MasterFrame, Masters, build_master, load_fits, select_masters
from analyzer.pipeline import analyze_image_with_quicklook
from common import notifications
from pyrosapp.models import AlertEvent, AnalysisResult, CalibrationMaster, Image

log = logging.getLogger("pyros.analyzer")

QUICKLOOK_DIR = "quicklook"
MASTERS_DIR = "masters"
FAILURE_REASON_MAX = 500  # AnalysisResult.failure_reason max_length
# Fewer frames than this make a master noisier than no master at all (a single bias adds its read
# noise to every image it calibrates), so such a series is reported and not combined.
MIN_FRAMES_PER_MASTER = 3
# A calibration series is taken at one dusk or dawn: frames older than this are another series.
CALIBRATION_SERIES_MAX_AGE = timedelta(hours=24)
# An alert whose error radius is unknown (0 or missing) is searched over the whole frame: 1 deg covers
# any field of our cameras, and the afterglow search still requires a source absent from the catalogue.
UNKNOWN_ERROR_RADIUS_DEG = 1.0
# The WCS cards replaced by a solved WCS (a stale SIP term or CDELT left behind would bend the new one).
_WCS_KEY = re.compile(r"WCSAXES|CTYPE[12]|CUNIT[12]|CRVAL[12]|CRPIX[12]|CD[12]_[12]|CDELT[12]|CROTA[12]|PC[12]_[12]|"
                      r"LONPOLE|LATPOLE|WCSSRC|WCSRMS|WCSNSTAR|(A|B|AP|BP)_ORDER|(A|B|AP|BP)_\d+_\d+")
_CALIBRATION_KINDS = (Image.FrameType.BIAS, Image.FrameType.DARK, Image.FrameType.FLAT)


class ImageFileError(Exception):
    """A stored path that does not resolve to a file inside the data directory."""


# --------------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------------


def data_dir() -> Path:
    return Path(settings.PYROS_DATA_DIR).resolve()


def data_path(relative_path: str) -> Path:
    """The absolute path of a file stored under PYROS_DATA_DIR; refuses paths that escape it
    (a row edited by hand must never make the web server read /etc/passwd)."""
    root = data_dir()
    path = (root / relative_path).resolve()
    if not relative_path or not path.is_relative_to(root):
        raise ImageFileError(f"path {relative_path!r} is outside the data directory")
    return path


def _write_atomically(relative_path: str, content: bytes) -> Path:
    """Write then rename, so a reader (the web page) never serves half a PNG or FITS."""
    path = data_path(relative_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def quicklook_relative_path(image: Image) -> str:
    # One fixed name per image: re-running the analysis replaces the PNG instead of piling up copies.
    return f"{QUICKLOOK_DIR}/{image.date_obs:%Y-%m-%d}/image_{image.pk}.png"


# --------------------------------------------------------------------------------------------
# Analysis of one image
# --------------------------------------------------------------------------------------------


def image_analyze(*, image_id: int) -> AnalysisResult:
    """Analyse one stored image and store its (single) AnalysisResult; safe to run again.

    Calibration frames are stored as ``skipped``; a file that cannot be analysed as ``failed`` with the
    pipeline's reason (shown on the image page). Raises ``Image.DoesNotExist`` for an unknown id.
    """
    image = Image.objects.select_related("detector", "sequence__request__alert_event").get(pk=image_id)
    try:
        analysis, _ = AnalysisResult.objects.get_or_create(image=image)
    except IntegrityError:  # another worker created it between our SELECT and INSERT
        analysis = AnalysisResult.objects.get(image=image)
    AnalysisResult.objects.filter(pk=analysis.pk).update(status=AnalysisResult.Status.RUNNING, updated=timezone.now())

    if image.frame_type in _CALIBRATION_KINDS:
        reason = f"calibration frame ({image.frame_type}): it goes into the masters, it is not measured"
        return _store(analysis, status=AnalysisResult.Status.SKIPPED, reason=reason, result={}, quicklook_path="")

    try:
        path = data_path(image.file_path)
    except ImageFileError as exc:
        log.warning("image %s not analysed: %s", image.pk, exc)
        return _store(analysis, status=AnalysisResult.Status.FAILED, reason=str(exc), result={}, quicklook_path="")

    masters = masters_for_image(image, path)
    burst = burst_region_for_image(image)
    result, png = analyze_image_with_quicklook(
        path, masters=masters, burst=burst, catalog=catalogs.reference_catalog(),
        astrometry_index_dir=catalogs.astrometry_index_dir() or None,
        moving_objects=catalogs.moving_objects_backend() if burst is not None else None,
    )
    if result.get("wcs_header"):
        _write_solved_wcs(image, path, result["wcs_header"])

    quicklook_path = ""
    if png is not None:
        quicklook_path = quicklook_relative_path(image)
        _write_atomically(quicklook_path, png)
    status = {"ok": AnalysisResult.Status.OK, "skipped": AnalysisResult.Status.SKIPPED}.get(
        result["status"], AnalysisResult.Status.FAILED)
    stored = _store(analysis, status=status, reason=result.get("failure_reason") or "", result=result,
                    quicklook_path=quicklook_path)
    if status == AnalysisResult.Status.FAILED:
        log.warning("analysis of image %s (%s) failed: %s", image.pk, image.file_path, stored.failure_reason)
    else:
        log.info("analysis of image %s (%s): %s, %s sources, FWHM %s arcsec, ZP %s, limit %s, %s candidates, %.2f s",
                 image.pk, image.file_path, status, result.get("n_sources"), result.get("fwhm_arcsec"),
                 result.get("zero_point_mag"), result.get("limiting_mag"), len(result.get("candidates") or []),
                 (result.get("timings_s") or {}).get("total", 0.0),
                 extra={"request_id": image.sequence.request_id if image.sequence_id else None})
    _notify_owner_analysed(image, stored)
    return stored


def _notify_owner_analysed(image: Image, analysis: AnalysisResult) -> None:
    """Tell the request's owner (who asked for it on the profile page) that an image was measured."""
    request = image.sequence.request if image.sequence_id else None
    if request is None or request.is_alert:
        return
    if analysis.status == AnalysisResult.Status.OK:
        body = (f"Image {image.pk} of request {request.name!r} was analysed: {analysis.n_sources} sources, "
                f"FWHM {analysis.fwhm_arcsec} arcsec, limiting magnitude {analysis.limiting_mag}.")
    else:
        body = f"Image {image.pk} of request {request.name!r}: analysis {analysis.status} ({analysis.failure_reason})."
    notifications.notify("images_analysed", subject=f"image of {request.name!r} analysed", body=body,
                         link=reverse("routine_manager:request_detail", args=[request.pk]), user_ids=[request.owner_id])


def _write_solved_wcs(image: Image, path: Path, cards: dict[str, Any]) -> None:
    """Replace the pointing WCS of the stored FITS (and its header copy) with the solved one, so a
    download opens in DS9 or Aladin on the right sky. Pixels are untouched; the file is replaced
    atomically. A file that cannot be rewritten keeps its pointing WCS (logged, analysis unaffected)."""
    from astropy.io import fits

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(path, mode="readonly", memmap=False) as hdul:
                header = hdul[0].header
                for key in list(header.keys()):
                    if _WCS_KEY.fullmatch(key):
                        header.remove(key, remove_all=True)
                for key, value in cards.items():
                    header[key] = value
                content = io.BytesIO()
                hdul.writeto(content, output_verify="silentfix")
        relative = str(path.relative_to(data_dir()))
        _write_atomically(relative, content.getvalue())
    except (OSError, ValueError, KeyError) as exc:
        log.warning("image %s: solved WCS not written into %s: %s", image.pk, path, exc)
        return
    if image.header:
        stored = {key: value for key, value in image.header.items() if not _WCS_KEY.fullmatch(key)}
        stored.update(cards)
        Image.objects.filter(pk=image.pk).update(header=stored)


def image_analysis_request(*, image_id: int) -> None:
    """Queue a (re-)analysis of an image, e.g. after new masters were built: the result shows "pending"
    until a worker takes it. The task is sent after the transaction commits, so the worker sees the row."""
    AnalysisResult.objects.update_or_create(image_id=image_id, defaults={"status": AnalysisResult.Status.PENDING})
    from analyzer.tasks import analyze_image

    transaction.on_commit(lambda: analyze_image.apply_async(kwargs={"image_id": image_id}))
    log.info("analysis of image %s requested", image_id)


def image_analysis_sweep(*, unsent_after_s: float = 120.0, stuck_after_s: float = 900.0, limit: int = 200) -> list[int]:
    """Queue the analyses that were never sent or were lost, and return their image ids.

    A light frame with no result ``unsent_after_s`` after its row was created (the broker was down when
    the observation manager sent the task), or a result still pending/running ``stuck_after_s`` after its
    last update (a killed worker; the task's hard limit is far shorter). Oldest first, at most ``limit``
    per sweep so a backlog drains without flooding the queue."""
    now = timezone.now()
    never_sent = (Image.objects.filter(frame_type=Image.FrameType.LIGHT, analysis__isnull=True,
                                       created__lte=now - timedelta(seconds=unsent_after_s))
                  .order_by("created").values_list("pk", flat=True)[:limit])
    stuck = (AnalysisResult.objects.filter(status__in=[AnalysisResult.Status.PENDING, AnalysisResult.Status.RUNNING],
                                           updated__lte=now - timedelta(seconds=stuck_after_s))
             .order_by("updated").values_list("image_id", flat=True)[:limit])
    image_ids = list(dict.fromkeys([*never_sent, *stuck]))[:limit]
    for image_id in image_ids:
        image_analysis_request(image_id=image_id)
    if image_ids:
        log.warning("analysis sweep: %d image(s) queued again (never sent or lost): %s", len(image_ids),
                    image_ids[:20])
    return image_ids


def image_analysis_fail(*, image_id: int, reason: str) -> None:
    """Record that an analysis could not complete (worker time limit): the page shows the reason."""
    AnalysisResult.objects.update_or_create(
        image_id=image_id,
        defaults={"status": AnalysisResult.Status.FAILED, "failure_reason": reason[:FAILURE_REASON_MAX]},
    )
    log.error("analysis of image %s failed: %s", image_id, reason)


def _store(analysis: AnalysisResult, *, status: str, reason: str, result: dict[str, Any],
           quicklook_path: str) -> AnalysisResult:
    # Candidates have their own column (the event pages read them); the rest of the result is kept whole.
    results = {key: value for key, value in result.items() if key != "candidates"}
    analysis.status = status
    analysis.failure_reason = reason[:FAILURE_REASON_MAX]
    analysis.n_sources = result.get("n_sources")
    analysis.fwhm_arcsec = result.get("fwhm_arcsec")
    analysis.zero_point_mag = result.get("zero_point_mag")
    analysis.limiting_mag = result.get("limiting_mag")
    analysis.wcs_offset_arcsec = result.get("wcs_offset_arcsec")
    analysis.results = results
    analysis.candidates = list(result.get("candidates") or [])
    analysis.quicklook_path = quicklook_path
    analysis.save()
    return analysis


def burst_region_for_image(image: Image) -> BurstRegion | None:
    """The alert's error region when the image belongs to an alert request (enables the afterglow search)."""
    sequence = image.sequence
    event: AlertEvent | None = sequence.request.alert_event if sequence is not None else None
    if event is None:
        return None
    if event.ra_deg is None or event.dec_deg is None:
        log.info("image %s belongs to alert event %s which has no position: no afterglow search", image.pk, event)
        return None
    error_deg = event.error_deg if event.error_deg and event.error_deg > 0 else UNKNOWN_ERROR_RADIUS_DEG
    return BurstRegion(ra_deg=event.ra_deg, dec_deg=event.dec_deg, error_deg=error_deg, t0_utc=event.burst_time)


def _image_shape(path: Path) -> tuple[int, int] | None:
    from astropy.io import fits

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            header = fits.getheader(path)
        return int(header["NAXIS2"]), int(header["NAXIS1"])
    except Exception:  # an unreadable file: the pipeline reports why; masters do not matter then
        return None


def master_valid_from(master: CalibrationMaster) -> datetime:
    """When a master starts to apply: the start of its newest source frame (stored in its provenance)."""
    value = (master.provenance or {}).get("valid_from_utc")
    if value:
        return datetime.fromisoformat(value)
    return master.created


def masters_for_image(image: Image, path: Path) -> Masters | None:
    """The newest valid masters of the image's detector and binning that existed when it was taken."""
    shape = _image_shape(path)
    if shape is None:
        return None
    rows = CalibrationMaster.objects.filter(detector_id=image.detector_id, binning=image.binning, is_valid=True)
    newest: dict[tuple[str, str], CalibrationMaster] = {}
    for row in rows.order_by("-created"):
        key = (row.kind, row.filter_name.lower() if row.kind == CalibrationMaster.Kind.FLAT else "")
        if row.kind == CalibrationMaster.Kind.FLAT and key[1] != image.filter_name.lower():
            continue
        if master_valid_from(row) > image.date_obs:
            continue
        current = newest.get(key)
        if current is None or master_valid_from(row) > master_valid_from(current):
            newest[key] = row
    available = []
    for row in newest.values():
        try:
            available.append(_load_master(row))
        except (OSError, KeyError, ValueError, ImageFileError) as exc:
            log.error("master %s (%s) unreadable, image %s calibrated without it: %s", row.pk, row.file_path,
                      image.pk, exc)
    if not available:
        return None
    return select_masters(available, shape=shape, filter_name=image.filter_name or None, when_utc=image.date_obs)


def _load_master(row: CalibrationMaster) -> MasterFrame:
    master = MasterFrame.from_fits_bytes(data_path(row.file_path).read_bytes(), master_id=row.pk)
    master.created_utc = master_valid_from(row)
    master.source_ids = list((row.provenance or {}).get("source_ids", []))
    return master


# --------------------------------------------------------------------------------------------
# Calibration masters
# --------------------------------------------------------------------------------------------


def calibration_masters_build(*, detector_id: int, when: datetime | None = None, series: str = "") -> list[CalibrationMaster]:
    """Build bias, dark and per-filter flat masters from the detector's newest calibration images.

    Uses the calibration Images taken up to ``when`` (default: now) that are newer than the last master
    of the same kind (and filter) and than ``when`` minus 24 h, per binning. A re-sent task finds no new
    frames and builds nothing. Darks are built on this run's bias (or the newest one), flats on both.
    ``series`` names the calibration series ("dusk", "dawn") in the masters' provenance.
    Returns the masters created.
    """
    when = when or timezone.now()
    if when.tzinfo is None:
        raise ValueError("when must be an aware UTC datetime")
    created: list[CalibrationMaster] = []
    frames = Image.objects.filter(detector_id=detector_id, frame_type__in=_CALIBRATION_KINDS,
                                  date_obs__lte=when, date_obs__gt=when - CALIBRATION_SERIES_MAX_AGE)
    by_binning: dict[int, list[Image]] = defaultdict(list)
    for image in frames.order_by("date_obs", "pk"):
        by_binning[image.binning].append(image)
    for binning, images in sorted(by_binning.items()):
        created += _build_for_binning(detector_id, binning, images, when, series)
    if not created:
        log.info("calibration masters for detector %s: no new calibration series up to %s", detector_id,
                 when.isoformat())
    return created


def _build_for_binning(detector_id: int, binning: int, images: list[Image], when: datetime,
                       series: str) -> list[CalibrationMaster]:
    created: list[CalibrationMaster] = []
    bias_master = _build_one(detector_id, binning, CalibrationMaster.Kind.BIAS, "", images, when, series)
    if bias_master is not None:
        created.append(bias_master)
    bias = _newest_master_frame(detector_id, binning, CalibrationMaster.Kind.BIAS, "", when)
    dark_master = _build_one(detector_id, binning, CalibrationMaster.Kind.DARK, "", images, when, series,
                             bias=bias)
    if dark_master is not None:
        created.append(dark_master)
    dark = _newest_master_frame(detector_id, binning, CalibrationMaster.Kind.DARK, "", when)
    flat_filters = sorted({img.filter_name for img in images if img.frame_type == Image.FrameType.FLAT})
    for filter_name in flat_filters:
        flat = _build_one(detector_id, binning, CalibrationMaster.Kind.FLAT, filter_name, images, when, series,
                          bias=bias, dark=dark)
        if flat is not None:
            created.append(flat)
    return created


def _last_master(detector_id: int, binning: int, kind: str, filter_name: str) -> CalibrationMaster | None:
    rows = CalibrationMaster.objects.filter(detector_id=detector_id, binning=binning, kind=kind, is_valid=True)
    if kind == CalibrationMaster.Kind.FLAT:
        rows = rows.filter(filter_name__iexact=filter_name)
    return max(rows, key=master_valid_from, default=None)


def _newest_master_frame(detector_id: int, binning: int, kind: str, filter_name: str,
                         when: datetime) -> MasterFrame | None:
    row = _last_master(detector_id, binning, kind, filter_name)
    if row is None or master_valid_from(row) > when:
        return None
    try:
        return _load_master(row)
    except (OSError, KeyError, ValueError, ImageFileError) as exc:
        log.error("master %s (%s) unreadable: %s", row.pk, row.file_path, exc)
        return None


def _readable_frames(images: Iterable[Image]) -> tuple[list[Image], list[bytes], list[str]]:
    """The frames whose files read cleanly, and a note for each that does not (one bad file must not cost
    the whole series)."""
    kept_images, contents, rejected = [], [], []
    for image in images:
        try:
            content = data_path(image.file_path).read_bytes()
            load_fits(content)
        except (OSError, ImageFileError, AnalysisError) as exc:
            rejected.append(f"image {image.pk} ({image.file_path}): {exc}")
            continue
        kept_images.append(image)
        contents.append(content)
    return kept_images, contents, rejected


def _build_one(detector_id: int, binning: int, kind: str, filter_name: str, images: list[Image], when: datetime,
               series: str, *, bias: MasterFrame | None = None, dark: MasterFrame | None = None) -> CalibrationMaster | None:
    label = f"{kind}{' ' + filter_name if filter_name else ''} (detector {detector_id}, binning {binning})"
    last = _last_master(detector_id, binning, kind, filter_name)
    since = master_valid_from(last) if last is not None else None
    frames = [img for img in images if img.frame_type == kind
              and (kind != CalibrationMaster.Kind.FLAT or img.filter_name == filter_name)
              and (since is None or img.date_obs > since)]
    if not frames:
        return None
    if kind == CalibrationMaster.Kind.DARK and bias is None:
        log.warning("master %s not built: a dark needs a master bias and there is none", label)
        return None
    usable, contents, rejected = _readable_frames(frames)
    for note in rejected:
        log.warning("master %s: frame left out: %s", label, note)
    if len(usable) < MIN_FRAMES_PER_MASTER:
        log.warning("master %s not built: %d usable frames, at least %d needed", label, len(usable),
                    MIN_FRAMES_PER_MASTER)
        return None
    try:
        master = build_master(kind, contents, master_bias=bias, master_dark=dark,
                              source_ids=[img.pk for img in usable])
    except AnalysisError as exc:
        log.error("master %s not built: %s", label, exc)
        return None
    newest = usable[-1]
    valid_from = newest.date_obs
    built_utc = timezone.now()
    # The master applies from the start of its newest frame (not from when a worker got round to it), so
    # the images of the night are calibrated alike however busy the analysis queue was.
    master.created_utc = valid_from
    relative_path = (f"{MASTERS_DIR}/detector_{detector_id}/{valid_from:%Y-%m-%d}/"
                     f"master_{kind}{'_' + filter_name if filter_name else ''}_bin{binning}_{valid_from:%Y%m%dT%H%M%S}"
                     f"_{usable[0].pk}.fits")
    provenance = {
        **master.describe(),
        "valid_from_utc": valid_from.astimezone(UTC).isoformat(),
        "built_utc": built_utc.astimezone(UTC).isoformat(),
        "series": series,
        "series_until_utc": when.astimezone(UTC).isoformat(),
        "first_frame_utc": usable[0].date_obs.astimezone(UTC).isoformat(),
        "last_frame_utc": newest.date_obs.astimezone(UTC).isoformat(),
        "frames_left_out": rejected,
        "bias_master_id": bias.master_id if bias is not None and kind != CalibrationMaster.Kind.BIAS else None,
        "dark_master_id": dark.master_id if dark is not None and kind == CalibrationMaster.Kind.FLAT else None,
    }
    _write_atomically(relative_path, master.to_fits_bytes())
    try:
        with transaction.atomic():
            row = CalibrationMaster.objects.create(
                detector_id=detector_id, kind=kind, filter_name=filter_name, binning=binning,
                file_path=relative_path, n_frames=master.n_frames, provenance=provenance,
            )
            row.source_images.set(usable)
            row.provenance = {**provenance, "id": row.pk}
            row.save(update_fields=["provenance"])
    except Exception:
        data_path(relative_path).unlink(missing_ok=True)
        raise
    log.info("master %s built from %d frames (%s .. %s), stored as %s", label, master.n_frames,
             provenance["first_frame_utc"], provenance["last_frame_utc"], relative_path)
    return row
