"""The one programmatic way to build an observation request: used by the web forms, the REST API, the
batch importers and the alert manager, so that all of them validate a request the same way.

    builder = RequestBuilder(owner=user, program=program, name="M51 monitoring")
    sequence = builder.add_sequence(name="M51", target_name="M51", ra_deg=202.4696, dec_deg=47.1952,
                                    window_start=start, window_end=end, min_altitude_deg=30)
    sequence.add_album(detector="PyROS Camera").add_plan(filter="R", exposure_s=60, count=5)
    report = builder.validate()          # dry run: errors by field path, durations, observable windows
    request = builder.save(submit=True)  # atomic; raises RequestInvalid and changes nothing

Errors are keyed by the path of the field in the API's JSON (``sequences[0].window.start``,
``sequences[1].albums[0].plans[2].exposure_s``), so the API, the forms and the importers can all point
at the value to fix. Values are coerced leniently (numbers given as text, RA in hours ``13:29:52.7``,
Dec ``+47:11:43``) and every bad value becomes an error message, never an exception.

Two levels of checks: *structure* (types, ranges, the instrument's filters, program membership), which
a draft must pass to be saved, and *submission* (window still open and long enough, observable from
the site, remaining allocation), which ``validate()`` and ``save(submit=True)`` add.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from pyrosapp.models import Album, Detector, Filter, Plan, Request, ScientificProgram, Sequence, Site, User
from routine_manager.coordinates import finite_float, format_utc, parse_dec_deg, parse_ra_deg, parse_utc

# --- Limits (a request is a unit a person can review; big campaigns are several requests) ---------
MAX_SEQUENCES_PER_REQUEST = 20
MAX_ALBUMS_PER_SEQUENCE = 4
MAX_PLANS_PER_ALBUM = 20
MAX_IMAGES_PER_PLAN = 1000
MAX_EXPOSURE_S = 3600.0
MAX_WINDOW_DAYS = 31  # the observability check covers the whole window: keep it bounded
MAX_WINDOW_START_AHEAD_DAYS = 366
MAX_AIRMASS_LIMIT = 10.0
MAX_NAME_LENGTH = 200
ALERT_PRIORITY = 10  # alerts go in the top priority class, whatever the program's range

# JSON path (relative to the sequence) of each add_sequence() argument.
SEQUENCE_FIELD_PATHS = {
    "name": "name",
    "target_name": "target.name",
    "ra_deg": "target.ra_deg",
    "dec_deg": "target.dec_deg",
    "window_start": "window.start",
    "window_end": "window.end",
    "priority": "priority",
    "preferred_start": "preferred_start",
    "tolerance_early_s": "tolerance_early_s",
    "tolerance_late_s": "tolerance_late_s",
    "min_altitude_deg": "constraints.min_altitude_deg",
    "max_airmass": "constraints.max_airmass",
    "min_moon_separation_deg": "constraints.min_moon_separation_deg",
}
class RequestInvalid(Exception):
    """The request cannot be saved or submitted; ``errors`` maps field paths to messages."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        self.errors = errors
        first = next(iter(errors.items()), ("request", ["invalid"]))
        super().__init__(f"{first[0]}: {first[1][0]}" + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))


@dataclass
class SequenceReport:
    duration_s: float | None
    observable_windows: list[tuple[datetime, datetime]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"duration_s": self.duration_s,
                "observable_windows": [[format_utc(a), format_utc(b)] for a, b in self.observable_windows]}


@dataclass
class ValidationReport:
    valid: bool
    errors: dict[str, list[str]]
    duration_s: float | None
    sequences: list[SequenceReport]

    def to_dict(self) -> dict[str, Any]:
        if not self.valid:
            return {"valid": False, "errors": self.errors}
        return {"valid": True, "duration_s": self.duration_s, "sequences": [s.to_dict() for s in self.sequences]}


class FieldErrors:
    def __init__(self) -> None:
        self.by_path: dict[str, list[str]] = {}

    def add(self, path: str, message: str) -> None:
        self.by_path.setdefault(path, []).append(message)

    def has(self, path: str) -> bool:
        return path in self.by_path

    def has_under(self, prefix: str) -> bool:
        return any(p == prefix or p.startswith(prefix + ".") or p.startswith(prefix + "[") for p in self.by_path)

    def merged(self, other: FieldErrors) -> dict[str, list[str]]:
        result = {path: list(messages) for path, messages in self.by_path.items()}
        for path, messages in other.by_path.items():
            result.setdefault(path, []).extend(messages)
        return result


def _coerce(errors: FieldErrors, path: str, value: Any, kind: str, *, required: bool) -> Any:
    """Parse one value; on failure record a message at ``path`` and return None."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            errors.add(path, "This field is required.")
        return None
    try:
        if kind == "float":
            return finite_float(value)
        if kind == "int":
            number = finite_float(value)
            if number != int(number):
                raise ValueError
            return int(number)
        if kind == "ra":
            return parse_ra_deg(value)
        if kind == "dec":
            return parse_dec_deg(value)
        if kind == "datetime":
            return parse_utc(value)
        if kind == "text":
            if not isinstance(value, str):
                raise ValueError
            text = value.strip()
            if len(text) > MAX_NAME_LENGTH:
                errors.add(path, f"At most {MAX_NAME_LENGTH} characters.")
                return None
            return text
    except (TypeError, ValueError, OverflowError) as exc:
        hint = {"float": "a number", "int": "a whole number", "ra": "degrees (0-360) or hours as 13:29:52.7",
                "dec": "degrees (-90..90) or +47:11:43", "text": "text"}.get(kind)
        message = str(exc) if kind == "datetime" and str(exc) else f"Expected {hint}, got {value!r}."
        if kind in {"ra", "dec"} and str(exc):
            message = f"{exc}."
        errors.add(path, message)
        return None
    raise AssertionError(kind)


# --- The builder --------------------------------------------------------------------------------
@dataclass
class PlanBuilder:
    path: str
    filter_name: str | None
    filter: Filter | None
    exposure_s: float | None
    count: int | None
    binning: int | None


class AlbumBuilder:
    def __init__(self, request_builder: RequestBuilder, path: str, detector: Detector | None) -> None:
        self._request_builder = request_builder
        self.path = path
        self.detector = detector
        self.plans: list[PlanBuilder] = []

    def add_plan(self, *, filter: str, exposure_s: float, count: int, binning: int = 1) -> AlbumBuilder:  # noqa: A002
        errors = self._request_builder._parse_errors
        path = f"{self.path}.plans[{len(self.plans)}]"
        filter_name = _coerce(errors, f"{path}.filter", filter, "text", required=True)
        filter_obj = None
        if filter_name is not None and self.detector is not None:
            filters = self._request_builder._filters_of(self.detector)
            filter_obj = filters.get(filter_name) or filters.get(filter_name.lower())
            if filter_obj is None:
                choices = ", ".join(f.name for f in self._request_builder._filters_of(self.detector, unique=True))
                errors.add(f"{path}.filter", f"No filter {filter_name!r} on {self.detector.name}"
                           + (f" (choose one of {choices})." if choices else " (it has no filter wheel)."))
        self.plans.append(PlanBuilder(
            path=path, filter_name=filter_name, filter=filter_obj,
            exposure_s=_coerce(errors, f"{path}.exposure_s", exposure_s, "float", required=True),
            count=_coerce(errors, f"{path}.count", count, "int", required=True),
            binning=_coerce(errors, f"{path}.binning", 1 if binning is None else binning, "int", required=True),
        ))
        return self


class SequenceBuilder:
    def __init__(self, request_builder: RequestBuilder, path: str, values: dict[str, Any]) -> None:
        self._request_builder = request_builder
        self.path = path
        self.albums: list[AlbumBuilder] = []
        self.name: str | None = values["name"]
        self.target_name: str | None = values["target_name"]
        self.ra_deg: float | None = values["ra_deg"]
        self.dec_deg: float | None = values["dec_deg"]
        self.window_start: datetime | None = values["window_start"]
        self.window_end: datetime | None = values["window_end"]
        self.priority: int | None = values["priority"]
        self.preferred_start: datetime | None = values["preferred_start"]
        self.tolerance_early_s: float | None = values["tolerance_early_s"]
        self.tolerance_late_s: float | None = values["tolerance_late_s"]
        self.min_altitude_deg: float | None = values["min_altitude_deg"]
        self.max_airmass: float | None = values["max_airmass"]
        self.min_moon_separation_deg: float | None = values["min_moon_separation_deg"]
        self.duration_s: float | None = None

    def field_path(self, name: str) -> str:
        return f"{self.path}.{SEQUENCE_FIELD_PATHS[name]}"

    def add_album(self, *, detector: Detector | str) -> AlbumBuilder:
        path = f"{self.path}.albums[{len(self.albums)}]"
        album = AlbumBuilder(self._request_builder, path, self._request_builder._resolve_detector(detector,
                                                                                                   f"{path}.detector"))
        self.albums.append(album)
        return album


class RequestBuilder:
    """Collects a request (sequences -> albums -> plans), validates it, and saves it atomically."""

    def __init__(self, *, owner: User, program: ScientificProgram | None, name: str, is_alert: bool = False,
                 alert_event=None) -> None:
        self.owner = owner
        self.program = program
        self.is_alert = is_alert
        self.alert_event = alert_event
        self.sequences: list[SequenceBuilder] = []
        self._parse_errors = FieldErrors()
        self.name = _coerce(self._parse_errors, "name", name, "text", required=True)
        self._detectors: dict[str, Detector | None] = {}
        self._filters: dict[int, dict[str, Filter]] = {}

    # -- building ---------------------------------------------------------------------------
    def add_sequence(self, *, name, target_name, ra_deg, dec_deg, window_start, window_end, priority=5,
                     preferred_start=None, tolerance_early_s=0.0, tolerance_late_s=0.0, min_altitude_deg=None,
                     max_airmass=None, min_moon_separation_deg=None) -> SequenceBuilder:
        path = f"sequences[{len(self.sequences)}]"
        errors = self._parse_errors
        raw = dict(name=name, target_name=target_name, ra_deg=ra_deg, dec_deg=dec_deg, window_start=window_start,
                   window_end=window_end, priority=priority, preferred_start=preferred_start,
                   tolerance_early_s=0.0 if tolerance_early_s is None else tolerance_early_s,
                   tolerance_late_s=0.0 if tolerance_late_s is None else tolerance_late_s,
                   min_altitude_deg=min_altitude_deg, max_airmass=max_airmass,
                   min_moon_separation_deg=min_moon_separation_deg)
        kinds = dict(name="text", target_name="text", ra_deg="ra", dec_deg="dec", window_start="datetime",
                     window_end="datetime", priority="int", preferred_start="datetime", tolerance_early_s="float",
                     tolerance_late_s="float", min_altitude_deg="float", max_airmass="float",
                     min_moon_separation_deg="float")
        required = {"target_name", "ra_deg", "dec_deg", "window_start", "window_end"}
        if self.is_alert:
            raw["priority"] = ALERT_PRIORITY
        else:
            required.add("priority")
        values = {key: _coerce(errors, f"{path}.{SEQUENCE_FIELD_PATHS[key]}", raw[key], kinds[key],
                               required=key in required) for key in raw}
        if not values["name"]:
            values["name"] = values["target_name"]  # a sequence is named after its target unless told otherwise
            if values["name"] is None and not errors.has(f"{path}.target.name"):
                errors.add(f"{path}.name", "This field is required.")
        sequence = SequenceBuilder(self, path, values)
        self.sequences.append(sequence)
        return sequence

    def _resolve_detector(self, detector: Detector | str, path: str) -> Detector | None:
        if isinstance(detector, Detector):
            return detector
        name = _coerce(self._parse_errors, path, detector, "text", required=True)
        if name is None:
            return None
        if name not in self._detectors:
            self._detectors[name] = Detector.objects.select_related("telescope__site", "filter_wheel").filter(
                name__iexact=name).first()
        found = self._detectors[name]
        if found is None:
            known = ", ".join(Detector.objects.values_list("name", flat=True)[:20])
            self._parse_errors.add(path, f"No detector named {name!r} (known: {known or 'none'}).")
        return found

    def _filters_of(self, detector: Detector, unique: bool = False):
        if detector.pk not in self._filters:
            filters = list(Filter.objects.filter(wheel_id=detector.filter_wheel_id)) if detector.filter_wheel_id else []
            by_name = {f.name: f for f in filters}
            by_name.update({f.name.lower(): f for f in filters if f.name.lower() not in by_name})
            self._filters[detector.pk] = by_name
        if unique:
            return sorted({f.pk: f for f in self._filters[detector.pk].values()}.values(), key=lambda f: f.slot)
        return self._filters[detector.pk]

    # -- validation -------------------------------------------------------------------------
    def _structure_errors(self) -> FieldErrors:
        """Checks a draft must pass: counts, ranges, membership, instruments."""
        errors = FieldErrors()
        parsed = self._parse_errors
        program = self.program
        if program is not None:
            if not program.is_active:
                errors.add("program", f"Program {program.name!r} is closed.")
            elif not self.is_alert and not self._may_use_program(program):
                errors.add("program", f"You are not a member of program {program.name!r}.")
        elif not parsed.has("program"):
            errors.add("program", "This field is required.")
        if not self.sequences:
            if not parsed.has_under("sequences"):
                errors.add("sequences", "Add at least one sequence.")
        elif len(self.sequences) > MAX_SEQUENCES_PER_REQUEST:
            errors.add("sequences", f"At most {MAX_SEQUENCES_PER_REQUEST} sequences per request "
                                    f"(got {len(self.sequences)}): split it into several requests.")
        for sequence in self.sequences:
            self._sequence_structure(sequence, errors)
        return errors

    def _may_use_program(self, program: ScientificProgram) -> bool:
        from user_manager.roles import is_administrator

        if program.pi_id == self.owner.pk or is_administrator(self.owner):
            return True
        return program.members.filter(pk=self.owner.pk).exists()

    def _sequence_structure(self, seq: SequenceBuilder, errors: FieldErrors) -> None:
        path = seq.field_path
        if seq.ra_deg is not None and not 0.0 <= seq.ra_deg < 360.0:
            errors.add(path("ra_deg"), f"RA must be in [0, 360) degrees, got {seq.ra_deg:g}.")
        if seq.dec_deg is not None and not -90.0 <= seq.dec_deg <= 90.0:
            errors.add(path("dec_deg"), f"Dec must be between -90 and +90 degrees, got {seq.dec_deg:g}.")
        if seq.window_start and seq.window_end:
            if seq.window_end <= seq.window_start:
                errors.add(path("window_end"), "The window must end after it starts.")
            elif seq.window_end - seq.window_start > timedelta(days=MAX_WINDOW_DAYS):
                errors.add(path("window_end"), f"The window is longer than {MAX_WINDOW_DAYS} days: "
                                               "split the request or shorten the window.")
            if seq.preferred_start and not seq.window_start <= seq.preferred_start <= seq.window_end:
                errors.add(path("preferred_start"), "The preferred start must be inside the window "
                                                    f"({format_utc(seq.window_start)} .. {format_utc(seq.window_end)}).")
        program = self.program
        if seq.priority is not None and program is not None and not self.is_alert:
            low, high = program.min_sequence_priority, program.max_sequence_priority
            if not low <= seq.priority <= high:
                errors.add(path("priority"), f"Program {program.name!r} allows priorities {low} to {high}.")
        for key in ("tolerance_early_s", "tolerance_late_s"):
            value = getattr(seq, key)
            if value is not None and value < 0:
                errors.add(path(key), "Must be zero or positive (seconds).")
        if seq.min_altitude_deg is not None and not 0.0 <= seq.min_altitude_deg <= 90.0:
            errors.add(path("min_altitude_deg"), "Must be between 0 and 90 degrees.")
        if seq.max_airmass is not None and not 1.0 <= seq.max_airmass <= MAX_AIRMASS_LIMIT:
            errors.add(path("max_airmass"), f"Must be between 1 and {MAX_AIRMASS_LIMIT:g}.")
        if seq.min_moon_separation_deg is not None and not 0.0 <= seq.min_moon_separation_deg <= 180.0:
            errors.add(path("min_moon_separation_deg"), "Must be between 0 and 180 degrees.")

        if not seq.albums:
            if not self._parse_errors.has_under(f"{seq.path}.albums"):
                errors.add(f"{seq.path}.albums", "Add at least one album (a detector and its exposures).")
        elif len(seq.albums) > MAX_ALBUMS_PER_SEQUENCE:
            errors.add(f"{seq.path}.albums", f"At most {MAX_ALBUMS_PER_SEQUENCE} albums per sequence.")
        seen_detectors: dict[int, int] = {}
        telescopes = set()
        for index, album in enumerate(seq.albums):
            detector = album.detector
            if detector is not None:
                if detector.pk in seen_detectors:
                    errors.add(f"{album.path}.detector", f"{detector.name} is already used by album "
                                                         f"{seen_detectors[detector.pk]}: one album per detector.")
                seen_detectors.setdefault(detector.pk, index)
                telescopes.add(detector.telescope_id)
                if len(telescopes) > 1:
                    errors.add(f"{album.path}.detector", "All albums of a sequence must use detectors of the "
                                                         "same telescope (one pointing).")
            if not album.plans:
                if not self._parse_errors.has_under(f"{album.path}.plans"):
                    errors.add(f"{album.path}.plans", "Add at least one plan (filter, exposure, number of images).")
            elif len(album.plans) > MAX_PLANS_PER_ALBUM:
                errors.add(f"{album.path}.plans", f"At most {MAX_PLANS_PER_ALBUM} plans per album.")
            for plan in album.plans:
                if plan.exposure_s is not None and not 0.0 < plan.exposure_s <= MAX_EXPOSURE_S:
                    errors.add(f"{plan.path}.exposure_s", f"Exposure must be > 0 and <= {MAX_EXPOSURE_S:g} s.")
                if plan.count is not None and not 1 <= plan.count <= MAX_IMAGES_PER_PLAN:
                    errors.add(f"{plan.path}.count", f"Number of images must be 1 to {MAX_IMAGES_PER_PLAN}.")
                max_binning = detector.max_binning if detector is not None else 8
                if plan.binning is not None and not 1 <= plan.binning <= max_binning:
                    errors.add(f"{plan.path}.binning", f"Binning must be 1 to {max_binning}"
                                                       + (f" on {detector.name}." if detector else "."))

    def _compute_durations(self, errors: dict[str, list[str]]) -> None:
        from routine_manager.duration import AlbumTiming, PlanTiming, TelescopeTiming, sequence_duration_s

        for seq in self.sequences:
            seq.duration_s = None
            if any(p.startswith(f"{seq.path}.albums") for p in errors) or not seq.albums:
                continue
            telescope = seq.albums[0].detector.telescope
            albums = [AlbumTiming(
                readout_s=album.detector.readout_s,
                filter_change_s=album.detector.filter_wheel.change_time_s if album.detector.filter_wheel else 0.0,
                plans=[PlanTiming(plan.filter_name, plan.exposure_s, plan.count) for plan in album.plans],
            ) for album in seq.albums]
            seq.duration_s = round(sequence_duration_s(
                TelescopeTiming(telescope.slew_rate_deg_s, telescope.settle_s, telescope.acquisition_s), albums), 3)

    def _site_of(self, seq: SequenceBuilder) -> Site | None:
        if seq.albums and seq.albums[0].detector is not None:
            return seq.albums[0].detector.telescope.site
        return Site.objects.filter(is_active=True).first()

    def _start_bounds(self, seq: SequenceBuilder, now: datetime) -> tuple[datetime, datetime]:
        """Earliest and latest start: the window (from now on), narrowed by the preferred start's tolerances."""
        earliest = max(seq.window_start, now)
        latest = seq.window_end - timedelta(seconds=seq.duration_s)
        if seq.preferred_start is not None:
            earliest = max(earliest, seq.preferred_start - timedelta(seconds=seq.tolerance_early_s or 0.0))
            latest = min(latest, seq.preferred_start + timedelta(seconds=seq.tolerance_late_s or 0.0))
        return earliest, latest

    def _submission_errors(self, errors: dict[str, list[str]], now: datetime, check_observability: bool,
                           reports: list[SequenceReport]) -> None:
        from routine_manager.visibility import SequenceSky, sequences_observability
        from sky.observability import Site as SkySite

        to_check: dict[int, list[tuple[int, SequenceSky]]] = {}
        sites: dict[int, Site] = {}
        for index, seq in enumerate(self.sequences):
            if seq.duration_s is None or seq.window_start is None or seq.window_end is None:
                continue
            if any(p == seq.path or p.startswith(seq.path + ".") for p in errors):
                continue  # fix the sequence's own values first: the sky cannot be checked with bad ones
            minutes = seq.duration_s / 60.0
            if seq.window_end <= now:
                errors.setdefault(seq.field_path("window_end"), []).append(
                    f"The window ended at {format_utc(seq.window_end)}: move it to the future.")
                continue
            if seq.window_start - now > timedelta(days=MAX_WINDOW_START_AHEAD_DAYS):
                errors.setdefault(seq.field_path("window_start"), []).append(
                    f"The window starts more than {MAX_WINDOW_START_AHEAD_DAYS} days from now.")
                continue
            usable_s = (seq.window_end - max(seq.window_start, now)).total_seconds()
            if usable_s < seq.duration_s:
                errors.setdefault(seq.field_path("window_end"), []).append(
                    f"The window leaves {usable_s / 60:.0f} min from now but the sequence takes {minutes:.0f} min: "
                    "lengthen the window or shorten the exposures.")
                continue
            earliest, latest = self._start_bounds(seq, now)
            if latest < earliest:
                errors.setdefault(seq.field_path("preferred_start"), []).append(
                    f"No start time fits the preferred start and its tolerances for a {minutes:.0f} min sequence "
                    "inside the window: widen the tolerances.")
                continue
            site = self._site_of(seq)
            if site is None:
                errors.setdefault(f"{seq.path}.albums[0].detector", []).append("No observing site is configured.")
                continue
            if not check_observability:
                reports[index].observable_windows = [(earliest, latest + timedelta(seconds=seq.duration_s))]
                continue
            # The site's horizon limit (mount, dome, trees) applies whatever the request asks for.
            min_altitude = max(seq.min_altitude_deg or 0.0, site.horizon_min_altitude_deg)
            sites[site.pk] = site
            to_check.setdefault(site.pk, []).append((index, SequenceSky(
                ra_deg=seq.ra_deg, dec_deg=seq.dec_deg, earliest_start_utc=earliest, latest_start_utc=latest,
                duration_s=seq.duration_s, min_altitude_deg=min_altitude, max_airmass=seq.max_airmass,
                min_moon_separation_deg=seq.min_moon_separation_deg)))
        for site_pk, items in to_check.items():
            site = sites[site_pk]
            sky_site = SkySite(site.latitude_deg, site.longitude_deg, site.elevation_m, site.name)
            results = sequences_observability(sky_site, site.twilight_deg, [sky for _, sky in items])
            for (index, _sky), result in zip(items, results, strict=True):
                seq = self.sequences[index]
                if result.observable:
                    # Report when the whole block can run: from the first to the last feasible start + duration.
                    reports[index].observable_windows = [
                        (a, b + timedelta(seconds=seq.duration_s)) for a, b in result.start_intervals_utc]
                else:
                    errors.setdefault(f"{seq.path}.target", []).append(
                        f"{seq.target_name} is not observable from {site.name} for the {seq.duration_s / 60:.0f} min "
                        f"the sequence takes: {result.reason}. Change the window or relax the constraints.")

    def _quota_errors(self, errors: dict[str, list[str]], now: datetime, total_s: float) -> None:
        from routine_manager.selectors import allocation_current

        if self.is_alert or self.program is None or "program" in errors:
            return
        allocation = allocation_current(program=self.program, now=now)
        if allocation is None:
            errors.setdefault("program", []).append(
                f"Program {self.program.name!r} has no time allocated for the current period: ask an administrator.")
        elif total_s > allocation.remaining_s + 1e-6:
            errors.setdefault("program", []).append(
                f"This request needs {total_s / 3600:.2f} h but only {max(0.0, allocation.remaining_s) / 3600:.2f} h "
                f"remain on program {self.program.name!r} for {allocation.period.name}.")

    def validate(self, *, now: datetime | None = None, check_observability: bool = True,
                 submission: bool = True) -> ValidationReport:
        """All checks (structure, and with ``submission`` the window, observability and quota); no writes."""
        now = now or timezone.now()
        errors = self._parse_errors.merged(self._structure_errors())
        self._compute_durations(errors)
        reports = [SequenceReport(duration_s=seq.duration_s) for seq in self.sequences]
        durations = [seq.duration_s for seq in self.sequences]
        total_s = round(sum(durations), 3) if durations and None not in durations else None
        if submission:
            self._submission_errors(errors, now, check_observability, reports)
            if total_s is not None:
                self._quota_errors(errors, now, total_s)
        return ValidationReport(valid=not errors, errors=errors, duration_s=total_s, sequences=reports)

    # -- saving -----------------------------------------------------------------------------
    def save(self, *, submit: bool, now: datetime | None = None, check_observability: bool = True,
             replace: Request | None = None) -> Request:
        """Create the request (or rewrite the draft ``replace``), submitted if ``submit``. Atomic.

        Raises :class:`RequestInvalid` (and writes nothing) when a check fails.
        """
        from routine_manager import services

        now = now or timezone.now()
        report = self.validate(now=now, check_observability=check_observability, submission=submit)
        if not report.valid:
            raise RequestInvalid(report.errors)
        with transaction.atomic():
            if replace is not None:
                request = Request.objects.select_for_update().get(pk=replace.pk)
                if request.status != Request.Status.DRAFT:
                    raise RequestInvalid({"request": [f"Only a draft can be edited; this request is {request.status}."]})
                request.sequences.all().delete()
                request.name, request.program = self.name, self.program
            else:
                request = Request(owner=self.owner, is_alert=self.is_alert, alert_event=self.alert_event)
                request.name, request.program = self.name, self.program
            request.estimated_duration_s = report.duration_s or 0.0
            request.save()
            for order, seq in enumerate(self.sequences):
                sequence = Sequence.objects.create(
                    request=request, order=order, name=seq.name, target_name=seq.target_name, ra_deg=seq.ra_deg,
                    dec_deg=seq.dec_deg, window_start=seq.window_start, window_end=seq.window_end,
                    preferred_start=seq.preferred_start, tolerance_early_s=seq.tolerance_early_s or 0.0,
                    tolerance_late_s=seq.tolerance_late_s or 0.0,
                    priority=ALERT_PRIORITY if self.is_alert else seq.priority,
                    min_altitude_deg=seq.min_altitude_deg, max_airmass=seq.max_airmass,
                    min_moon_separation_deg=seq.min_moon_separation_deg, estimated_duration_s=seq.duration_s or 0.0,
                )
                for album_order, album in enumerate(seq.albums):
                    album_row = Album.objects.create(sequence=sequence, detector=album.detector, order=album_order)
                    Plan.objects.bulk_create([
                        Plan(album=album_row, order=plan_order, filter=plan.filter, exposure_s=plan.exposure_s,
                             count=plan.count, binning=plan.binning)
                        for plan_order, plan in enumerate(album.plans)])
            if submit:
                services.request_mark_submitted(request=request, duration_s=report.duration_s or 0.0, now=now)
        request.refresh_from_db()
        return request
