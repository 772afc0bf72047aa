"""PyROS handler plugin for Comet 3.1.0 (enable with ``--pyros``).

Comet finds it as ``comet/plugins/pyros_handler.py`` on PYTHONPATH (this folder has no
``__init__.py`` on purpose: ``comet.plugins`` extends its ``__path__`` with every such folder).
Comet calls handlers in its reactor thread, after it has already ACKed the packet, and only logs
their failures; so this handler never blocks the reactor. It takes the receive time, then:

- if the intake function is marked ``nonblocking`` (the default ``alert_manager.intake:submit_packet``),
  calls it right there with ``(raw, received_unix)``: it only hands the bytes to PyROS's writer thread,
  which persists them first and queues their processing (batched when packets arrive faster than one
  database write); at shutdown the intake module's ``flush()`` writes what is still in memory;
- otherwise hands the raw bytes to a Twisted thread (``deferToThread``) calling ``function(raw)``.

Modes (``--pyros-mode`` or env ``PYROS_COMET_PLUGIN_MODE``):

- ``spool`` (default): write the raw bytes to the spool folder (``alert_manager.spool.write_packet``:
  temporary name, ``os.replace``; ~0.05 ms in the reactor), wake the intake daemon
  (``python -m alert_manager.intake_daemon``) with one byte on its FIFO, then fsync the file in a thread.
  The database and broker work runs in that other process: Comet's reactor keeps its CPU and GIL for the network. If the spool cannot be
  written (disk full), the packet falls back to the in-process intake below.
- ``intake``: call the intake function (``--pyros-intake`` / env ``PYROS_COMET_INTAKE``,
  default ``alert_manager.intake:submit_packet``), imported lazily, once.
- ``timestamp``: only append ``<receive unix time>\\t<ivorn>\\t<sha1>`` to the file given by
  ``--pyros-timestamp-file`` / env ``PYROS_COMET_TIMESTAMP_FILE``: the latency reference of Comet
  alone used by ``scripts/bench/bench_alerts_comet.py``.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from comet.icomet import IHandler, IHasOptions
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.plugin import IPlugin
from zope.interface import implementer

from alert_manager import spool

MODE_SPOOL = "spool"
MODE_INTAKE = "intake"
MODE_TIMESTAMP = "timestamp"
DEFAULT_INTAKE = "alert_manager.intake:submit_packet"
DEFAULT_TIMESTAMP_FILE = "var/comet-receive-times.log"

_log = Logger(namespace="pyros.comet")


@implementer(IPlugin, IHandler, IHasOptions)
class PyrosHandler:
    name = "pyros"

    def __init__(self) -> None:
        self.mode = os.environ.get("PYROS_COMET_PLUGIN_MODE", MODE_SPOOL)
        self.intake_path = os.environ.get("PYROS_COMET_INTAKE", DEFAULT_INTAKE)
        self.timestamp_file = os.environ.get("PYROS_COMET_TIMESTAMP_FILE", DEFAULT_TIMESTAMP_FILE)
        self._intake: Callable[[bytes], None] | None = None
        self._import_lock = threading.Lock()
        self._file_lock = threading.Lock()
        self._spool_dir: Path | None = None
        self._waker: spool.Waker | None = None
        self._fsync = spool.fsync_enabled()

    # IHasOptions: Comet exposes them as --pyros-mode, --pyros-intake, --pyros-timestamp-file.
    def get_options(self) -> list[tuple[str, str, str]]:
        return [
            ("mode", self.mode, f"{MODE_SPOOL} (spool folder + intake daemon), {MODE_INTAKE} (in-process intake) "
                                f"or {MODE_TIMESTAMP} (latency reference)"),
            ("intake", self.intake_path, "module:function called with the raw packet bytes (intake mode)"),
            ("timestamp-file", self.timestamp_file, "file receiving one line per packet (timestamp mode)"),
        ]

    def set_option(self, name: str, value: str | None) -> None:
        if value is None:
            return
        if name == "mode":
            if value not in (MODE_SPOOL, MODE_INTAKE, MODE_TIMESTAMP):
                raise ValueError(f"--pyros-mode must be {MODE_SPOOL}, {MODE_INTAKE} or {MODE_TIMESTAMP}, not {value!r}")
            self.mode = value
        elif name == "intake":
            self.intake_path = value
        elif name == "timestamp-file":
            self.timestamp_file = value

    def __call__(self, event):  # event: Comet's xml_document; returns a Deferred
        received_unix = time.time()  # wall clock: compared with the sender's clock in another process
        raw: bytes = event.raw_bytes
        ivorn = event.element.get("ivorn", "?")
        if self.mode == MODE_SPOOL:
            try:
                self._spool(raw, received_unix)
                return None
            except OSError:
                _log.failure("PyROS spool failed for {ivorn}: handing it to the in-process intake", ivorn=ivorn)
        if self.mode == MODE_TIMESTAMP:
            d = deferToThread(self._record_timestamp, raw, ivorn, received_unix)
        elif getattr(intake := self._load_intake(), "nonblocking", False):
            intake(raw, received_unix)  # returns at once: the writer thread persists it
            return None
        else:
            d = deferToThread(self._deliver, raw)
            d.addCallback(self._log_delivered, ivorn, received_unix)
        # Callbacks run back in the reactor thread: log there, not in the worker thread.
        d.addErrback(self._log_failure, ivorn, received_unix)
        return d

    def _spool(self, raw: bytes, received_unix: float) -> None:
        if self._spool_dir is None:
            root = spool.spool_root()
            self._spool_dir = spool.incoming_dir(root)
            self._waker = spool.Waker(root / spool.WAKE_FIFO)
        path = spool.write_packet(raw, received_unix, self._spool_dir, fsync=False)
        self._waker.wake()
        if self._fsync:
            # To the disk after the wake-up, in a thread: an fsync stall (up to 0.5 s on this disk) delays
            # neither this alert nor the reactor. (Comet ACKed the packet before calling handlers.)
            from twisted.internet import reactor

            reactor.callInThread(spool.fsync_path, path)

    def _record_timestamp(self, raw: bytes, ivorn: str, received_unix: float) -> None:
        line = f"{received_unix:.6f}\t{ivorn}\t{hashlib.sha1(raw).hexdigest()}\n"
        with self._file_lock, open(self.timestamp_file, "a", encoding="utf-8") as fh:
            fh.write(line)

    def _deliver(self, raw: bytes) -> float:
        self._load_intake()(raw)
        return time.time()

    @staticmethod
    def _log_delivered(done_unix: float, ivorn: str, received_unix: float) -> None:
        _log.info(
            "PyROS intake of {ivorn}: received at {received:.6f} (unix), persisted and queued in {ms:.1f} ms",
            ivorn=ivorn,
            received=received_unix,
            ms=(done_unix - received_unix) * 1e3,
        )

    def _load_intake(self) -> Callable[[bytes], None]:
        if self._intake is None:
            with self._import_lock:
                if self._intake is None:
                    module_name, _, func_name = self.intake_path.partition(":")
                    module = importlib.import_module(module_name)
                    self._intake = getattr(module, func_name or "receive_packet")
                    flush = getattr(module, "flush", None)
                    if callable(flush):
                        # SIGTERM: write the packets still in memory before the process exits.
                        from twisted.internet import reactor

                        reactor.addSystemEventTrigger("before", "shutdown", deferToThread, flush)
        return self._intake

    @staticmethod
    def _log_failure(failure, ivorn: str, received_unix: float) -> None:  # failure: twisted Failure
        _log.failure(
            "PyROS handler failed for {ivorn} (received at {received:.6f}): packet NOT handed to PyROS",
            failure,
            ivorn=ivorn,
            received=received_unix,
        )


# Comet discovers the module-level instance.
pyros_handler = PyrosHandler()
