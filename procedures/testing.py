"""Helpers for tests and benchmarks that run the real queue manager (and its worker) against a database."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def queue_manager(*, database_url: str, env: dict | None = None, log_path: Path | None = None
                  ) -> Iterator[subprocess.Popen]:
    """``python -m procedures.manager`` with the given database (it opens its worker when the queue starts)."""
    full_env = {**os.environ, "DJANGO_SETTINGS_MODULE": "pyros.settings", "DATABASE_URL": database_url,
                **(env or {})}
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "procedures.manager"], cwd=REPO, env=full_env, stdout=out,
                            stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if log_path:
            out.close()


def celery_worker(env: dict, queue: str, log_path: Path, *, concurrency: int, include: str = "") -> subprocess.Popen:
    """A real Celery worker (threads pool) consuming ``queue``, its output appended to ``log_path``; stop it with
    ``devices.testing.stop_process(proc, 15)``. ``include``: a module of extra tasks to import."""
    with open(log_path, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "pyros", "worker", "-Q", queue, "-P", "threads", "-c",
             str(concurrency), "--without-gossip", "--without-mingle", "--without-heartbeat",
             "-n", f"{queue}@localhost", "--loglevel", "INFO", *(["-I", include] if include else [])],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
