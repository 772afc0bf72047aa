"""simulate_night on the shared benchmark night, and clear errors on bad documents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scheduler.simulate import NightFileError, simulate_night

SET_N50 = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "scheduling" / "set_N50.json"


@pytest.mark.skipif(not SET_N50.exists(), reason="shared scheduling sets absent")
def test_simulates_the_shared_night() -> None:
    document = json.loads(SET_N50.read_text())
    result = simulate_night(document)
    assert set(result["metrics"]) >= {"wall_s", "scheduled", "priority_sum", "occupancy", "slew_s"}
    assert result["metrics"]["priority_sum"] > 138  # astroplan's PriorityScheduler on this set
    assert result["metrics"]["occupancy"] >= 0.95
    ids = {s["id"] for s in document["sequences"]}
    assert {e["id"] for e in result["schedule"]} | set(result["rejected"]) == ids
    assert all(e["start_utc"].endswith("Z") for e in result["schedule"])


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "JSON object"),
        ({"meta": {}}, "missing 'site'"),
        (
            {
                "meta": {
                    "site": {"lat_deg": 44, "lon_deg": 5},
                    "night": {"start_utc": "2026-12-16T17:45:00", "end_utc": "2026-12-17T05:00:00Z"},
                },
                "sequences": [],
            },
            "without a timezone",
        ),
        (
            {
                "meta": {
                    "site": {"lat_deg": 44, "lon_deg": 5},
                    "night": {"start_utc": "2026-12-16T17:45:00Z", "end_utc": "2026-12-17T05:00:00Z"},
                },
                "sequences": [{"id": "x", "ra_deg": "a", "dec_deg": 0, "duration_s": 60}],
            },
            r"sequences\[0\].ra_deg",
        ),
    ],
)
def test_bad_documents_get_a_clear_error(document, message: str) -> None:
    with pytest.raises(NightFileError, match=message):
        simulate_night(document)
