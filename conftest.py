"""Project-wide test fixtures: services (PostgreSQL, RabbitMQ), browser (Debian's Chromium), logging."""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from pathlib import Path
from urllib.parse import urlparse

import pytest

# Playwright's sync API runs an event loop in the test thread and keeps it for the whole session
# (database teardown runs beside it too); the ORM calls tests make are synchronous and safe. Set in
# one place, for the test session only (never in deployment: `check --deploy` refuses it).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

REPO = Path(__file__).resolve().parent
SHARED_DATA = REPO.parent / "shared" / "data"
REQUIRE_SERVICES = os.environ.get("PYROS_REQUIRE_SERVICES", "").strip().lower() in {"1", "true", "yes", "on"}


def service_missing(reason: str) -> None:
    """Skip locally; fail in CI (PYROS_REQUIRE_SERVICES=1) so CI can never pass by skipping."""
    if REQUIRE_SERVICES:
        pytest.fail(f"required service missing: {reason}")
    pytest.skip(reason)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(autouse=True)
def _synchronous_db_logging():
    """Log records go into the test's own transaction, so tests can see them and they roll back."""
    from common.logging import DatabaseLogHandler

    DatabaseLogHandler.synchronous = True
    yield


@pytest.fixture(autouse=True)
def _private_cache(settings):
    """Each test its own in-memory cache: the throttle and rate-limit counters of one test (or of the
    machine's running PyROS, whose cache is a folder under var/) never leak into another."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                                   "LOCATION": f"test-{uuid.uuid4()}"}}
    yield


@pytest.fixture
def rabbitmq_url() -> str:
    url = os.environ.get("CELERY_BROKER_URL", "")
    if not url.startswith("amqp"):
        url = "amqp://guest:guest@127.0.0.1:5672//"
    parsed = urlparse(url)
    if not _port_open(parsed.hostname or "127.0.0.1", parsed.port or 5672):
        service_missing(f"RabbitMQ not reachable at {parsed.hostname}:{parsed.port or 5672}")
    return url


@pytest.fixture
def postgres_required(settings):
    if "postgresql" not in settings.DATABASES["default"]["ENGINE"]:
        service_missing("DATABASE_URL does not point at PostgreSQL")


# --- Browser tests: Playwright driving Debian's Chromium (never a downloaded browser) -------------
def _executable(path: str) -> str | None:
    return path if os.access(path, os.X_OK) and Path(path).is_file() else None


CHROMIUM = shutil.which("chromium") or _executable("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    # pytest-playwright's `page` needs this fixture before any test fixture runs: checking here skips
    # (or, in CI, fails) browser tests with the reason, instead of erroring on a downloaded browser.
    if CHROMIUM is None:
        service_missing("Debian's chromium is not installed (apt-get install chromium)")
    real = _executable("/usr/lib/chromium/chromium") or CHROMIUM
    return {**browser_type_launch_args, "executable_path": real, "args": CHROMIUM_ARGS, "headless": True}


@pytest.fixture
def require_chromium():
    if CHROMIUM is None:
        service_missing("Debian's chromium is not installed (apt-get install chromium)")


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder absent: {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def screenshot_dir() -> Path:
    path = REPO / "test-artifacts" / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


# --- The simulated observatory over INDI, for integration tests ---------------------------------
@pytest.fixture
def night_observatory(transactional_db, settings, tmp_path):
    """The demo observatory at a site where it is night now, with the INDI simulators running on a
    free port (fast mechanics), the observatory safe and automatic, images under a temp folder."""
    from devices.testing import running_simulators
    from majordome.device_link import reset_observatory
    from pyros.demo import seed_demo
    from pyrosapp.models import ObservatoryState, Telescope

    seed = seed_demo()
    Telescope.objects.update(settle_s=0.0)
    ObservatoryState.objects.filter(site=seed.site).update(phase="night", safety="safe", mode="automatic")
    settings.PYROS_DATA_DIR = tmp_path / "data"
    site = seed.site
    with running_simulators(speed=20.0, extra_args=(
            "--latitude", str(site.latitude_deg), "--longitude", str(site.longitude_deg),
            "--elevation", str(site.elevation_m), "--readout", "0.2")) as (host, port, pid):
        settings.PYROS_INDI_HOST, settings.PYROS_INDI_PORT = host, port
        reset_observatory()
        try:
            yield seed, port
        finally:
            reset_observatory()
