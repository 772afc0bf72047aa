"""Batch import: a JSON list of requests in the API format, or a CSV with one row per plan.

CSV columns (header row required; names are case-insensitive; empty cells mean "not given"):

    request, program, sequence, target, ra, dec, window_start, window_end, priority, preferred_start,
    tolerance_early_s, tolerance_late_s, min_altitude_deg, max_airmass, min_moon_separation_deg,
    detector, filter, exposure_s, count, binning

Rows with the same ``request`` form one request; within it, rows with the same ``sequence`` (default:
the target) form one sequence, whose target, window, priority and constraints are read from its first
row; within a sequence, rows with the same ``detector`` form one album, and each row is one plan.
``ra`` is degrees or sexagesimal hours (13:29:52.7), ``dec`` degrees or +47:11:43, times ISO 8601 UTC.
The import is all or nothing: every error is reported with its row (CSV) or item (JSON) and field.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any

CSV_COLUMNS = ("request", "program", "sequence", "target", "ra", "dec", "window_start", "window_end", "priority",
               "preferred_start", "tolerance_early_s", "tolerance_late_s", "min_altitude_deg", "max_airmass",
               "min_moon_separation_deg", "detector", "filter", "exposure_s", "count", "binning")
REQUIRED_CSV_COLUMNS = ("request", "program", "target", "ra", "dec", "window_start", "window_end", "detector",
                        "filter", "exposure_s", "count")
MAX_IMPORT_REQUESTS = 200
MAX_IMPORT_BYTES = 5 * 1024 * 1024

# CSV column -> path of the value in the request JSON (relative to the sequence or plan).
_CSV_FIELD_PATHS = {
    "program": "program", "request": "name", "sequence": "name", "target": "target.name", "ra": "target.ra_deg",
    "dec": "target.dec_deg", "window_start": "window.start", "window_end": "window.end", "priority": "priority",
    "preferred_start": "preferred_start", "tolerance_early_s": "tolerance_early_s",
    "tolerance_late_s": "tolerance_late_s", "min_altitude_deg": "constraints.min_altitude_deg",
    "max_airmass": "constraints.max_airmass", "min_moon_separation_deg": "constraints.min_moon_separation_deg",
    "detector": "detector", "filter": "filter", "exposure_s": "exposure_s", "count": "count", "binning": "binning",
}


class ImportInvalid(Exception):
    """The file cannot be imported; ``errors`` are dicts {"location", "field", "message"}."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e['location']}: {e['field']}: {e['message']}" for e in errors[:5]))


@dataclass
class ParsedBatch:
    """Requests in the API format, and where each part came from (to locate errors)."""

    requests: list[Any]
    # (request index, path prefix) -> human location ("row 7" / "request 3")
    locations: dict[tuple[int, str], str]
    kind: str  # "csv" or "json"

    def locate(self, index: int, path: str) -> str:
        """The row (CSV) or item (JSON) a field path of request ``index`` comes from."""
        prefix = path
        while True:
            location = self.locations.get((index, prefix))
            if location:
                return location
            if not prefix:
                return f"request {index + 1}"
            cut = max(prefix.rfind("."), prefix.rfind("["))
            prefix = prefix[:cut] if cut > 0 else ""


def parse_json_batch(text: str) -> ParsedBatch:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportInvalid([{"location": f"line {exc.lineno}", "field": "", "message": f"Not valid JSON: {exc.msg}."}]) from None
    if isinstance(data, dict) and isinstance(data.get("requests"), list):
        data = data["requests"]
    if not isinstance(data, list):
        raise ImportInvalid([{"location": "file", "field": "",
                              "message": "Expected a JSON list of requests (each as in POST /api/requests/)."}])
    return batch_from_list(data)


def batch_from_list(data: list) -> ParsedBatch:
    """A JSON list already parsed (the API's JSON body)."""
    _check_count(len(data))
    return ParsedBatch(requests=data, locations={(i, ""): f"request {i + 1}" for i in range(len(data))}, kind="json")


def _check_count(count: int) -> None:
    if count == 0:
        raise ImportInvalid([{"location": "file", "field": "", "message": "The file contains no request."}])
    if count > MAX_IMPORT_REQUESTS:
        raise ImportInvalid([{"location": "file", "field": "",
                              "message": f"At most {MAX_IMPORT_REQUESTS} requests per import (got {count})."}])


def parse_csv_batch(text: str) -> ParsedBatch:
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    if not reader.fieldnames:
        raise ImportInvalid([{"location": "row 1", "field": "", "message": "The CSV has no header row."}])
    header = {name: (name or "").strip().lower() for name in reader.fieldnames}
    missing = [c for c in REQUIRED_CSV_COLUMNS if c not in header.values()]
    unknown = [h for h in header.values() if h and h not in CSV_COLUMNS]
    if missing or unknown:
        problems = []
        if missing:
            problems.append(f"missing column(s): {', '.join(missing)}")
        if unknown:
            problems.append(f"unknown column(s): {', '.join(unknown)} (known: {', '.join(CSV_COLUMNS)})")
        raise ImportInvalid([{"location": "row 1", "field": "", "message": "; ".join(problems) + "."}])

    requests: list[dict[str, Any]] = []
    by_name: dict[str, int] = {}
    sequence_index: dict[tuple[int, str], int] = {}
    album_index: dict[tuple[int, int, str], int] = {}
    locations: dict[tuple[int, str], str] = {}
    for row_number, raw in enumerate(reader, start=2):  # row 1 is the header
        if None in raw:
            raise ImportInvalid([{"location": f"row {row_number}", "field": "",
                                  "message": "More cells than columns in the header."}])
        row = {header[k]: (v or "").strip() for k, v in raw.items() if header.get(k)}
        if not any(row.values()):
            continue
        where = f"row {row_number}"
        name = row.get("request", "")
        if name not in by_name:
            by_name[name] = len(requests)
            requests.append({"name": name, "program": row.get("program", ""), "sequences": []})
            locations[(by_name[name], "")] = where
            locations[(by_name[name], "name")] = where
            locations[(by_name[name], "program")] = where
        r = by_name[name]
        request = requests[r]
        sequence_name = row.get("sequence") or row.get("target", "")
        if (r, sequence_name) not in sequence_index:
            s = len(request["sequences"])
            sequence_index[(r, sequence_name)] = s
            request["sequences"].append({
                "name": sequence_name,
                "target": {"name": row.get("target", ""), "ra_deg": row.get("ra", ""), "dec_deg": row.get("dec", "")},
                "window": {"start": row.get("window_start", ""), "end": row.get("window_end", "")},
                "preferred_start": row.get("preferred_start") or None,
                "tolerance_early_s": row.get("tolerance_early_s") or None,
                "tolerance_late_s": row.get("tolerance_late_s") or None,
                "priority": row.get("priority") or 5,
                "constraints": {key: row.get(key) or None
                                for key in ("min_altitude_deg", "max_airmass", "min_moon_separation_deg")},
                "albums": [],
            })
            locations[(r, f"sequences[{s}]")] = where
        s = sequence_index[(r, sequence_name)]
        sequence = request["sequences"][s]
        detector = row.get("detector", "")
        if (r, s, detector) not in album_index:
            album_index[(r, s, detector)] = len(sequence["albums"])
            sequence["albums"].append({"detector": detector, "plans": []})
            locations[(r, f"sequences[{s}].albums[{album_index[(r, s, detector)]}]")] = where
        a = album_index[(r, s, detector)]
        plans = sequence["albums"][a]["plans"]
        locations[(r, f"sequences[{s}].albums[{a}].plans[{len(plans)}]")] = where
        plans.append({"filter": row.get("filter", ""), "exposure_s": row.get("exposure_s", ""),
                      "count": row.get("count", ""), "binning": row.get("binning") or 1})
    _check_count(len(requests))
    return ParsedBatch(requests=requests, locations=locations, kind="csv")


def csv_column_for(path: str) -> str:
    """The CSV column a JSON field path comes from ('sequences[0].window.start' -> 'window_start')."""
    tail = path.split("]")[-1].lstrip(".")
    if not tail:
        return path
    for column, json_path in _CSV_FIELD_PATHS.items():
        if tail == json_path and column not in {"request", "sequence"}:
            return column
    if tail == "name":
        return "sequence" if "sequences[" in path else "request"
    return tail


def parse_batch(*, content: bytes, filename: str = "", content_type: str = "") -> ParsedBatch:
    if len(content) > MAX_IMPORT_BYTES:
        raise ImportInvalid([{"location": "file", "field": "",
                              "message": f"The file is larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MB."}])
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ImportInvalid([{"location": "file", "field": "", "message": "The file is not UTF-8 text."}]) from None
    is_json = filename.lower().endswith(".json") or "json" in content_type or text.lstrip()[:1] in {"[", "{"}
    return parse_json_batch(text) if is_json else parse_csv_batch(text)
