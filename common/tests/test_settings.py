"""Settings come from the environment, strictly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.testing import scaled_s

REPO = Path(__file__).resolve().parents[2]


def _run(args, **env):
    # a production-like environment: nothing the test session itself set (browser tests set
    # DJANGO_ALLOW_ASYNC_UNSAFE for Playwright's event loop)
    full = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "DJANGO_ALLOW_ASYNC_UNSAFE"}}
    full.update(env)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=full, capture_output=True, text=True,
                          timeout=120)


def test_a_typo_in_debug_is_an_error(tmp_path):
    out = _run(["check"], DEBUG="ture", PYROS_VAR_DIR=str(tmp_path))
    assert out.returncode != 0
    assert "DEBUG='ture' is not a boolean" in out.stderr


def test_secret_key_is_required_when_debug_is_off(tmp_path):
    out = _run(["check"], DEBUG="false", PYROS_VAR_DIR=str(tmp_path))
    assert out.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in out.stderr


def test_local_secret_key_is_generated_once_and_kept(tmp_path):
    assert _run(["check"], DEBUG="1", PYROS_VAR_DIR=str(tmp_path)).returncode == 0
    key = (tmp_path / "secret_key").read_text()
    assert len(key) > 40
    assert _run(["check"], DEBUG="1", PYROS_VAR_DIR=str(tmp_path)).returncode == 0
    assert (tmp_path / "secret_key").read_text() == key


@pytest.mark.slow
def test_check_deploy_reports_no_error_with_production_settings(tmp_path):
    out = _run(["check", "--deploy", "--fail-level", "WARNING"], DEBUG="false", PYROS_VAR_DIR=str(tmp_path),
               SECRET_KEY="x" * 20 + "-production-secret-key-with-enough-entropy-0123456789",
               ALLOWED_HOSTS="pyros.example.org")
    assert out.returncode == 0, out.stderr + out.stdout


def test_migrations_are_in_sync():
    out = subprocess.run([sys.executable, "manage.py", "makemigrations", "--check", "--dry-run"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.django_db
def test_log_records_land_in_the_log_table():
    import logging

    from pyrosapp.models import Log

    logging.getLogger("pyros.majordome.services").warning("dome closing: wind %d m/s", 18)
    row = Log.objects.get(message="dome closing: wind 18 m/s")
    assert (row.level_name, row.component) == ("WARNING", "majordome")


def test_asynchronous_log_handler_does_not_block(tmp_path):
    """emit() must cost microseconds even when the database is slow: it only queues."""
    import logging
    import time

    from common.logging import DatabaseLogHandler

    handler = DatabaseLogHandler()
    handler.synchronous = False  # the production mode (tests default to synchronous)
    handler._write = lambda rows: time.sleep(0.5)  # a very slow database
    record = logging.LogRecord("pyros.test", logging.INFO, __file__, 1, "hello %s", ("sky",), None)
    start = time.perf_counter()
    for _ in range(200):
        handler.emit(record)
    assert time.perf_counter() - start < scaled_s(0.1)


@pytest.mark.slow
def test_openapi_schema_is_valid_and_has_no_warning(tmp_path):
    out = subprocess.run([sys.executable, "manage.py", "spectacular", "--validate", "--fail-on-warn", "--file",
                          str(tmp_path / "schema.yml")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    schema = (tmp_path / "schema.yml").read_text()
    for path in ("/api/requests/", "/api/requests/validate/", "/api/schedule/current/", "/api/alerts/",
                 "/api/observatory/status/", "/api/observatory/pause/"):
        assert f"  {path}:" in schema
