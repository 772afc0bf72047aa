"""The alert intake process: ``python -m alert_manager.intake_daemon`` (the Procfile's ``alert-intake`` line).

Comet's plugin (spool mode, the default) only writes each packet to ``<spool>/incoming/`` and wakes this
process through a FIFO (see ``alert_manager.spool``); the database and broker work happens here, in its own
process, instead of competing with Comet's reactor for one GIL. Loop:

1. wait for a wake-up byte, or ``PYROS_ALERT_INTAKE_SCAN_S`` (0.5 s) as a safety net; a round that would
   start within ``PYROS_ALERT_INTAKE_COALESCE_MS`` (20 ms) of the previous one waits for the end of that
   window, so that a burst is stored and queued in a few large batches (a lone packet never waits);
2. take every complete file present (oldest first, up to ``MAX_BATCH`` per transaction) and store them
   with ``services.alert_receive_many`` (one multi-row INSERT; a lone packet is one INSERT and one
   ``process_alert`` message: the latency path), which also queues their processing;
3. delete the files only once that commit is durable (``SpoolDeletions``: the daemon commits asynchronously,
   the file is the packet's durable copy until PostgreSQL has flushed the commit).

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
# A round that follows the previous one within this window waits for its end: during a burst the packets of
# those milliseconds are stored in one INSERT and queued in one message instead of one each (the alerts worker
# pays per message). A packet after a quiet moment is stored at once: the latency path never waits.
DEFAULT_COALESCE_MS = 20.0


def _ensure_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pyros.settings")
    import django
    from django.apps import apps

    if not apps.ready:
        django.setup()
    # The Celery app that `shared_task`s publish through is loaded by django.setup() (the `pyros` app).


def _lsn(text: str) -> int:
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


class SpoolDeletions:
    """Spool files are the packets' durable copy until their rows are durable too.

    The daemon commits with ``synchronous_commit=off`` (see ``main``): a commit returns before PostgreSQL has
    flushed its WAL (this disk's fsync: p50 0.4 ms, p99 21 ms, max 468 ms measured — the tail landed on the
    alert latency path). So a file is deleted only once ``pg_current_wal_flush_lsn()`` has passed the WAL
    position read after its commit (PostgreSQL's WAL writer flushes within ~0.2-0.6 s). A database crash
    before that loses the rows, not the files: the next start imports them again (rows known by their sha256
    are not stored twice). With SQLite, or inside a test's transaction, files are deleted at once."""

    def __init__(self) -> None:
        self.pending: list[tuple[int, list[Path]]] = []

    def add(self, paths: list[Path]) -> None:
        """Files whose rows were just committed: deleted now if already flushed, else by a later ``sweep``."""
        from django.db import connection

        if connection.vendor != "postgresql" or connection.in_atomic_block:
            _unlink(paths)
            return
        self.pending.append((0, paths))  # position 0: ``sweep`` reads the WAL position after this commit
        self.sweep()

    def sweep(self, *, wait_s: float = 0.0) -> int:
        """Delete the files whose rows are flushed (waiting up to ``wait_s`` for the rest); returns how many
        files are still kept."""
        from django.db import connection

        deadline = time.monotonic() + wait_s
        while self.pending:
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_current_wal_insert_lsn()::text, pg_current_wal_flush_lsn()::text")
                    inserted, flushed = cursor.fetchone()
                # Files not given a position yet (just committed, or the database was gone then): anything
                # committed before now is flushed once the flush position passes the current insert position.
                self.pending = [(lsn or _lsn(inserted), paths) for lsn, paths in self.pending]
                self._delete_up_to(_lsn(flushed))
            except Exception:  # noqa: BLE001 - database gone: files stay for the start-up import
                break
            if not self.pending or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        return sum(len(paths) for _, paths in self.pending)

    def _delete_up_to(self, flushed: int) -> None:
        while self.pending and 0 < self.pending[0][0] <= flushed:
            _unlink(self.pending.pop(0)[1])


def _unlink(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


_default_deletions = SpoolDeletions()


def import_files(paths: list[Path], *, skip_known: bool = False, deletions: SpoolDeletions | None = None) -> int:
    """Store the packets of ``paths`` (one transaction), queue them, then delete the files (once their rows
    are durable: ``SpoolDeletions``).

    ``skip_known``: files whose bytes are already stored (a crash between commit and delete) are deleted
    without being stored again. Returns how many packets were handed to ``alert_receive_many``.
    """
    from django.db import close_old_connections, connection

    from alert_manager import services

    deletions = deletions or _default_deletions
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
            _unlink([path for path, digest in zip(taken, hashes, strict=True) if digest in known])
            kept = [(p, pk) for p, pk, digest in zip(taken, packets, hashes, strict=True) if digest not in known]
            taken, packets = [p for p, _ in kept], [pk for _, pk in kept]
            if not packets:
                return 0
    # Stores (or, database down, moves to the recovery spool) every packet before returning: only then delete.
    services.alert_receive_many(packets=packets)
    deletions.add(taken)
    return len(packets)


def import_pending(folder: Path, *, skip_known: bool = False, deletions: SpoolDeletions | None = None) -> int:
    """Import every complete file of ``folder``, in transactions of up to MAX_BATCH."""
    deletions = deletions or _default_deletions
    kept = {path for _, paths in deletions.pending for path in paths}  # stored already, waiting for the flush
    total = 0
    while files := [path for path in spool.pending_files(folder) if path not in kept]:
        for start in range(0, len(files), MAX_BATCH):
            total += import_files(files[start:start + MAX_BATCH], skip_known=skip_known, deletions=deletions)
        if not skip_known:
            break  # the caller loops; during a burst new files are taken on the next wake-up
        skip_known = False
        kept = {path for _, paths in deletions.pending for path in paths}
    return total


class IntakeDaemon:
    def __init__(self, root: Path | None = None, scan_s: float | None = None) -> None:
        self.root = root or spool.spool_root()
        self.incoming = spool.incoming_dir(self.root)
        self.scan_s = scan_s if scan_s is not None else float(os.environ.get("PYROS_ALERT_INTAKE_SCAN_S",
                                                                            DEFAULT_SCAN_S))
        self.coalesce_s = float(os.environ.get("PYROS_ALERT_INTAKE_COALESCE_MS", DEFAULT_COALESCE_MS)) / 1000.0
        self.stop_event = threading.Event()
        self.deletions = SpoolDeletions()
        self.rounds = 0

    def run(self) -> None:
        self.incoming.mkdir(parents=True, exist_ok=True)
        listener = spool.WakeListener(self.root / spool.WAKE_FIFO)
        try:
            # Files left by a crash (of this process, or packets spooled while it was down) go first.
            count = import_pending(self.incoming, skip_known=True, deletions=self.deletions)
            log.warning("alert intake ready on %s (%d spooled packets imported at start)", self.incoming, count)
            last_import = 0.0
            while not self.stop_event.is_set():
                # Files waiting for the WAL flush are checked again soon (it comes within ~0.2-0.6 s).
                listener.wait(min(self.scan_s, 0.1) if self.deletions.pending else self.scan_s)
                since = time.monotonic() - last_import
                if since < self.coalesce_s:  # a burst: the next few milliseconds' packets join this round
                    self.stop_event.wait(self.coalesce_s - since)
                    listener.drain()
                round_started = time.monotonic()
                try:
                    if import_pending(self.incoming, deletions=self.deletions):
                        last_import = round_started
                        self.rounds += 1
                    self.deletions.sweep()
                except Exception:  # noqa: BLE001 - keep serving: the files stay, the next round retries
                    log.exception("alert intake: import failed, files kept for the next round")
                    time.sleep(self.scan_s)
            import_pending(self.incoming, deletions=self.deletions)  # what arrived before the stop
            if kept := self.deletions.sweep(wait_s=3.0):
                log.warning("alert intake: %d spool files kept (their rows not yet flushed): the next start checks "
                            "them", kept)
        finally:
            listener.close()

    def stop(self, *_args: object) -> None:
        self.stop_event.set()


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pyros.settings")
    from django.conf import settings

    # This process's commits do not wait for the WAL flush: the spool file stays until they are flushed.
    database = settings.DATABASES["default"]
    if "postgresql" in database["ENGINE"]:
        options = database.setdefault("OPTIONS", {})
        options["options"] = f"{options.get('options', '')} -c synchronous_commit=off".strip()
    _ensure_django()
    import alert_manager.services  # noqa: F401 - imported before the freeze, not during the first packet
    from common import gc_pauses

    gc_pauses.freeze()
    gc_pauses.watch()
    daemon = IntakeDaemon()
    signal.signal(signal.SIGTERM, daemon.stop)
    signal.signal(signal.SIGINT, daemon.stop)
    from alert_manager.services.intake import start_requeue_thread

    start_requeue_thread(daemon.stop_event)  # rows stored while the broker was down leave once it is back
    try:
        daemon.run()
    finally:
        from django.db import connections

        connections.close_all()


if __name__ == "__main__":
    main()
