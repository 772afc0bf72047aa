"""What a running procedure gets (``ctx``): the observatory's devices through the same device layer the
executor uses, progress, abort, a logger, publish(), and frames saved as FITS + Image rows exactly like a
sequence's (the observation manager's header and file functions; the analyzer is told of each new image).

Stopping: the worker's watcher calls :meth:`RunControl.request_stop` (an operator's abort, a pause now, the
majordome taking the telescope back) and aborts the camera, the focuser and (on an abort) the mount, so a
blocked exposure or move ends at once; the procedure sees ``ProcedureAborted`` at its next device call or
``ctx.check()``."""

from __future__ import annotations

import concurrent.futures
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.utils import timezone

from devices.errors import DeviceError
from observation_manager.fits_files import ImageContext, airmass_from_altitude
from procedures.sdk import ProcedureAborted

MAX_LOG_LINES = 2000


@dataclass
class RunControl:
    """What a running procedure shares with its watcher (thread-safe)."""

    item_id: int
    current: float | None = None
    total: float | None = None
    message: str = ""
    published: dict = field(default_factory=dict)
    log: list = field(default_factory=list)
    stop_reason: str = ""
    stop_kind: str = ""  # "abort" (the item ends aborted) or "stop" (stopped: pre-emption, pause, unsafe)

    def __post_init__(self) -> None:
        # Look for a stop request now (set by the worker to its watcher's check): a device reported an abort
        # that another process may have ordered (an alert's pre-emption aborts the camera itself).
        self.refresh = lambda: None
        self.lock = threading.Lock()
        self.aborted = threading.Event()
        self.finished = threading.Event()
        self.dirty = threading.Event()

    def request_stop(self, *, reason: str, kind: str) -> bool:
        with self.lock:
            if self.aborted.is_set():
                return False
            self.stop_reason, self.stop_kind = reason, kind
            self.aborted.set()
        return True

    def snapshot(self) -> dict:
        with self.lock:
            return {"current": self.current, "total": self.total, "message": self.message,
                    "published": dict(self.published), "log": list(self.log)}


class _ItemLogHandler(logging.Handler):
    """Lines of the procedure's logger into the item's log (the page and ``pyros monitor`` show them); the
    same records also reach PyROS's log (dashboard) through the ``pyros`` logger's handlers."""

    def __init__(self, control: RunControl) -> None:
        super().__init__(logging.DEBUG)
        self.control = control

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = [datetime.fromtimestamp(record.created, tz=UTC).isoformat(), record.levelname,
                    record.getMessage()[:2000]]
        except Exception:  # noqa: BLE001 - a bad format string must not break the procedure
            return
        with self.control.lock:
            self.control.log.append(line)
            del self.control.log[:-MAX_LOG_LINES]
        self.control.dirty.set()


@dataclass
class Frame:
    """An exposure: the FITS bytes from the camera and, when saved, where (``path`` relative to the data
    directory, ``image_id``; both are set once the background save is done: ``wait_saved()``)."""

    data: bytes
    exposure_s: float
    frame_type: str
    filter_name: str
    date_obs: datetime
    _saving: concurrent.futures.Future | None = None

    def wait_saved(self, timeout_s: float = 60.0) -> tuple[int, str] | None:
        return self._saving.result(timeout_s) if self._saving else None

    @property
    def image_id(self) -> int | None:
        saved = self.wait_saved()
        return saved[0] if saved else None

    @property
    def path(self) -> str | None:
        saved = self.wait_saved()
        return saved[1] if saved else None

    def pixels(self):
        """The image as a float numpy array (first HDU with data)."""
        import io

        import numpy as np
        from astropy.io import fits

        with fits.open(io.BytesIO(self.data)) as hdul:
            hdu = next(h for h in hdul if h.data is not None)
            return np.asarray(hdu.data, dtype=float)


class ProcedureContext:
    """The ``ctx`` argument of every procedure."""

    def __init__(self, *, control: RunControl, observatory, item_uid: str, procedure: str,
                 logger: logging.Logger) -> None:
        self.control = control
        self.observatory = observatory
        self.item_uid = item_uid
        self.procedure = procedure
        self.log = logger
        self._saver = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="pyros-frame-save")
        self._saves: list[concurrent.futures.Future] = []
        self._detector = None

    # --- devices (the same device layer as the executor) -------------------------------------------
    @property
    def mount(self):
        return self.observatory.mount

    @property
    def dome(self):
        return self.observatory.dome

    @property
    def filter_wheel(self):
        return self.observatory.filter_wheel

    @property
    def camera(self):
        return self.observatory.camera

    @property
    def focuser(self):
        return self.observatory.focuser

    @property
    def weather(self):
        return self.observatory.weather

    # --- progress, abort, results ------------------------------------------------------------------
    def set_progress(self, current: float, total: float | None = None, message: str = "") -> None:
        with self.control.lock:
            self.control.current = float(current)
            if total is not None:
                self.control.total = float(total)
            if message:
                self.control.message = str(message)[:300]
        self.control.dirty.set()

    def abort_requested(self) -> bool:
        return self.control.aborted.is_set()

    def check(self) -> None:
        """Raise ``ProcedureAborted`` once the procedure must stop (call it between steps)."""
        if self.control.aborted.is_set():
            raise ProcedureAborted(self.control.stop_reason or "aborted", kind=self.control.stop_kind or "abort")

    def sleep(self, seconds: float) -> None:
        """Wait, but wake at once on an abort."""
        if self.control.aborted.wait(max(0.0, seconds)):
            self.check()

    def publish(self, **data) -> None:
        """Results the caller reads back (API, page, ``pyros queue history``): JSON values only."""
        json.dumps(data)  # refuse what cannot be stored, at the call that publishes it
        with self.control.lock:
            self.control.published.update(data)
        self.control.dirty.set()

    # --- device calls that honour an abort -----------------------------------------------------------
    def wait(self, operation, timeout_s: float):
        """Wait for a device ``Operation``; an abort (the watcher aborts the device) raises ProcedureAborted."""
        try:
            return operation.wait(timeout_s)
        except DeviceError:  # aborted here, or by another process (the INDI camera then reports a failure)
            self.control.refresh()
            self.check()
            raise

    def expose(self, exposure_s: float, *, frame_type: str = "light", filter_name: str | None = None,
               binning: int = 1, target: str = "", save: bool = True, on_saved=None) -> Frame:
        """Select the filter (if given), take one exposure, save it (FITS + Image row, in the background so
        the next exposure starts at once) and return the frame. ``on_saved(image)`` is called inside the
        transaction that creates the Image row (a flow step records its frames with it)."""
        self.check()
        if filter_name and self.observatory.filter_wheel:
            self.filter_wheel.select(filter_name)
            self.check()
        elif filter_name is None and self.observatory.filter_wheel:
            filter_name = self.filter_wheel.current()
        date_obs = timezone.now()
        operation = self.camera.start_exposure(duration_s=exposure_s, frame_type=frame_type.upper(), binning=binning,
                                               object_name=target or self.procedure)
        data = self.wait(operation, exposure_s + 120.0)
        frame = Frame(data=data, exposure_s=exposure_s, frame_type=frame_type.lower(), filter_name=filter_name or "",
                      date_obs=date_obs)
        if save:
            mount = None
            if frame.frame_type == "light":
                try:
                    mount = self.mount.state()
                except Exception:  # noqa: BLE001 - a frame without pointing is still a frame
                    mount = None
            frame._saving = self._saver.submit(self._save, frame, target or self.procedure, binning, mount, on_saved)
            self._saves.append(frame._saving)
        return frame

    def _save(self, frame: Frame, target: str, binning: int, mount, on_saved=None) -> tuple[int, str]:
        from django.db import close_old_connections

        try:
            image = frame_store(frame=frame, target=target, binning=binning, mount=mount, procedure=self.procedure,
                                item_uid=self.item_uid, detector=self._detector_row(), observatory=self.observatory,
                                on_saved=on_saved)
            self.log.info("frame saved: %s", image.file_path)
            return image.pk, image.file_path
        finally:
            close_old_connections()

    def _detector_row(self):
        if self._detector is None:
            from pyrosapp.models import Detector

            self._detector = (Detector.objects.select_related("telescope__site")
                              .filter(telescope__site__is_active=True).order_by("pk").first())
            if self._detector is None:
                raise RuntimeError("no detector configured for the active site: frames cannot be saved")
        return self._detector

    def wait_saves(self, timeout_s: float = 120.0) -> None:
        """Wait until every frame is stored (the worker calls it when the procedure returns)."""
        deadline = time.monotonic() + timeout_s
        for future in self._saves:
            future.result(max(0.1, deadline - time.monotonic()))
        self._saver.shutdown(wait=True)

    # --- external scripts and fan-out to the Celery workers (procedures/external.py, procedures/fanout.py) ---
    def script(self, path, params: dict | None = None, **options):
        """Run a script file as a subprocess (its output into the log, its published data into this item's,
        stopped by an abort): see ``procedures.external.context_script`` for the options."""
        from procedures.external import context_script

        return context_script(self, path, params, **options)

    def run(self, task: str, *args, **options):
        """Send one registered analysis task to the Celery workers; its result (or a handle with
        ``wait=False``): see ``procedures.fanout.context_run``."""
        from procedures.fanout import context_run

        return context_run(self, task, *args, **options)

    def group(self, task: str, values, *args, **options):
        """One registered analysis task per value, run in parallel by the Celery workers; the results in
        order (or a handle with ``wait=False``): see ``procedures.fanout.context_group``."""
        from procedures.fanout import context_group

        return context_group(self, task, values, *args, **options)


def frame_store(*, frame: Frame, target: str, binning: int, mount, procedure: str, item_uid: str, detector,
                observatory, on_saved=None):
    """A procedure's frame as a FITS file + Image row, written exactly as the executor writes a sequence's
    (the observation manager's headers, paths, atomic write and header dict), then queued for the analyzer."""
    from django.db import transaction

    from common.messages import send_after_commit
    from observation_manager.services import camera_temperature, frame_file_write
    from pyrosapp.models import Image

    site = detector.telescope.site
    light = frame.frame_type == "light"
    ctx = ImageContext(
        telescope=detector.telescope.name, detector=detector.name, target=target, frame_type=frame.frame_type,
        filter_name=frame.filter_name, exposure_s=frame.exposure_s, site_name=site.name,
        site_lat_deg=site.latitude_deg, site_lon_deg=site.longitude_deg, site_elev_m=site.elevation_m,
        program="procedure", observer=f"procedure {procedure}"[:60],
        ra_deg=mount.ra_deg if (light and mount) else None, dec_deg=mount.dec_deg if (light and mount) else None,
        pixel_scale_arcsec=detector.pixel_scale_arcsec, binning=binning)
    airmass = airmass_from_altitude(mount.alt_deg) if (light and mount) else None
    stored = frame_file_write(frame.data, ctx, airmass=airmass, date_obs=frame.date_obs, unique=True,
                              ccd_temp_c=camera_temperature(observatory))
    with transaction.atomic():
        image = Image.objects.create(
            detector=detector, frame_type=frame.frame_type, file_path=str(stored.path), date_obs=stored.date_obs,
            exposure_s=frame.exposure_s, filter_name=frame.filter_name, binning=binning,
            ra_deg=stored.header.get("RA"), dec_deg=stored.header.get("DEC"), airmass=airmass, header=stored.header)
        if on_saved is not None:
            on_saved(image)
        send_after_commit("pyros.analyzer.analyze_image", image_id=image.pk)
    return image
