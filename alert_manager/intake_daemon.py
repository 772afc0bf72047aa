"""The alert intake process: ``python -m alert_manager.intake_daemon`` (the Procfile's ``alert-intake`` line).

Comet's plugin (spool mode, the default) only writes each packet to ``<spool>/incoming/`` and wakes this
process through a FIFO (see ``alert_manager.spool``); the database and broker work happens here, in its own
process, instead of competing with Comet's reactor for one GIL. Loop:

1. wait for a wake-up byte, or ``PYROS_ALERT_INTAKE_SCAN_S`` (0.5 s) as a safety net;
2. take every complete file present (oldest first, up to ``MAX_BATCH`` per transaction) and store them
   with ``services.alert_receive_many`` (one multi-row INSERT; a lone packet is one INSERT and one
   ``process_alert`` message: the latency path), which also queues their processing;
3. delete the files only after that commit.

Crash safety: a file is deleted only once its row is committed (or, database down, once
``alert_receive_many`` has moved it to the recovery spool that ``process_pending`` imports). A crash between
the commit and the delete leaves files whose rows exist: at start-up the files present are checked against
the stored ``sha256`` and the known ones are deleted without being stored again (no duplicate row, no
``repeats`` count).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path

from alert_manager import spool

log = logging.getLogger("pyros.alert_manager.intake_daemon")

MAX_BATCH = 200  # bounds one transaction; more files go in the next round
DEFAULT_SCAN_S = 0.5


def _ensure_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pyros.settings")
    import django
    from django.apps import apps

    if not apps.ready:
        django.setup()
    import pyros.celery  # noqa: F401 - `shared_task`s publish through the app's broker configuration


def import_files(paths: list[Path], *, skip_known: bool = False) -> int:
    """Store the packets of ``paths`` (one transaction), queue them, then delete the files.

    ``skip_known``: files whose bytes are already stored (a crash between commit and delete) are deleted
    without being stored again. Returns how many packets were handed to ``alert_receive_many``.
    """
    from django.db import close_old_connections, connection

    from alert_manager import services

    packets: list[tuple[bytes, float]] = []
    taken: list[Path] = []
    for path in paths:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:  # taken by another importer meanwhile
            continue
        received_unix = spool.received_unix_of(path)
        if received_unix is None:
            received_unix = path.stat().st_mtime
        packets.append((raw, received_unix))
        taken.append(path)
    if not packets:
        return 0
    if not connection.in_atomic_block:  # (in a test's transaction the connection must be kept)
        close_old_connections()  # a connection broken by a database restart is replaced, not reused
    if skip_known:
        import hashlib

        from pyrosapp.models import Alert

        hashes = [hashlib.sha256(raw).hexdigest() for raw, _ in packets]
        known = set(Alert.objects.filter(sha256__in=set(hashes)).values_list("sha256", flat=True))
        if known:
            log.info("intake: %d spool files were stored before a restart: deleted, not stored again", len(known))
            for path, digest in zip(taken, hashes, strict=True):
                if digest in known:
                    path.unlink(missing_ok=True)
            kept = [(p, pk) for p, pk, digest in zip(taken, packets, hashes, strict=True) if digest not in known]
            taken, packets = [p for p, _ in kept], [pk for _, pk in kept]
            if not packets:
                return 0
    # Stores (or, database down, moves to the recovery spool) every packet before returning: only then delete.
    services.alert_receive_many(packets=packets)
    for path in taken:
        path.unlink(missing_ok=True)
    return len(packets)


def import_pending(folder: Path, *, skip_known: bool = False) -> int:
    """Import every complete file of ``folder``, in transactions of up to MAX_BATCH."""
    total = 0
    while files := spool.pending_files(folder):
        for start in range(0, len(files), MAX_BATCH):
            total += import_files(files[start:start + MAX_BATCH], skip_known=skip_known)
        if not skip_known:
            break  # the caller loops; during a burst new files are taken on the next wake-up
        skip_known = False
    return total


class IntakeDaemon:
    def __init__(self, root: Path | None = None, scan_s: float | None = None) -> None:
        self.root = root or spool.spool_root()
        self.incoming = spool.incoming_dir(self.root)
        self.scan_s = scan_s if scan_s is not None else float(os.environ.get("PYROS_ALERT_INTAKE_SCAN_S",
                                                                            DEFAULT_SCAN_S))
        self.stop_event = threading.Event()

    def run(self) -> None:
        self.incoming.mkdir(parents=True, exist_ok=True)
        listener = spool.WakeListener(self.root / spool.WAKE_FIFO)
        try:
            # Files left by a crash (of this process, or packets spooled while it was down) go first.
            count = import_pending(self.incoming, skip_known=True)
            log.warning("alert intake ready on %s (%d spooled packets imported at start)", self.incoming, count)
            while not self.stop_event.is_set():
                listener.wait(self.scan_s)
                try:
                    import_pending(self.incoming)
                except Exception:  # noqa: BLE001 - keep serving: the files stay, the next round retries
                    log.exception("alert intake: import failed, files kept for the next round")
                    time.sleep(self.scan_s)
            import_pending(self.incoming)  # what arrived before the stop
        finally:
            listener.close()

    def stop(self, *_args: object) -> None:
        self.stop_event.set()


def main() -> None:
    _ensure_django()
    daemon = IntakeDaemon()
    signal.signal(signal.SIGTERM, daemon.stop)
    signal.signal(signal.SIGINT, daemon.stop)
    try:
        daemon.run()
    finally:
        from django.db import connections

        connections.close_all()


if __name__ == "__main__":
    main()
