"""Helpers for integration tests that run real PyROS processes (Celery workers, simulators)
against the test database. Importable without pytest."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from devices.testing import scaled_s  # noqa: F401 - one definition, for Django-free device tests too

REPO = Path(__file__).resolve().parent.parent


def test_database_url() -> str:
    """A DATABASE_URL for the database the current test runs on (so subprocesses share it)."""
    from django.db import connection

    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        name = s["NAME"]
        if "mode=memory" in str(name) or name == ":memory:":
            raise RuntimeError("the SQLite test database is in memory; subprocesses cannot share it")
        return f"sqlite:///{name}"
    user = s.get("USER") or "postgres"
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{s.get('HOST') or '127.0.0.1'}:{s.get('PORT') or 5432}/{s['NAME']}"


def zenith_target(site, when=None, *, dec_offset_deg: float = 0.0) -> tuple[float, float]:
    """(ra, dec) of a point near the zenith of a site now: always observable at night."""
    from datetime import UTC, datetime

    from sky.astro import to_time

    t = to_time(when or datetime.now(UTC))
    lst = t.sidereal_time("mean", longitude=site.longitude_deg).deg
    dec = max(-89.0, min(89.0, site.latitude_deg + dec_offset_deg))
    return lst % 360.0, dec


@contextlib.contextmanager
def celery_worker(queues: str, *, env: dict | None = None, pool: str = "threads", concurrency: int = 1,
                  log_path: Path | None = None) -> Iterator[subprocess.Popen]:
    """A real `celery worker` subprocess on the given queues, using the test database."""
    full_env = {**os.environ, "DJANGO_SETTINGS_MODULE": "pyros.settings", "DATABASE_URL": test_database_url(),
                **(env or {})}
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "pyros", "worker", "-Q", queues, "-P", pool, "-c", str(concurrency),
         "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"test-{queues}-{os.getpid()}@localhost",
         "--loglevel", "INFO"],
        cwd=REPO, env=full_env, stdout=out, stderr=subprocess.STDOUT)
    try:
        time.sleep(0.5)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def wait_until(predicate, *, timeout_s: float, interval_s: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"{what} not reached within {timeout_s} s")
