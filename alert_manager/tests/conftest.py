from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

# Repository root is parents[2] of this file; the shared corpus sits next to the repository.
CORPUS_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "voevents"


def corpus_entries() -> list[dict[str, Any]]:
    index = CORPUS_DIR / "index.json"
    if not index.exists():
        return []
    return json.loads(index.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def corpus() -> list[dict[str, Any]]:
    entries = corpus_entries()
    if not entries:
        pytest.skip(f"VOEvent corpus absent: {CORPUS_DIR} (shared data not checked out)")
    return entries


@pytest.fixture(scope="session")
def corpus_bytes(corpus: list[dict[str, Any]]) -> dict[str, bytes]:
    return {entry["file"]: (CORPUS_DIR / entry["file"]).read_bytes() for entry in corpus}


@pytest.fixture
def messages(monkeypatch) -> list[tuple[str, dict]]:  # noqa: ANN001
    """The Celery messages intake publishes (task name, kwargs), instead of a broker."""
    from alert_manager import tasks

    sent: list[tuple[str, dict]] = []
    monkeypatch.setattr(tasks.process_alert, "apply_async", lambda **kw: sent.append(("process_alert", kw["kwargs"])))
    monkeypatch.setattr(tasks.process_alerts, "apply_async",
                        lambda **kw: sent.append(("process_alerts", kw["kwargs"])))
    return sent


# --- Database fixtures of the alert pipeline (tests of intake/services/views) -----------------------


@pytest.fixture
def alert_observatory(db):  # noqa: ANN001, ANN201 - returns a SimpleNamespace of rows
    """An observatory ready for alerts: OHP site, a camera with an R filter, the alert program with an
    allocation for the current period, and the default strategy (active)."""
    from datetime import UTC, datetime, timedelta
    from types import SimpleNamespace

    from alert_manager.demo import seed_strategies
    from pyrosapp.models import Allocation, Detector, Filter, FilterWheel, Period, ScientificProgram, Site, Telescope
    from pyrosapp.tests.factories import UserFactory

    site = Site.objects.create(name="OHP", latitude_deg=43.9317, longitude_deg=5.7122, elevation_m=650.0,
                               twilight_deg=-12.0)
    telescope = Telescope.objects.create(site=site, name="T1")
    wheel = FilterWheel.objects.create(telescope=telescope, name="Wheel")
    for slot, name in enumerate(("V", "R", "I"), start=1):
        Filter.objects.create(wheel=wheel, name=name, slot=slot)
    # 1280 x 1024 px at 1"/px: the inscribed field radius is 512" = 0.142 deg.
    detector = Detector.objects.create(telescope=telescope, filter_wheel=wheel, name="PyROS Camera")
    admin = UserFactory(email="pi@example.org", role="administrator")
    program = ScientificProgram.objects.create(name="GRB follow-up", pi=admin, priority=10, is_alert_program=True)
    now = datetime.now(UTC)
    period = Period.objects.create(name="now", start=now - timedelta(days=3650), end=now + timedelta(days=3650))
    allocation = Allocation.objects.create(program=program, period=period, allocated_s=100 * 3600.0)
    strategies = seed_strategies()
    return SimpleNamespace(site=site, telescope=telescope, detector=detector, program=program,
                           allocation=allocation, strategy=strategies[0], admin=admin)
