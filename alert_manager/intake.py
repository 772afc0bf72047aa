"""Entry point of every VOEvent packet: called by the Comet plugin with the raw bytes.

Contract with ``comet_plugins/comet/plugins/pyros_handler.py``:

- called in a Twisted worker thread, never in the reactor; several packets may be in flight at
  once (Twisted's pool has up to 10 threads), so everything here is thread-safe;
- Comet has already ACKed the packet: if this function raised, the packet would be lost, so it
  persists the raw bytes BEFORE anything else, and when even the database is unreachable it
  writes them to a spool directory that ``process_pending`` imports later;
- it returns fast (one INSERT and one publish, ~2-3 ms): parsing and everything else happens in
  the ``alerts`` Celery worker.

Importable without Django configured: Comet's process is not a Django process, so the first call
sets Django up (once, under a lock).
"""

from __future__ import annotations

import logging
import os
import threading
import time

_setup_lock = threading.Lock()
_django_ready = False

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
        # Import the Celery app so that `shared_task`s publish through its broker configuration.
        import pyros.celery  # noqa: F401

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
