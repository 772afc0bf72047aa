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


# --- The telescope: what the majordome commands the devices (out of the process) ---------------------


class RecordingObservatory:
    """Stands for the process's device connection (``majordome.controls.get_observatory``): records the commands
    the majordome sends (camera abort, unpark, slew) instead of sending them to an INDI server."""

    def __init__(self, *, parked: bool = True) -> None:
        from types import SimpleNamespace

        self.commands: list[tuple] = []
        self.parked = parked
        self.camera = SimpleNamespace(abort=lambda: self.commands.append(("abort",)))
        self.mount = SimpleNamespace(state=lambda: SimpleNamespace(parked=self.parked), unpark=self._unpark,
                                     start_slew=self._start_slew)

    def _unpark(self) -> None:
        self.commands.append(("unpark",))
        self.parked = False

    def _start_slew(self, *, ra_deg: float, dec_deg: float) -> None:
        self.commands.append(("slew", ra_deg, dec_deg))

    @property
    def slews(self) -> list[tuple[float, float]]:
        """(RA, Dec) of every slew commanded, in order."""
        return [(c[1], c[2]) for c in self.commands if c[0] == "slew"]


@pytest.fixture
def telescope(monkeypatch) -> RecordingObservatory:  # noqa: ANN001
    """The majordome's device connection replaced by a recorder (the one place it gets it on the alert path)."""
    fake = RecordingObservatory()
    monkeypatch.setattr("majordome.controls.get_observatory", lambda **kw: fake)
    return fake


def set_observatory_state(**fields):  # noqa: ANN003, ANN201 - returns the ObservatoryState row
    """Set the observatory state the majordome decides from (phase, safety, mode...); returns the row."""
    from majordome import selectors
    from pyrosapp.models import ObservatoryState

    state = selectors.observatory_state()
    ObservatoryState.objects.filter(pk=state.pk).update(**fields)
    state.refresh_from_db()
    return state


@pytest.fixture
def observing_night(alert_observatory, telescope):  # noqa: ANN001, ANN201 - returns the ObservatoryState row
    """Night, safe, automatic: the majordome lets an alert take the telescope (slews go to ``telescope``)."""
    return set_observatory_state(phase="night", safety="safe", mode="automatic")
