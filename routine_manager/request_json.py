"""The API's request JSON, in and out: a :class:`RequestBuilder` from the JSON a client sends (bad values
become errors keyed by their path, never exceptions), and a saved request back as that JSON."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pyrosapp.models import Request, ScientificProgram, User
from routine_manager.builder import (
    MAX_ALBUMS_PER_SEQUENCE,
    MAX_PLANS_PER_ALBUM,
    MAX_SEQUENCES_PER_REQUEST,
    SEQUENCE_FIELD_PATHS,
    FieldErrors,
    RequestBuilder,
    SequenceBuilder,
)
from routine_manager.coordinates import format_utc

REQUEST_KEYS = {"name", "program", "sequences", "draft"}
# Fields of the API's output that a client may send back unchanged (they are ignored).
READ_ONLY_KEYS = {"id", "status", "status_reason", "owner", "estimated_duration_s", "reserved_s", "used_s", "created",
                  "updated", "submitted_at", "is_alert", "url", "program_name", "duration_s", "planned_start",
                  "planned_end", "started_at", "ended_at", "images_done", "order"}
SEQUENCE_KEYS = {"name", "target", "window", "preferred_start", "tolerance_early_s", "tolerance_late_s", "priority",
                 "constraints", "albums"}
TARGET_KEYS = {"name", "ra_deg", "dec_deg"}
WINDOW_KEYS = {"start", "end"}
CONSTRAINT_KEYS = {"min_altitude_deg", "max_airmass", "min_moon_separation_deg"}
ALBUM_KEYS = {"detector", "plans"}
PLAN_KEYS = {"filter", "exposure_s", "count", "binning"}



def builder_from_api_data(data: Any, *, owner: User, is_alert: bool = False, alert_event=None) -> RequestBuilder:
    """A builder from the API's request JSON. Never raises for bad values: they become errors."""
    if not isinstance(data, Mapping):
        builder = RequestBuilder(owner=owner, program=None, name="-")
        builder._parse_errors = FieldErrors()
        builder._parse_errors.add("request", "Expected a JSON object with name, program and sequences.")
        return builder
    errors = FieldErrors()
    _unknown_keys(errors, "", data, REQUEST_KEYS)
    program = _resolve_program(errors, data.get("program"))
    builder = RequestBuilder(owner=owner, program=program, name=data.get("name"), is_alert=is_alert, alert_event=alert_event)
    for path, messages in errors.by_path.items():
        for message in messages:
            builder._parse_errors.add(path, message)
    errors = builder._parse_errors
    sequences = data.get("sequences")
    if sequences is None:
        errors.add("sequences", "This field is required.")
        sequences = []
    elif not isinstance(sequences, list):
        errors.add("sequences", "Expected a list of sequences.")
        sequences = []
    elif len(sequences) > MAX_SEQUENCES_PER_REQUEST:
        errors.add("sequences", f"At most {MAX_SEQUENCES_PER_REQUEST} sequences per request (got {len(sequences)}).")
        sequences = []
    for index, item in enumerate(sequences):
        path = f"sequences[{index}]"
        if not isinstance(item, Mapping):
            errors.add(path, "Expected an object.")
            builder.sequences.append(SequenceBuilder(builder, path, dict.fromkeys(SEQUENCE_FIELD_PATHS)))
            continue
        _unknown_keys(errors, path, item, SEQUENCE_KEYS)
        target = _object(errors, f"{path}.target", item.get("target"), TARGET_KEYS, required=True)
        window = _object(errors, f"{path}.window", item.get("window"), WINDOW_KEYS, required=True)
        constraints = _object(errors, f"{path}.constraints", item.get("constraints"), CONSTRAINT_KEYS,
                              required=False)
        sequence = builder.add_sequence(
            name=item.get("name"), target_name=target.get("name"), ra_deg=target.get("ra_deg"),
            dec_deg=target.get("dec_deg"), window_start=window.get("start"), window_end=window.get("end"),
            priority=item.get("priority", 5), preferred_start=item.get("preferred_start"),
            tolerance_early_s=item.get("tolerance_early_s"), tolerance_late_s=item.get("tolerance_late_s"),
            min_altitude_deg=constraints.get("min_altitude_deg"), max_airmass=constraints.get("max_airmass"),
            min_moon_separation_deg=constraints.get("min_moon_separation_deg"))
        albums = _list(errors, f"{path}.albums", item.get("albums"), MAX_ALBUMS_PER_SEQUENCE, "albums")
        for album_index, album_data in enumerate(albums):
            album_path = f"{path}.albums[{album_index}]"
            if not isinstance(album_data, Mapping):
                errors.add(album_path, "Expected an object with detector and plans.")
                continue
            _unknown_keys(errors, album_path, album_data, ALBUM_KEYS)
            album = sequence.add_album(detector=album_data.get("detector"))
            plans = _list(errors, f"{album_path}.plans", album_data.get("plans"), MAX_PLANS_PER_ALBUM, "plans")
            for plan_index, plan in enumerate(plans):
                plan_path = f"{album_path}.plans[{plan_index}]"
                if not isinstance(plan, Mapping):
                    errors.add(plan_path, "Expected an object with filter, exposure_s and count.")
                    continue
                _unknown_keys(errors, plan_path, plan, PLAN_KEYS)
                album.add_plan(filter=plan.get("filter"), exposure_s=plan.get("exposure_s"),
                               count=plan.get("count"), binning=plan.get("binning", 1))
    return builder

def builder_from_request(request: Request, *, owner: User | None = None, name: str | None = None) -> RequestBuilder:
    """A builder holding a copy of a saved request (to submit a draft, or to clone)."""
    data = request_to_data(request)
    if name is not None:
        data["name"] = name
    return builder_from_api_data(data, owner=owner or request.owner, is_alert=request.is_alert,
                             alert_event=request.alert_event)


def _unknown_keys(errors: FieldErrors, path: str, data: Mapping, allowed: set[str]) -> None:
    for key in data:
        if key not in allowed and key not in READ_ONLY_KEYS:
            errors.add(f"{path}.{key}" if path else str(key), f"Unknown field (expected one of {', '.join(sorted(allowed))}).")


def _object(errors: FieldErrors, path: str, value: Any, allowed: set[str], *, required: bool) -> Mapping:
    if value is None:
        if required:
            errors.add(path, "This field is required.")
        return {}
    if not isinstance(value, Mapping):
        errors.add(path, f"Expected an object with {', '.join(sorted(allowed))}.")
        return {}
    _unknown_keys(errors, path, value, allowed)
    return value


def _list(errors: FieldErrors, path: str, value: Any, limit: int, what: str) -> list:
    if value is None:
        errors.add(path, "This field is required.")
        return []
    if not isinstance(value, list):
        errors.add(path, f"Expected a list of {what}.")
        return []
    if len(value) > limit:
        errors.add(path, f"At most {limit} {what} (got {len(value)}).")
        return []
    return value


def _resolve_program(errors: FieldErrors, value: Any) -> ScientificProgram | None:
    if value is None or value == "":
        errors.add("program", "This field is required.")
        return None
    query = ScientificProgram.objects.all()
    if isinstance(value, int) and not isinstance(value, bool):
        program = query.filter(pk=value).first()
    elif isinstance(value, str) and value.strip().isdigit():
        program = query.filter(pk=int(value.strip())).first()
    elif isinstance(value, str):
        program = query.filter(name=value.strip()).first()
    else:
        errors.add("program", "Expected a program id (or name).")
        return None
    if program is None:
        errors.add("program", f"No program {value!r}.")
    return program


def request_to_data(request: Request) -> dict[str, Any]:
    """A saved request in the API's input JSON (what ``from_api_data`` reads back)."""

    def utc(value: datetime | None) -> str | None:
        return format_utc(value) if value else None

    sequences = []
    for seq in request.sequences.all().prefetch_related("albums__detector", "albums__plans__filter"):
        sequences.append({
            "name": seq.name,
            "target": {"name": seq.target_name, "ra_deg": seq.ra_deg, "dec_deg": seq.dec_deg},
            "window": {"start": utc(seq.window_start), "end": utc(seq.window_end)},
            "preferred_start": utc(seq.preferred_start),
            "tolerance_early_s": seq.tolerance_early_s,
            "tolerance_late_s": seq.tolerance_late_s,
            "priority": seq.priority,
            "constraints": {"min_altitude_deg": seq.min_altitude_deg, "max_airmass": seq.max_airmass,
                            "min_moon_separation_deg": seq.min_moon_separation_deg},
            "albums": [{"detector": album.detector.name,
                        "plans": [{"filter": plan.filter.name, "exposure_s": plan.exposure_s, "count": plan.count,
                                   "binning": plan.binning} for plan in album.plans.all()]}
                       for album in seq.albums.all()],
        })
    return {"name": request.name, "program": request.program_id, "sequences": sequences}
