"""Executes one sequence on the devices: dome, slew, settle, then each plan's filter and exposures.

What survives a killed worker: each exposure is committed (FITS file + Image row + the plan's
`images_done`) before the next is counted, so a resumed sequence skips completed plans and
exposures, and the unique (plan, index) key makes a duplicate image impossible.

Stopping: a watcher thread reads the observatory state 4 times a second; when the running
sequence is flagged for abort (operator, pause, pre-emption, unsafe weather, cancellation) it
aborts the camera and the mount itself, so the blocked exposure or slew ends within a second.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import F
from django.utils import timezone

from devices.errors import DeviceAborted, DeviceError
from majordome.services import RETRY_PREFIX as _RETRY_PREFIX
from observation_manager.fits_files import ImageContext, add_pyros_headers, airmass_from_altitude, relative_path
from pyrosapp.models import Image, ObservatoryState, Plan, Request, Sequence

log = logging.getLogger("pyros.observation_manager")

HEARTBEAT_EVERY_S = 2.0
WATCH_EVERY_S = 0.25

# Abort reasons that interrupt a sequence (it goes back to pending and is planned again), as
# opposed to an operator's abort, which ends it.
_INTERRUPTING = ("pre-empted", "re-point", "paused", "unsafe", "observatory stopped", "dome closed")



class SequenceStopped(Exception):
    def __init__(self, reason: str, *, interrupted: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.interrupted = interrupted


@dataclass
class Execution:
    """The in-memory progress of one execution; the watcher persists it with the heartbeat."""

    sequence_id: int
    token: str
    state_id: int
    progress: dict = field(default_factory=dict)
    abort_reason: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.aborted = threading.Event()
        self.finished = threading.Event()
        self.dirty = threading.Event()

    def update(self, **changes) -> None:
        with self._lock:
            self.progress.update(changes)
        self.dirty.set()

    def snapshot(self) -> dict:
        with self._lock:
            return dict(self.progress)

    def check(self) -> None:
        if self.aborted.is_set():
            raise SequenceStopped(self.abort_reason, interrupted=self.abort_reason.startswith(_INTERRUPTING))


def _write_progress(execution: Execution, heartbeat: datetime) -> None:
    """Persist progress + heartbeat, only while this execution still owns the observatory."""
    execution.update(heartbeat=heartbeat.isoformat())
    ObservatoryState.objects.filter(pk=execution.state_id, current_sequence_id=execution.sequence_id).update(
        progress=execution.snapshot(), version=F("version") + 1)
    Sequence.objects.filter(pk=execution.sequence_id, execution_token=execution.token).update(
        execution_heartbeat=heartbeat)


class Watcher(threading.Thread):
    """Heartbeat + abort detection, in its own thread (and its own database connection)."""

    def __init__(self, execution: Execution, observatory) -> None:
        super().__init__(name=f"pyros-watch-{execution.sequence_id}", daemon=True)
        self.execution = execution
        self.observatory = observatory

    def run(self) -> None:
        ex = self.execution
        last_beat = 0.0
        try:
            while not ex.finished.wait(WATCH_EVERY_S):
                row = ObservatoryState.objects.filter(pk=ex.state_id).values(
                    "abort_sequence_id", "abort_reason").first() or {}
                if row.get("abort_sequence_id") == ex.sequence_id and not ex.aborted.is_set():
                    ex.abort_reason = row.get("abort_reason") or "aborted"
                    ex.aborted.set()
                    log.info("sequence %s: stopping (%s)", ex.sequence_id, ex.abort_reason)
                    for device in (self.observatory.camera, self.observatory.mount):
                        try:
                            device.abort()
                        except Exception as exc:  # noqa: BLE001 - a failing abort must not kill the watcher
                            log.warning("abort of %s failed: %s", getattr(device, "name", device), exc)
                status = Sequence.objects.filter(pk=ex.sequence_id).values_list("status", flat=True).first()
                if status in (Sequence.Status.CANCELLED, Sequence.Status.EXPIRED) and not ex.aborted.is_set():
                    ex.abort_reason = f"request {status}"
                    ex.aborted.set()
                    self.observatory.camera.abort()
                now = time.monotonic()
                if ex.dirty.is_set() or now - last_beat >= HEARTBEAT_EVERY_S:
                    ex.dirty.clear()
                    _write_progress(ex, timezone.now())
                    last_beat = now
        except Exception:  # the executor must learn that its watcher died: stop rather than run blind
            log.exception("watcher of sequence %s failed", ex.sequence_id)
            ex.abort_reason = "watcher failed"
            ex.aborted.set()
        finally:
            connection.close()


# --- execution -----------------------------------------------------------------------------------
def sequence_execute(*, sequence_id: int, token: str, observatory=None) -> str:
    """Run a claimed sequence to its end. Returns its final status."""
    from majordome.selectors import observatory_state

    seq = Sequence.objects.select_related("request__program", "request__owner").filter(pk=sequence_id).first()
    if seq is None or seq.status != Sequence.Status.EXECUTING or seq.execution_token != token:
        log.warning("sequence %s: not executing under this claim any more; nothing to do", sequence_id)
        return "stale"
    state = observatory_state()
    plans = list(Plan.objects.filter(album__sequence=seq).select_related(
        "filter", "album__detector__telescope__site").order_by("album__order", "album_id", "order", "id"))
    execution = Execution(sequence_id=seq.pk, token=token, state_id=state.pk, progress={
        "kind": "sequence", "sequence": seq.pk, "request": seq.request_id, "name": seq.name,
        "target": seq.target_name, "token": token, "plans_total": len(plans), "plan_index": 0,
        "step": "starting", "fraction": _fraction(plans)})
    outcome_reason = ""
    interrupted = False
    try:
        if observatory is None:
            from majordome.device_link import get_observatory

            observatory = get_observatory(blobs=True)
        watcher = Watcher(execution, observatory)
        watcher.start()
        _point(observatory, seq, plans, execution)
        for index, plan in enumerate(plans, start=1):
            if plan.status == Plan.Status.COMPLETED:
                continue
            if index > 1 and _pause_requested(state.pk):
                raise SequenceStopped("paused after the current plan", interrupted=True)
            execution.check()
            _run_plan(observatory, seq, plan, index, plans, execution)
    except SequenceStopped as stop:
        outcome_reason, interrupted = stop.reason, stop.interrupted
    except DeviceAborted as exc:
        outcome_reason = execution.abort_reason or f"device aborted: {exc}"
        interrupted = outcome_reason.startswith(_INTERRUPTING)
    except DeviceError as exc:
        # Another process (monitoring, alerts) may abort the devices before our watcher has seen the
        # flag: ask the database who stopped us before calling it a device failure.
        flagged = _abort_flag_reason(execution)
        if execution.aborted.is_set() or flagged:
            outcome_reason = execution.abort_reason or flagged
            interrupted = outcome_reason.startswith(_INTERRUPTING)
        elif exc.permanent is False and not seq.status_reason.startswith(_RETRY_PREFIX):
            # A dropped connection or a timeout may pass: plan the sequence again, once.
            outcome_reason, interrupted = f"{_RETRY_PREFIX}{exc.__class__.__name__}: {exc}", True
            log.warning("sequence %s interrupted by a device error, to be retried: %s", seq.pk, exc)
        else:
            outcome_reason = f"{exc.__class__.__name__}: {exc}"
            log.error("sequence %s failed on the devices: %s", seq.pk, outcome_reason)
    except Exception as exc:
        outcome_reason = f"internal error: {exc}"
        log.exception("sequence %s failed", seq.pk)
    finally:
        execution.finished.set()
    if _pause_requested(state.pk):
        _apply_deferred_pause(state.pk)
    return sequence_finish(sequence_id=seq.pk, token=token, reason=outcome_reason, interrupted=interrupted)


def _abort_flag_reason(execution: Execution) -> str:
    row = ObservatoryState.objects.filter(pk=execution.state_id).values("abort_sequence_id", "abort_reason").first()
    if row and row["abort_sequence_id"] == execution.sequence_id:
        return row["abort_reason"] or "aborted"
    return ""


def _fraction(plans: list[Plan]) -> float:
    total = sum(p.count * p.exposure_s for p in plans) or 1.0
    return round(sum(p.images_done * p.exposure_s for p in plans) / total, 4)


def _pause_requested(state_id: int) -> bool:
    return ObservatoryState.objects.filter(pk=state_id, pause_requested="deferred").exists()


def _apply_deferred_pause(state_id: int) -> None:
    from majordome import state_machine as sm

    n = ObservatoryState.objects.filter(pk=state_id, pause_requested="deferred").update(
        mode=sm.PAUSED, pause_requested="", version=F("version") + 1)
    if n:
        log.info("observatory paused after the current plan, as requested")


def _point(observatory, seq: Sequence, plans: list[Plan], execution: Execution) -> None:
    from majordome.selectors import observatory_state

    telescope = plans[0].album.detector.telescope if plans else None
    execution.check()
    dome = observatory.dome
    if dome:
        dome_state = dome.state()
        if dome_state.parked:
            execution.update(step="unparking dome")
            dome.unpark()
        shutter = dome_state.shutter
        if shutter != "open":
            if observatory_state().safety != "safe":
                raise SequenceStopped("unsafe: the dome stays closed", interrupted=True)
            execution.update(step="opening dome")
            dome.open_shutter(timeout_s=300)
        try:
            dome.follow_mount(True)
        except DeviceError as exc:
            log.info("dome cannot follow the mount (%s); continuing", exc)
    execution.check()
    execution.update(step="slewing")
    t0 = time.perf_counter()
    if observatory.mount.state().parked:
        observatory.mount.unpark()
    operation = observatory.mount.start_slew(ra_deg=seq.ra_deg, dec_deg=seq.dec_deg)
    operation.wait(600)
    log.info("sequence %s: on target %s (slew %.1f s)", seq.pk, seq.target_name, time.perf_counter() - t0)
    settle_s = telescope.settle_s if telescope else 0.0
    if settle_s > 0:
        execution.update(step="settling")
        if execution.aborted.wait(settle_s):
            execution.check()


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
    )


def _run_plan(observatory, seq: Sequence, plan: Plan, plan_index: int, plans: list[Plan], execution: Execution) -> None:
    execution.update(step="changing filter", plan=plan.pk, plan_index=plan_index, filter=plan.filter.name,
                     exposure=plan.images_done, of=plan.count, exposure_s=plan.exposure_s)
    Plan.objects.filter(pk=plan.pk, status=Plan.Status.PENDING).update(status=Plan.Status.RUNNING)
    if observatory.filter_wheel:
        observatory.filter_wheel.select(plan.filter.name)
    execution.check()
    frame = plan.frame_type.upper()

    def start(i: int):
        execution.update(step="exposing", exposure=i, exposure_started=timezone.now().isoformat())
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
        execution.update(fraction=_fraction(plans))
        # Start the next exposure before saving this one: storage overlaps the camera's time.
        operation = start(i + 1) if i + 1 <= plan.count and not execution.aborted.is_set() else None
        mount = observatory.mount.state()
        _store_image(seq, plan, i, data, date_obs, airmass_from_altitude(mount.alt_deg))
        i += 1
        if operation is None:
            execution.check()
    Plan.objects.filter(pk=plan.pk).update(status=Plan.Status.COMPLETED)
    plan.status = Plan.Status.COMPLETED
    execution.update(fraction=_fraction(plans))


def _store_image(seq: Sequence, plan: Plan, index: int, data: bytes, date_obs: datetime, airmass: float | None) -> Image:
    ctx = _context(seq, plan, index)
    fits_bytes, header = add_pyros_headers(data, ctx, airmass=airmass)
    date_obs = _header_time(header) or date_obs
    rel = relative_path(ctx, date_obs)
    _write_fits(rel, fits_bytes)
    with transaction.atomic():
        image, _ = Image.objects.update_or_create(plan=plan, index_in_plan=index, defaults=dict(
            sequence=seq, detector=plan.album.detector, frame_type=plan.frame_type, file_path=str(rel),
            date_obs=date_obs, exposure_s=plan.exposure_s, filter_name=plan.filter.name, binning=plan.binning,
            ra_deg=header.get("RA", seq.ra_deg), dec_deg=header.get("DEC", seq.dec_deg), airmass=airmass,
            header=_header_dict(header)))
        Plan.objects.filter(pk=plan.pk, images_done__lt=index).update(images_done=index)
        transaction.on_commit(lambda: _request_analysis(image.pk))
    log.info("image %s saved (%d/%d of plan %s)", rel, index, plan.count, plan.pk)
    return image


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


def _request_analysis(image_id: int) -> None:
    from pyros.celery import app

    try:
        app.send_task("pyros.analyzer.analyze_image", kwargs={"image_id": image_id})
    except Exception as exc:  # the image is stored; the analyzer's periodic sweep will pick it up
        log.warning("analysis of image %s not queued: %s", image_id, exc)


# --- the end of a sequence -----------------------------------------------------------------------
def sequence_finish(*, sequence_id: int, token: str, reason: str = "", interrupted: bool = False) -> str:
    """Final status from what was done, time used charged to the program, the observatory freed,
    and the majordome asked for the next sequence."""
    from majordome.services import majordome_wake
    from routine_manager import lifecycle
    from routine_manager.services import sequence_record_time_used, sequence_set_status

    close_old_connections()
    seq = Sequence.objects.get(pk=sequence_id)
    plans = list(Plan.objects.filter(album__sequence_id=sequence_id))
    done_images = sum(p.images_done for p in plans)
    if interrupted:
        status = lifecycle.PENDING
    elif plans and all(p.status == Plan.Status.COMPLETED for p in plans):
        status = lifecycle.COMPLETED
    elif done_images:
        status = lifecycle.PARTIALLY_COMPLETED
    else:
        status = lifecycle.FAILED
    now = timezone.now()
    used_s = (now - seq.started_at).total_seconds() if seq.started_at else 0.0
    if seq.status == Sequence.Status.EXECUTING and (not token or seq.execution_token == token):
        try:
            sequence_set_status(sequence_id=sequence_id, status=status,
                                reason=reason or ("" if status == lifecycle.COMPLETED else "stopped"),
                                ended_at=now)
        except lifecycle.InvalidStateChange as exc:
            log.warning("sequence %s: %s", sequence_id, exc)
        Sequence.objects.filter(pk=sequence_id).update(execution_token="")
    if used_s > 0:
        sequence_record_time_used(sequence_id=sequence_id, used_s=used_s)
    ObservatoryState.objects.filter(current_sequence_id=sequence_id).update(
        current_sequence=None, progress={}, version=F("version") + 1)
    ObservatoryState.objects.filter(abort_sequence_id=sequence_id).update(abort_sequence_id=None, abort_reason="")
    log.info("sequence %s %s%s (%d image(s), %.0f s used)", sequence_id, status, f": {reason}" if reason else "",
             done_images, used_s)
    if status == lifecycle.PENDING:
        from scheduler.services import schedule_request_replan

        schedule_request_replan(reason=f"sequence {sequence_id} interrupted")
    majordome_wake(reason=f"sequence {sequence_id} ended")
    return status


def request_refresh_status(*, request_id: int) -> None:
    """Move a request to the status its sequences imply (executing when one runs...)."""
    from routine_manager import lifecycle
    from routine_manager.services import request_set_status

    statuses = Sequence.objects.filter(request_id=request_id).values_list("status", flat=True)
    implied = lifecycle.request_status_for_sequences(statuses)
    current = Request.objects.filter(pk=request_id).values_list("status", flat=True).first()
    if implied and current and implied != current:
        try:
            request_set_status(request_id=request_id, status=implied)
        except lifecycle.InvalidStateChange as exc:
            log.info("request %s stays %s: %s", request_id, current, exc)


# --- calibrations --------------------------------------------------------------------------------
def calibrations_run(*, when: str, token: str, observatory=None) -> int:
    """Bias, dark and flat series of every detector, as its `calibration_plan` says, stored as
    Images of their type; then the analyzer builds the masters. Returns the number of frames."""
    from majordome.selectors import observatory_state
    from pyrosapp.models import Detector

    state = observatory_state()
    if observatory is None:
        from majordome.device_link import get_observatory

        observatory = get_observatory(blobs=True)
    site = state.site
    total = 0

    def beat(step: str) -> None:
        ObservatoryState.objects.filter(pk=state.pk).update(progress={
            "kind": "calibration", "token": token, "heartbeat": timezone.now().isoformat(), "step": step,
            "when": when}, version=F("version") + 1)

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
                    fits_bytes, header = add_pyros_headers(data, ctx, airmass=None)
                    date_obs = _header_time(header) or date_obs
                    rel = relative_path(ctx, date_obs)
                    if Image.objects.filter(file_path=str(rel)).exists():  # two frames within one second
                        rel = rel.with_name(rel.stem + f"_{i:03d}.fits")
                    _write_fits(rel, fits_bytes)
                    Image.objects.create(detector=detector, frame_type=kind, file_path=str(rel), date_obs=date_obs,
                                         exposure_s=exposure_s, filter_name=filter_name, header=_header_dict(header))
                    total += 1
            transaction.on_commit(lambda d=detector.pk: _request_masters(d, when))
        log.info("%s calibrations: %d frame(s) taken", when, total)
    except DeviceError as exc:
        log.error("%s calibrations stopped after %d frame(s): %s", when, total, exc)
    finally:
        ObservatoryState.objects.filter(pk=state.pk, progress__token=token).update(progress={},
                                                                                 version=F("version") + 1)
    return total


def _request_masters(detector_id: int, when: str) -> None:
    from pyros.celery import app

    try:
        app.send_task("pyros.analyzer.calibration_masters_build", kwargs={"detector_id": detector_id, "when": when})
    except Exception as exc:
        log.warning("masters of detector %s not queued: %s", detector_id, exc)
