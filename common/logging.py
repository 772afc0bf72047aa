"""Log records into the `Log` table without slowing the caller.

`emit` only puts a small tuple on an in-memory queue (a few microseconds); a daemon thread per
process writes them in batches with one INSERT. If the database is unreachable the records are
printed to stderr and dropped rather than blocking the telescope. Tests switch to synchronous
mode so records land in the test's own transaction.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import re
import sys
import threading
from datetime import UTC, datetime

_BATCH = 200


class DatabaseLogHandler(logging.Handler):
    synchronous = False  # set True in tests: write in the caller's thread and transaction

    def __init__(self, level: int = logging.NOTSET, capacity: int = 10000) -> None:
        super().__init__(level)
        self._queue: queue.Queue = queue.Queue(maxsize=capacity)
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._lock = threading.Lock()
        self.dropped = 0

    # --- producer side -------------------------------------------------------------------------
    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
            row = (datetime.fromtimestamp(record.created, tz=UTC), record.levelno, record.levelname,
                   _component(record.name), redact_secrets(message)[:20000], record.processName or "",
                   getattr(record, "request_id", None), bool(getattr(record, "public", False)))
        except Exception:  # a bad format string must not break the caller
            self.handleError(record)
            return
        if self.synchronous:
            self._write([row])
            return
        self._ensure_writer()
        try:
            self._queue.put_nowait(row)
        except queue.Full:
            self.dropped += 1

    def _ensure_writer(self) -> None:
        # A forked child (Celery prefork) inherits the queue but not the thread: start its own.
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
                return
            if self._pid != os.getpid():
                self._queue = queue.Queue(maxsize=self._queue.maxsize)
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="pyros-db-log", daemon=True)
            self._thread.start()
            atexit.register(self.flush)

    # --- consumer side -------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            rows = [self._queue.get()]
            while len(rows) < _BATCH:
                try:
                    rows.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._write(rows)
            for _ in rows:
                self._queue.task_done()

    def _write(self, rows: list[tuple]) -> None:
        try:
            from django.db import close_old_connections

            from pyrosapp.models import Log

            Log.objects.bulk_create([
                Log(time=t, level=lv, level_name=ln, component=c, message=m, process=p, request_id=r, public=pub)
                for t, lv, ln, c, m, p, r, pub in rows
            ])
            if not self.synchronous:
                close_old_connections()
        except Exception as exc:  # never raise into the logging machinery, never recurse into logging
            for row in rows:
                print(f"[pyros-log not stored: {exc.__class__.__name__}: {exc}] {row[2]} {row[3]}: {row[4]}",
                      file=sys.stderr)

    def flush(self) -> None:
        """Wait (briefly) until queued records are written."""
        if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
            return
        done = threading.Event()

        def _join():
            self._queue.join()
            done.set()

        threading.Thread(target=_join, daemon=True).start()
        done.wait(timeout=5)


def _component(logger_name: str) -> str:
    """`pyros.majordome.services` -> `majordome`: the component operators filter on."""
    parts = logger_name.split(".")
    if parts[0] == "pyros" and len(parts) > 1:
        return parts[1]
    return parts[0]


# Password-reset links carry a one-use token (Django: /reset/<uidb64>/<token>/): whoever reads a log line with one
# can take the account. Redacted from every log line PyROS writes (the Log table, the console, gunicorn's access
# log through common.gunicorn_log).
_RESET_LINK = re.compile(r"(/password/reset/)[^/\s\"']+/[^/\s\"']+(/?)")


def redact_secrets(text: str) -> str:
    return _RESET_LINK.sub(r"\1…/…\2", text) if "/password/reset/" in text else text


class RedactSecretsFilter(logging.Filter):
    """A logging filter for the console handlers: the record's message with reset links redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_secrets(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True
