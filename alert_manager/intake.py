"""Entry point of every VOEvent packet: called by the Comet plugin with the raw bytes.

Contract with ``comet_plugins/comet/plugins/pyros_handler.py``:

- ``submit_packet(raw, received_unix)`` (the default, called in Comet's reactor thread): never blocks,
  never raises. It puts the packet in memory and wakes one writer thread, which persists everything
  waiting in one transaction (one multi-row INSERT) and then queues processing (one ``alerts``
  message per small chunk of ids). A packet that arrives alone is written at once, on its own: the
  in-memory window is one database round trip, never a timer. During a burst the packets that arrive
  while a write is in flight form the next batch, so the cost per packet (ORM, transaction, publish)
  drops with the load instead of starving Comet's reactor, which shares the GIL with this thread.
  On shutdown (Twisted's ``before shutdown`` trigger, and ``atexit``) ``flush`` writes what is left.
- ``receive_packet(raw)``: the same, synchronous (one packet, in the caller's thread).
- Comet has already ACKed the packet: if persisting raised, the packet would be lost, so the raw
  bytes are written BEFORE anything else, and when even the database is unreachable they go to a
  spool directory that ``process_pending`` imports later.

Importable without Django configured: Comet's process is not a Django process, so the first call
sets Django up (once, under a lock).
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import threading
import time

_setup_lock = threading.Lock()
_django_ready = False

# Bounds one transaction (and the memory of one write): more waiting packets go in the next batch.
MAX_BATCH = 200

log = logging.getLogger("pyros.alert_manager.intake")


def _ensure_django() -> None:
    global _django_ready
    if _django_ready:
        return
    with _setup_lock:
        if _django_ready:
            return
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pyros.settings")
        import django
        from django.apps import apps

        if not apps.ready:
            django.setup()
        # The Celery app (`shared_task`s publish through its broker configuration) is loaded by
        # django.setup(): `pyros` is an installed app and its package imports pyros.celery.
        _django_ready = True


def receive_packet(raw: bytes) -> int | None:
    """Persist ``raw`` as an Alert row and queue its processing; return the row id (None if spooled).

    Never raises for a bad packet (bad packets are stored with their reason); raises only if the
    packet could be neither stored in the database nor spooled to disk.
    """
    received_unix = time.time()
    _ensure_django()
    from alert_manager import services

    return services.alert_receive(raw=bytes(raw), received_unix=received_unix)


class _Writer:
    """One thread persisting whatever packets wait, in arrival order (a deque: put/pop are atomic)."""

    def __init__(self) -> None:
        self._pending: collections.deque[tuple[bytes, float]] = collections.deque()
        self._wake = threading.Condition(threading.Lock())
        self._idle = threading.Condition(threading.Lock())
        self._busy = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def submit(self, raw: bytes, received_unix: float) -> None:
        self._pending.append((raw, received_unix))
        if self._thread is None:
            self._start()
        with self._wake:
            self._wake.notify()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="pyros-intake-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._pending and not self._stopping:
                    self._wake.wait()
                if self._stopping and not self._pending:
                    break
                self._busy = True
            try:
                self._write_waiting()
            finally:
                with self._idle:
                    self._busy = bool(self._pending)
                    self._idle.notify_all()
        if _django_ready:
            from django.db import connections

            connections.close_all()  # this thread's own connection

    def stop(self, timeout_s: float = 30.0) -> None:
        """Write what is left, then end the thread (and close its database connection)."""
        self.flush(timeout_s)
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _write_waiting(self) -> None:
        batch: list[tuple[bytes, float]] = []
        while self._pending and len(batch) < MAX_BATCH:
            batch.append(self._pending.popleft())
        if not batch:
            return
        try:
            _ensure_django()
            from django.db import close_old_connections

            from alert_manager import services

            close_old_connections()  # a connection broken by a database restart is replaced, not reused
            services.alert_receive_many(packets=batch)
        except Exception:  # noqa: BLE001 - the thread must survive; alert_receive_many spools on DB failure
            # Reaching here means even the spool failed (disk full?): nothing more can be done than say so.
            log.exception("intake: %d packets could be neither stored nor spooled: LOST", len(batch))

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until every submitted packet is written (or spooled). True if nothing is left in memory."""
        deadline = time.monotonic() + timeout_s
        if self._thread is None or not self._thread.is_alive():
            while self._pending:  # no writer (never started, or the interpreter is exiting): write here
                self._write_waiting()
            return True
        with self._idle:
            while self._pending or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                with self._wake:
                    self._wake.notify()
                self._idle.wait(min(remaining, 0.05))
        return True


_writer = _Writer()


def submit_packet(raw: bytes, received_unix: float | None = None) -> None:
    """Hand ``raw`` to the writer thread (returns at once; safe in Twisted's reactor thread)."""
    _writer.submit(bytes(raw), time.time() if received_unix is None else received_unix)


# The Comet plugin calls a function carrying this mark directly in the reactor, with the receive time.
submit_packet.nonblocking = True  # type: ignore[attr-defined]


def flush(timeout_s: float = 30.0) -> bool:
    """Write every packet still in memory (Comet's shutdown). True if none is left."""
    return _writer.flush(timeout_s)


atexit.register(flush)
