"""Executes one sequence on the devices: dome, slew, settle, then each plan's filter and exposures.

A device-facing library (layer 6): it takes the observatory's devices and an :class:`ExecutionControl`
from its caller, the majordome, and returns a :class:`SequenceOutcome` (completed, partial, failed,
interrupted, retryable device error). It never imports the majordome and never writes the observatory
state: the majordome supervises the run (its watcher persists ``control.progress`` with the heartbeat
and calls :meth:`ExecutionControl.request_stop` when the sequence must stop) and decides what the
outcome means for the sequence, the request and the night.

What survives a killed worker: each exposure is committed (FITS file + Image row + the plan's
`images_done`) before the next is counted, so a resumed sequence skips completed plans and
exposures, and the unique (plan, index) key makes a duplicate image impossible.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.utils import timezone

from common.messages import send_after_commit
from devices.errors import DeviceAborted, DeviceError
from observation_manager.fits_files import ImageContext, add_pyros_headers, airmass_from_altitude, relative_path
from pyrosapp.models import Detector, Image, Plan, Sequence, Site

log = logging.getLogger("pyros.observation_manager")

# A transient device error plans the sequence again this many times, no more.
MAX_DEVICE_RETRIES = 1


class OutcomeKind(enum.StrEnum):
    COMPLETED = "completed"  # every plan done
    PARTIAL = "partial"  # some images, not all: the sequence ends
    FAILED = "failed"  # no image: the sequence ends
    INTERRUPTED = "interrupted"  # stopped to be planned again (pre-emption, pause, weather, operator stop)
    RETRYABLE = "retryable"  # a transient device error (timeout, lost link): planned again, once


@dataclass(frozen=True)
class SequenceOutcome:
    kind: OutcomeKind
    reason: str = ""
    images_done: int = 0


def outcome_from_plans(plans: list[Plan], *, reason: str = "") -> SequenceOutcome:
    """What a run that stopped by itself achieved: completed, partial or failed, from its plans."""
    done = sum(p.images_done for p in plans)
    if plans and all(p.status == Plan.Status.COMPLETED for p in plans):
        return SequenceOutcome(OutcomeKind.COMPLETED, reason, done)
    return SequenceOutcome(OutcomeKind.PARTIAL if done else OutcomeKind.FAILED, reason or "stopped", done)


class SequenceStopped(Exception):
    def __init__(self, reason: str, *, interrupted: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.interrupted = interrupted


@dataclass
class ExecutionControl:
    """What a running sequence shares with its supervisor.

    The executor writes ``progress`` (``update``) and checks for a stop (``check``) between steps;
    the supervisor reads ``snapshot()`` to persist it, and calls ``request_stop`` (from any thread)
    when the sequence must stop, saying whether it is an interruption (planned again) or its end.
    ``refresh`` asks the supervisor to look for a stop request now (a device reported an abort that
    another process may have ordered); ``may_open_dome`` and ``pause_after_plan`` are its answers
    to the executor's two questions."""

    sequence_id: int
    progress: dict = field(default_factory=dict)
    may_open_dome: Callable[[], bool] = lambda: True
    pause_after_plan: Callable[[], bool] = lambda: False
    refresh: Callable[[], None] = lambda: None
    stop_reason: str = ""
    stop_interrupts: bool = True

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.aborted = threading.Event()
        self.finished = threading.Event()
        self.dirty = threading.Event()

    def request_stop(self, *, reason: str, interrupts: bool) -> bool:
        """Stop the run (first request wins); returns whether this call stopped it."""
        with self._lock:
            if self.aborted.is_set():
                return False
            self.stop_reason, self.stop_interrupts = reason or "aborted", interrupts
            self.aborted.set()
        return True

    def update(self, **changes) -> None:
        with self._lock:
            self.progress.update(changes)
        self.dirty.set()

    def snapshot(self) -> dict:
        with self._lock:
            return dict(self.progress)

    def check(self) -> None:
        if self.aborted.is_set():
            raise SequenceStopped(self.stop_reason, interrupted=self.stop_interrupts)


# --- execution -----------------------------------------------------------------------------------
def sequence_plans(sequence_id: int) -> list[Plan]:
    return list(Plan.objects.filter(album__sequence_id=sequence_id).select_related(
        "filter", "album__detector__telescope__site").order_by("album__order", "album_id", "order", "id"))


def sequence_run(*, sequence: Sequence, control: ExecutionControl, observatory) -> SequenceOutcome:
    """Run a claimed sequence on ``observatory`` until it ends or ``control`` stops it."""
    seq = sequence
    plans = sequence_plans(seq.pk)
    control.update(kind="sequence", sequence=seq.pk, request=seq.request_id, name=seq.name, target=seq.target_name,
                   plans_total=len(plans), plan_index=0, step="starting", fraction=_fraction(plans))
    try:
        _point(observatory, seq, plans, control)
        for index, plan in enumerate(plans, start=1):
            if plan.status == Plan.Status.COMPLETED:
                continue
            if index > 1 and control.pause_after_plan():
                raise SequenceStopped("paused after the current plan", interrupted=True)
            control.check()
            _run_plan(observatory, seq, plan, index, plans, control)
    except SequenceStopped as stop:
        return _stopped(plans, stop.reason, interrupted=stop.interrupted)
    except DeviceError as exc:
        # Another process (monitoring, alerts) may abort the devices before the supervisor has told
        # us: ask it who stopped us before calling it a device failure.
        control.refresh()
        if control.aborted.is_set():
            return _stopped(plans, control.stop_reason, interrupted=control.stop_interrupts)
        if isinstance(exc, DeviceAborted):
            return _stopped(plans, f"device aborted: {exc}", interrupted=False)
        if exc.permanent is False and seq.device_retries < MAX_DEVICE_RETRIES:
            log.warning("sequence %s interrupted by a device error, to be retried: %s", seq.pk, exc)
            return SequenceOutcome(OutcomeKind.RETRYABLE, f"device error ({exc.__class__.__name__}: {exc}), "
                                   "planned again", sum(p.images_done for p in plans))
        log.error("sequence %s failed on the devices: %s", seq.pk, exc)
        return outcome_from_plans(plans, reason=f"{exc.__class__.__name__}: {exc}")
    except (OperationalError, InterfaceError) as exc:
        # The database went away (a restart, a failover): transient like a lost device link, one retry.
        if seq.device_retries < MAX_DEVICE_RETRIES:
            log.warning("sequence %s interrupted by a database error, to be retried: %s", seq.pk, exc)
            return SequenceOutcome(OutcomeKind.RETRYABLE, f"database error ({exc.__class__.__name__}), planned again",
                                   sum(p.images_done for p in plans))
        log.error("sequence %s: database error after its retry: %s", seq.pk, exc)
        return outcome_from_plans(plans, reason=f"database error: {exc}")
    except Exception as exc:
        log.exception("sequence %s failed", seq.pk)
        return outcome_from_plans(plans, reason=f"internal error: {exc}")
    return outcome_from_plans(plans)


def _stopped(plans: list[Plan], reason: str, *, interrupted: bool) -> SequenceOutcome:
    if interrupted:
        return SequenceOutcome(OutcomeKind.INTERRUPTED, reason, sum(p.images_done for p in plans))
    return outcome_from_plans(plans, reason=reason)


def _fraction(plans: list[Plan]) -> float:
    total = sum(p.count * p.exposure_s for p in plans) or 1.0
    return round(sum(p.images_done * p.exposure_s for p in plans) / total, 4)


def _point(observatory, seq: Sequence, plans: list[Plan], control: ExecutionControl) -> None:
    telescope = plans[0].album.detector.telescope if plans else None
    control.check()
    dome = observatory.dome
    if dome:
        dome_state = dome.state()
        if dome_state.parked:
            control.update(step="unparking dome")
            dome.unpark()
        shutter = dome_state.shutter
        if shutter != "open":
            if not control.may_open_dome():
                raise SequenceStopped("unsafe: the dome stays closed", interrupted=True)
            control.update(step="opening dome")
            dome.open_shutter(timeout_s=300)
        try:
            dome.follow_mount(True)
        except DeviceError as exc:
            log.info("dome cannot follow the mount (%s); continuing", exc)
    control.check()
    control.update(step="slewing")
    t0 = time.perf_counter()
    if observatory.mount.state().parked:
        observatory.mount.unpark()
    operation = observatory.mount.start_slew(ra_deg=seq.ra_deg, dec_deg=seq.dec_deg)
    operation.wait(600)
    log.info("sequence %s: on target %s (slew %.1f s)", seq.pk, seq.target_name, time.perf_counter() - t0)
    settle_s = telescope.settle_s if telescope else 0.0
    if settle_s > 0:
        control.update(step="settling")
        if control.aborted.wait(settle_s):
            control.check()


def _context(seq: Sequence, plan: Plan, index: int) -> ImageContext:
    detector = plan.album.detector
    site = detector.telescope.site
    request = seq.request
    return ImageContext(
        telescope=detector.telescope.name, detector=detector.name, target=seq.target_name, frame_type=plan.frame_type,
        filter_name=plan.filter.name, exposure_s=plan.exposure_s, site_name=site.name,
        site_lat_deg=site.latitude_deg, site_lon_deg=site.longitude_deg, site_elev_m=site.elevation_m,
        request_id=request.pk, sequence_id=seq.pk, album_id=plan.album_id, plan_id=plan.pk, index=index,
        count=plan.count, program=request.program.name, observer=str(request.owner), is_alert=request.is_alert,
        ra_deg=seq.ra_deg, dec_deg=seq.dec_deg, pixel_scale_arcsec=detector.pixel_scale_arcsec, binning=plan.binning,
    )


def _run_plan(observatory, seq: Sequence, plan: Plan, plan_index: int, plans: list[Plan], control: ExecutionControl) -> None:
    control.update(step="changing filter", plan=plan.pk, plan_index=plan_index, filter=plan.filter.name,
                     exposure=plan.images_done, of=plan.count, exposure_s=plan.exposure_s)
    Plan.objects.filter(pk=plan.pk, status=Plan.Status.PENDING).update(status=Plan.Status.RUNNING)
    if observatory.filter_wheel:
        observatory.filter_wheel.select(plan.filter.name)
    control.check()
    frame = plan.frame_type.upper()

    def start(i: int):
        control.update(step="exposing", exposure=i, exposure_started=timezone.now().isoformat())
        return observatory.camera.start_exposure(duration_s=plan.exposure_s, frame_type=frame, binning=plan.binning,
                                                 object_name=seq.target_name)

    i = plan.images_done + 1
    operation = start(i) if i <= plan.count else None
    while operation is not None:
        date_obs = timezone.now()
        data = operation.wait(plan.exposure_s + 120.0)
        # Count it in the progress before the next exposure restarts the exposure clock, so the
        # sequence's progress never goes back.
        plan.images_done = i
        control.update(fraction=_fraction(plans))
        # Start the next exposure before saving this one: storage overlaps the camera's time.
        operation = start(i + 1) if i + 1 <= plan.count and not control.aborted.is_set() else None
        mount = observatory.mount.state()
        _store_image(seq, plan, i, data, date_obs, airmass_from_altitude(mount.alt_deg),
                     ccd_temp_c=camera_temperature(observatory))
        i += 1
        if operation is None:
            control.check()
    Plan.objects.filter(pk=plan.pk).update(status=Plan.Status.COMPLETED)
    plan.status = Plan.Status.COMPLETED
    control.update(fraction=_fraction(plans))


def _store_image(seq: Sequence, plan: Plan, index: int, data: bytes, date_obs: datetime, airmass: float | None,
                 *, ccd_temp_c: float | None = None) -> Image:
    frame = frame_file_write(data, _context(seq, plan, index), date_obs=date_obs, airmass=airmass,
                             ccd_temp_c=ccd_temp_c)
    try:
        with transaction.atomic():
            image, _ = Image.objects.update_or_create(plan=plan, index_in_plan=index, defaults=dict(
                sequence=seq, detector=plan.album.detector, frame_type=plan.frame_type, file_path=str(frame.path),
                date_obs=frame.date_obs, exposure_s=plan.exposure_s, filter_name=plan.filter.name,
                binning=plan.binning, ra_deg=frame.header.get("RA", seq.ra_deg),
                dec_deg=frame.header.get("DEC", seq.dec_deg), airmass=airmass, header=frame.header))
            Plan.objects.filter(pk=plan.pk, images_done__lt=index).update(images_done=index)
            # The analyzer measures it (a message: the analyzer's periodic sweep catches one that is lost).
            send_after_commit("pyros.analyzer.analyze_image", image_id=image.pk)
    except Exception:
        # No row (the database failed): the frame is taken again when the sequence resumes, so this file
        # would be a FITS file without its Image row. Remove it, then let the executor see the fault.
        frame.remove()
        raise
    log.info("image %s saved (%d/%d of plan %s)", frame.path, index, plan.count, plan.pk)
    return image


@dataclass(frozen=True)
class FrameFile:
    """A frame written under the data directory: its path there, its DATE-OBS and its header as the Image row
    keeps it."""

    path: Path
    date_obs: datetime
    header: dict

    def remove(self) -> None:
        (Path(settings.PYROS_DATA_DIR) / self.path).unlink(missing_ok=True)


def frame_file_write(data: bytes, ctx: ImageContext, *, date_obs: datetime, airmass: float | None,
                     ccd_temp_c: float | None = None, unique: bool = False) -> FrameFile:
    """A camera frame as a FITS file with PyROS's headers (WCS, site, target...), written atomically where
    ``relative_path`` puts it. ``unique``: never over another Image's file (two frames within one second get
    ``_002``, ``_003``...); without it the same frame taken again (a retried plan image) replaces its file.
    Sequences, calibrations and operator procedures all store their frames through this."""
    fits_bytes, header = add_pyros_headers(data, ctx, airmass=airmass, date_obs=date_obs, ccd_temp_c=ccd_temp_c)
    date_obs = _header_time(header) or date_obs
    rel = first = relative_path(ctx, date_obs)
    n = 1
    while unique and Image.objects.filter(file_path=str(rel)).exists():
        n += 1
        rel = first.with_name(f"{first.stem}_{n:03d}.fits")
    _write_fits(rel, fits_bytes)
    return FrameFile(path=rel, date_obs=date_obs, header=_header_dict(header))


def camera_temperature(observatory) -> float | None:
    """The sensor temperature for the FITS header (CCD-TEMP) when the camera driver does not write it."""
    try:
        return observatory.camera.temperature_c()
    except DeviceError:
        return None


def _write_fits(rel: Path, fits_bytes: bytes) -> None:
    """Write a FITS file under the data directory atomically: a reader (the analyzer, a download)
    never sees half a file."""
    path = Path(settings.PYROS_DATA_DIR) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    tmp.write_bytes(fits_bytes)
    tmp.replace(path)


def _header_time(header) -> datetime | None:
    try:
        value = datetime.fromisoformat(str(header["DATE-OBS"]))
    except (KeyError, ValueError):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _header_dict(header) -> dict:
    out = {}
    for card in header.cards:
        if card.keyword in ("", "COMMENT", "HISTORY"):
            continue
        value = card.value
        out[card.keyword] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return out


# --- calibrations --------------------------------------------------------------------------------
def calibrations_run(*, when: str, site: Site, observatory, beat: Callable[[str], None]) -> int:
    """Bias, dark and flat series of every detector, as its `calibration_plan` says, stored as
    Images of their type; then the analyzer builds the masters. ``beat(step)`` tells the supervisor
    what is being taken. Returns the number of frames."""
    total = 0
    try:
        for detector in Detector.objects.select_related("telescope").exclude(calibration_plan={}):
            plan = detector.calibration_plan or {}
            series: list[tuple[str, float, int, str]] = [("bias", 0.0, int(plan.get("bias", 0)), "")]
            series += [("dark", float(exp), int(n), "") for exp, n in plan.get("darks", [])]
            flat_s = float(plan.get("flat_exposure_s", 2.0))
            series += [("flat", flat_s, int(n), name) for name, n in (plan.get("flats") or {}).items()]
            for kind, exposure_s, count, filter_name in series:
                if filter_name and observatory.filter_wheel:
                    observatory.filter_wheel.select(filter_name)
                for i in range(1, count + 1):
                    beat(f"{kind} {filter_name} {i}/{count}".replace("  ", " "))
                    date_obs = timezone.now()
                    data = observatory.camera.expose(duration_s=exposure_s, frame_type=kind.upper())
                    ctx = ImageContext(telescope=detector.telescope.name, detector=detector.name, target=kind,
                                       frame_type=kind, filter_name=filter_name, exposure_s=exposure_s,
                                       site_name=site.name, site_lat_deg=site.latitude_deg,
                                       site_lon_deg=site.longitude_deg, site_elev_m=site.elevation_m)
                    frame = frame_file_write(data, ctx, date_obs=date_obs, airmass=None, unique=True,
                                             ccd_temp_c=camera_temperature(observatory))
                    Image.objects.create(detector=detector, frame_type=kind, file_path=str(frame.path),
                                         date_obs=frame.date_obs, exposure_s=exposure_s, filter_name=filter_name,
                                         header=frame.header)
                    total += 1
            send_after_commit("pyros.analyzer.calibration_masters_build", detector_id=detector.pk, when=when)
        log.info("%s calibrations: %d frame(s) taken", when, total)
    except DeviceError as exc:
        log.error("%s calibrations stopped after %d frame(s): %s", when, total, exc)
    return total
