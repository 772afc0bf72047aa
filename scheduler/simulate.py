"""Plan one night described in a JSON document, with no database (pure, no Django).

The document format is the one of ``../shared/data/scheduling/set_N*.json`` (see the README there):
``meta.site`` (lat_deg, lon_deg, height_m), ``meta.night`` (start_utc, end_utc), ``meta.slew_model``
(rate_deg_per_s, settle_s) and ``sequences`` (id, ra_deg, dec_deg, duration_s, priority 1..10, optional
earliest/latest/preferred start, constraints). Optional extensions read when present: per-sequence
``program``, ``program_priority``, ``is_alert``, ``filters``, ``tolerance_early_s``/``tolerance_late_s``,
and ``meta.allocations_s`` ({program: seconds left}), ``meta.slew_model.filter_change_s``,
``meta.twilight_deg``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scheduler.algorithm import ScheduleResult, SequenceSpec, schedule_night
from scheduler.overheads import SlewModel
from sky.observability import ASTRONOMICAL_TWILIGHT_DEG, Site


class NightFileError(ValueError):
    """The night document is not usable; the message says where and why."""


def _utc(value: Any, where: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise NightFileError(f"{where}: expected an ISO 8601 UTC time string, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise NightFileError(f"{where}: not an ISO 8601 time: {value!r}") from exc
    if parsed.tzinfo is None:
        raise NightFileError(f"{where}: time without a timezone: {value!r} (write it in UTC, ending in Z)")
    return parsed.astimezone(UTC)


def _number(mapping: dict[str, Any], key: str, where: str, default: float | None = None) -> float | None:
    value = mapping.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise NightFileError(f"{where}.{key}: expected a number, got {value!r}")
    return float(value)


def _required(mapping: Any, key: str, where: str) -> Any:
    if not isinstance(mapping, dict) or key not in mapping:
        raise NightFileError(f"{where}: missing {key!r}")
    return mapping[key]


def _required_number(mapping: Any, key: str, where: str) -> float:
    _required(mapping, key, where)
    return _number(mapping, key, where)  # type: ignore[return-value]


def parse_night(document: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of :func:`schedule_night` for a night document (raises NightFileError)."""
    if not isinstance(document, dict):
        raise NightFileError("the document must be a JSON object with 'meta' and 'sequences'")
    meta = _required(document, "meta", "document")
    site_doc = _required(meta, "site", "meta")
    night_doc = _required(meta, "night", "meta")
    site = Site(
        latitude_deg=_required_number(site_doc, "lat_deg", "meta.site"),
        longitude_deg=_required_number(site_doc, "lon_deg", "meta.site"),
        elevation_m=_number(site_doc, "height_m", "meta.site", 0.0),
        name=str(site_doc.get("name", "")),
    )
    start = _utc(_required(night_doc, "start_utc", "meta.night"), "meta.night.start_utc")
    end = _utc(_required(night_doc, "end_utc", "meta.night"), "meta.night.end_utc")
    if end <= start:
        raise NightFileError("meta.night: end_utc must be after start_utc")
    slew_doc = meta.get("slew_model") or {}
    try:
        slew_model = SlewModel(
            rate_deg_s=_number(slew_doc, "rate_deg_per_s", "meta.slew_model", 1.0),
            settle_s=_number(slew_doc, "settle_s", "meta.slew_model", 0.0),
            filter_change_s=_number(slew_doc, "filter_change_s", "meta.slew_model", 0.0),
        )
    except ValueError as exc:
        raise NightFileError(f"meta.slew_model: {exc}") from exc
    sequences = _required(document, "sequences", "document")
    if not isinstance(sequences, list):
        raise NightFileError("sequences: expected a list")
    specs = [_parse_sequence(item, k) for k, item in enumerate(sequences)]
    allocations = meta.get("allocations_s") or {}
    if not isinstance(allocations, dict):
        raise NightFileError("meta.allocations_s: expected an object {program: seconds}")
    return {
        "specs": specs,
        "site": site,
        "night_start_utc": start,
        "night_end_utc": end,
        "slew_model": slew_model,
        "allocations_s": {str(k): float(v) for k, v in allocations.items()},
        "twilight_deg": _number(meta, "twilight_deg", "meta", ASTRONOMICAL_TWILIGHT_DEG),
    }


def _parse_sequence(item: Any, index: int) -> SequenceSpec:
    where = f"sequences[{index}]"
    if not isinstance(item, dict):
        raise NightFileError(f"{where}: expected an object")
    constraints = item.get("constraints") or {}
    if not isinstance(constraints, dict):
        raise NightFileError(f"{where}.constraints: expected an object")
    priority = item.get("priority", 5)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise NightFileError(f"{where}.priority: expected an integer 1..10, got {priority!r}")
    filters = item.get("filters") or ()
    try:
        return SequenceSpec(
            id=str(_required(item, "id", where)),
            ra_deg=_required_number(item, "ra_deg", where),
            dec_deg=_required_number(item, "dec_deg", where),
            duration_s=_required_number(item, "duration_s", where),
            priority=priority,
            program_priority=int(item.get("program_priority", 0)),
            is_alert=bool(item.get("is_alert", False)),
            program=item.get("program"),
            earliest_start_utc=_utc(item.get("earliest_start_utc"), f"{where}.earliest_start_utc"),
            latest_start_utc=_utc(item.get("latest_start_utc"), f"{where}.latest_start_utc"),
            preferred_start_utc=_utc(item.get("preferred_start_utc"), f"{where}.preferred_start_utc"),
            tolerance_early_s=_number(item, "tolerance_early_s", where),
            tolerance_late_s=_number(item, "tolerance_late_s", where),
            min_altitude_deg=_number(constraints, "min_altitude_deg", f"{where}.constraints", 0.0),
            max_airmass=_number(constraints, "max_airmass", f"{where}.constraints"),
            min_moon_separation_deg=_number(constraints, "min_moon_separation_deg", f"{where}.constraints"),
            at_night=constraints.get("at_night", "astronomical") not in (None, False),
            filters=tuple(str(f) for f in filters),
        )
    except NightFileError:
        raise
    except (TypeError, ValueError) as exc:
        raise NightFileError(f"{where}: {exc}") from exc


def result_document(result: ScheduleResult) -> dict[str, Any]:
    def iso(value: datetime) -> str:
        return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")

    return {
        "metrics": {
            key: result.metrics[key]
            for key in ("wall_s", "scheduled", "priority_sum", "occupancy", "slew_s", "value_sum", "plan_length_s")
        },
        "schedule": [
            {
                "id": entry.id,
                "start_utc": iso(entry.start_utc),
                "end_utc": iso(entry.end_utc),
                "overhead_before_s": entry.overhead_before_s,
                "slack_early_s": entry.slack_early_s,
                "slack_late_s": entry.slack_late_s,
            }
            for entry in sorted(result.entries, key=lambda e: e.start_utc)
        ],
        "rejected": dict(sorted(result.rejected.items())),
        # The same reasons as codes and values (scheduler/reasons.py).
        "reasons": {spec_id: reason.as_dict() for spec_id, reason in sorted(result.reasons.items())},
    }


def simulate_night(document: dict[str, Any]) -> dict[str, Any]:
    """Plan the night of ``document``: {"metrics": {...}, "schedule": [{"id", "start_utc", "end_utc", ...}],
    "rejected": {id: reason in words}, "reasons": {id: {"code", "values"}}}. Raises :class:`NightFileError` on a bad document."""
    kwargs = parse_night(document)
    try:
        result = schedule_night(**kwargs)
    except ValueError as exc:
        raise NightFileError(str(exc)) from exc
    return result_document(result)


def simulate_night_file(path: str | Path) -> dict[str, Any]:
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise NightFileError(f"cannot read {path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise NightFileError(f"{path} is not JSON: {exc}") from exc
    return simulate_night(document)
