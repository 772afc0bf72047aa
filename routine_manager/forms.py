"""The request editor's form: flat POST fields <-> the API's request JSON, and errors back onto fields.

The editor is one HTML form with nested rows (sequences -> albums -> plans) added and removed in the
page. Field names carry the row indices (``s-0-ra``, ``s-0-a-1-detector``, ``s-0-a-1-p-2-exposure_s``);
indices need not be contiguous (rows are removed in the browser), the order on the page is kept.
Validation is RequestBuilder's: this module only translates, so the form, the API and the importers
accept and refuse exactly the same things.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from routine_manager.builder import SEQUENCE_FIELD_PATHS

# Form field name (in a sequence row) -> add_sequence() argument.
SEQUENCE_FIELDS = ("name", "target_name", "ra_deg", "dec_deg", "window_start", "window_end", "preferred_start",
                   "tolerance_early_s", "tolerance_late_s", "priority", "min_altitude_deg", "max_airmass",
                   "min_moon_separation_deg")
DATETIME_FIELDS = {"window_start", "window_end", "preferred_start"}
PLAN_FIELDS = ("filter", "exposure_s", "count", "binning")
_PATH_TO_SEQUENCE_FIELD = {path: name for name, path in SEQUENCE_FIELD_PATHS.items()}

_SEQ_KEY = re.compile(r"^s-(\d+)-([a-z_]+)$")
_ALBUM_KEY = re.compile(r"^s-(\d+)-a-(\d+)-([a-z_]+)$")
_PLAN_KEY = re.compile(r"^s-(\d+)-a-(\d+)-p-(\d+)-([a-z_]+)$")
_MAX_ROWS = 100  # beyond this the builder refuses anyway; do not let a crafted POST allocate more


def _utc_text(value: str) -> str | None:
    """A datetime-local value ('2026-12-16T17:00', UTC by the form's label) as ISO with 'Z'."""
    value = value.strip()
    if not value:
        return None
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?", value):
        return value + "Z"
    return value


def _local_text(value: Any) -> str:
    """ISO text or datetime -> the datetime-local input's format (UTC)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")
    if isinstance(value, str) and value.endswith("Z") and len(value) >= 16:
        return value[:16]
    return "" if value is None else str(value)


def post_to_data(post) -> dict[str, Any]:
    """The request JSON from the editor's POST (values left as text: the builder parses them)."""
    sequences: dict[int, dict[str, str]] = {}
    albums: dict[tuple[int, int], dict[str, str]] = {}
    plans: dict[tuple[int, int, int], dict[str, str]] = {}
    for key in list(post.keys())[: 40 * _MAX_ROWS]:
        value = post.get(key, "")
        if match := _PLAN_KEY.match(key):
            s, a, p, name = int(match[1]), int(match[2]), int(match[3]), match[4]
            plans.setdefault((s, a, p), {})[name] = value
        elif match := _ALBUM_KEY.match(key):
            albums.setdefault((int(match[1]), int(match[2])), {})[match[3]] = value
        elif match := _SEQ_KEY.match(key):
            sequences.setdefault(int(match[1]), {})[match[2]] = value
    data_sequences = []
    for s in sorted(sequences)[:_MAX_ROWS]:
        row = sequences[s]
        seq_albums = []
        for (s2, a) in sorted(k for k in albums if k[0] == s)[:_MAX_ROWS]:
            album_plans = [{name: plans[key].get(name, "") for name in PLAN_FIELDS}
                           for key in sorted(k for k in plans if k[:2] == (s2, a))[:_MAX_ROWS]]
            seq_albums.append({"detector": albums[(s2, a)].get("detector", ""), "plans": album_plans})
        data_sequences.append({
            "name": row.get("name", ""),
            "target": {"name": row.get("target_name", ""), "ra_deg": row.get("ra_deg", ""),
                       "dec_deg": row.get("dec_deg", "")},
            "window": {"start": _utc_text(row.get("window_start", "")), "end": _utc_text(row.get("window_end", ""))},
            "preferred_start": _utc_text(row.get("preferred_start", "")),
            "tolerance_early_s": row.get("tolerance_early_s") or None,
            "tolerance_late_s": row.get("tolerance_late_s") or None,
            "priority": row.get("priority", ""),
            "constraints": {key: row.get(key) or None
                            for key in ("min_altitude_deg", "max_airmass", "min_moon_separation_deg")},
            "albums": seq_albums,
        })
    return {"name": post.get("name", ""), "program": post.get("program", ""), "sequences": data_sequences}


@dataclass
class Field:
    name: str
    value: str
    errors: list[str] = field(default_factory=list)


@dataclass
class PlanRow:
    index: str
    fields: dict[str, Field]


@dataclass
class AlbumRow:
    index: str
    detector: Field
    plans: list[PlanRow]
    errors: list[str] = field(default_factory=list)


@dataclass
class SequenceRow:
    index: str
    fields: dict[str, Field]
    albums: list[AlbumRow]
    errors: list[str] = field(default_factory=list)
    duration_s: float | None = None
    observable_windows: list[list[str]] = field(default_factory=list)


@dataclass
class EditorState:
    name: Field
    program: Field
    sequences: list[SequenceRow]
    errors: list[str] = field(default_factory=list)  # not attached to a field


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value == int(value):
        return str(int(value))
    return str(value)


def plan_row(s: str, a: str, p: str, plan: dict[str, Any]) -> PlanRow:
    return PlanRow(p, {name: Field(f"s-{s}-a-{a}-p-{p}-{name}", _text(plan.get(name, "")))
                       for name in PLAN_FIELDS})


def album_row(s: str, a: str, album: dict[str, Any]) -> AlbumRow:
    plans = album.get("plans") or []
    return AlbumRow(a, Field(f"s-{s}-a-{a}-detector", _text(album.get("detector", ""))),
                    [plan_row(s, a, str(p), plan) for p, plan in enumerate(plans)])


def sequence_row(s: str, seq: dict[str, Any]) -> SequenceRow:
    target, window = seq.get("target") or {}, seq.get("window") or {}
    constraints = seq.get("constraints") or {}
    values = {
        "name": seq.get("name"), "target_name": target.get("name"), "ra_deg": target.get("ra_deg"),
        "dec_deg": target.get("dec_deg"), "window_start": _local_text(window.get("start")),
        "window_end": _local_text(window.get("end")), "preferred_start": _local_text(seq.get("preferred_start")),
        "tolerance_early_s": seq.get("tolerance_early_s"), "tolerance_late_s": seq.get("tolerance_late_s"),
        "priority": seq.get("priority"), "min_altitude_deg": constraints.get("min_altitude_deg"),
        "max_airmass": constraints.get("max_airmass"),
        "min_moon_separation_deg": constraints.get("min_moon_separation_deg"),
    }
    return SequenceRow(s, {name: Field(f"s-{s}-{name}", _text(values[name])) for name in SEQUENCE_FIELDS},
                       [album_row(s, str(a), album) for a, album in enumerate(seq.get("albums") or [])])


def editor_state(data: dict[str, Any], errors: dict[str, list[str]] | None = None) -> EditorState:
    """What the editor shows: ``data`` (API JSON, contiguous indices) with ``errors`` put on their fields."""
    state = EditorState(Field("name", _text(data.get("name"))), Field("program", _text(data.get("program"))),
                        [sequence_row(str(i), seq) for i, seq in enumerate(data.get("sequences") or [])
                         if isinstance(seq, dict)])
    for path, messages in (errors or {}).items():
        _attach(state, path, messages)
    return state


def _attach(state: EditorState, path: str, messages: list[str]) -> None:
    if path in {"name", "program"}:
        getattr(state, path).errors.extend(messages)
        return
    match = re.match(r"^sequences\[(\d+)\](?:\.(.*))?$", path)
    if not match or int(match[1]) >= len(state.sequences):
        state.errors.extend(messages if path in {"request", "sequences"} else [f"{path}: {m}" for m in messages])
        return
    seq, rest = state.sequences[int(match[1])], match[2] or ""
    if rest in _PATH_TO_SEQUENCE_FIELD:
        seq.fields[_PATH_TO_SEQUENCE_FIELD[rest]].errors.extend(messages)
        return
    album_match = re.match(r"^albums\[(\d+)\](?:\.(.*))?$", rest)
    if album_match and int(album_match[1]) < len(seq.albums):
        album, album_rest = seq.albums[int(album_match[1])], album_match[2] or ""
        if album_rest == "detector":
            album.detector.errors.extend(messages)
            return
        plan_match = re.match(r"^plans\[(\d+)\]\.(\w+)$", album_rest)
        if plan_match and int(plan_match[1]) < len(album.plans) and plan_match[2] in PLAN_FIELDS:
            album.plans[int(plan_match[1])].fields[plan_match[2]].errors.extend(messages)
            return
        album.errors.extend(messages)
        return
    seq.errors.extend(messages)


def new_request_data(*, program_id: int | None, detector: str, now: datetime) -> dict[str, Any]:
    """A new request: one sequence, one album on the first detector, one plan; window from now, 3 days."""
    start = now.astimezone(UTC).replace(second=0, microsecond=0)
    return {"name": "", "program": program_id or "", "sequences": [blank_sequence(detector, start)]}


def blank_sequence(detector: str, start: datetime | None) -> dict[str, Any]:
    return {
        "name": "", "target": {"name": "", "ra_deg": "", "dec_deg": ""},
        "window": {"start": start, "end": start + timedelta(days=3) if start else None},
        "preferred_start": None, "priority": 5,
        "constraints": {"min_altitude_deg": 30, "max_airmass": None, "min_moon_separation_deg": 30},
        "albums": [{"detector": detector, "plans": [{"filter": "R", "exposure_s": 60, "count": 1, "binning": 1}]}],
    }
