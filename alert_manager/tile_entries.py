"""How an event's tiles are stored (``AlertEvent.tiles``, a JSON list) and read back as :class:`tiling.Tile`.

One entry per tile: ``{"index", "rank", "plan", "ra_deg", "dec_deg", "probability", "cumulative_probability",
"sequence", "request", "fov_width_deg", "fov_height_deg", "overlap", "observable_from", "best_utc",
"best_altitude_deg"}``. ``index`` is the field's place in the fixed grid of its field size (stable across
plans), ``rank`` its order within plan number ``plan`` (1 = the first plan, each re-plan adds one),
``sequence``/``request`` the rows that observe it. After a re-plan the list holds the tiles of earlier plans
that were observed (their sequences completed, partially completed or executing) and the new plan's tiles.
Pure: no Django.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from alert_manager.tiling import Tile
from routine_manager import lifecycle

# A tile counts as observed (left out of re-plans, filled on the plot) once its sequence is one of these.
OBSERVED_STATUSES = (lifecycle.SEQUENCE_EXECUTED - {lifecycle.FAILED}) | {lifecycle.EXECUTING}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def _time(text: Any) -> datetime:
    try:
        value = datetime.fromisoformat(str(text))
    except ValueError:
        return _EPOCH
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def tile_entry(tile: Tile, *, plan: int, sequence_id: int | None, request_id: int | None) -> dict[str, Any]:
    return {
        "index": tile.index, "rank": tile.rank, "plan": plan,
        "ra_deg": round(tile.ra_deg, 6), "dec_deg": round(tile.dec_deg, 6),
        "probability": tile.probability, "cumulative_probability": tile.cumulative_probability,
        "sequence": sequence_id, "request": request_id,
        "fov_width_deg": tile.fov_width_deg, "fov_height_deg": tile.fov_height_deg, "overlap": tile.overlap,
        "observable_from": _iso(tile.observable_from_utc), "best_utc": _iso(tile.best_utc),
        "best_altitude_deg": round(tile.best_altitude_deg, 2),
    }


def tile_from_entry(entry: Mapping[str, Any]) -> Tile:
    """The :class:`Tile` of a stored entry (enough of it to draw and to re-plan on the same grid)."""
    best = _time(entry.get("best_utc"))
    start = _time(entry.get("observable_from"))
    probability = float(entry.get("probability", 0.0))
    return Tile(index=int(entry["index"]), rank=int(entry.get("rank", 0)), ra_deg=float(entry["ra_deg"]),
                dec_deg=float(entry["dec_deg"]), fov_width_deg=float(entry["fov_width_deg"]),
                fov_height_deg=float(entry["fov_height_deg"]), overlap=float(entry["overlap"]),
                probability=probability, cumulative_probability=float(entry.get("cumulative_probability", 0.0)),
                score=probability, observable_fraction=0.0, observable_s=0.0, observable_from_utc=start,
                observable_until_utc=best, best_utc=best, best_altitude_deg=float(entry.get("best_altitude_deg", 0.0)),
                airmass=1.0)


def sequence_ids(entries: Iterable[Mapping[str, Any]]) -> list[int]:
    return [int(e["sequence"]) for e in entries if e.get("sequence")]


def observed_indices(entries: Iterable[Mapping[str, Any]], statuses: Mapping[int, str]) -> set[int]:
    """Grid indices of the tiles whose sequence (``statuses``: sequence id -> status) counts as observed."""
    return {int(e["index"]) for e in entries if statuses.get(e.get("sequence")) in OBSERVED_STATUSES}
