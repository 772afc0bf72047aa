"""Why a sequence is not in the plan: a code and its values, and the one place they become words.

The planner (:mod:`scheduler.algorithm`) and the services record a :class:`Reason` (a ``code`` and
JSON-ready ``values``: numbers, strings, ISO 8601 UTC times ending in Z, lists of dicts); the schedule page,
the request page (``Sequence.status_reason``) and the API show :func:`reason_text` of it, and the API gives
the code and values as well. Pure: no Django, so the planner can use it.

Codes (values beyond ``duration_s`` in brackets):

* the night and the window: ``night_over`` [night_end], ``longer_than_night`` [plan_start, night_end],
  ``window_closed`` [latest_start], ``window_after_night`` [earliest_start], ``window_outside_night``
  [plan_start, night_end], ``window_not_tonight``, ``window_too_short`` [window_start, window_end];
* the sky (see :class:`sky.observability.UnobservableCause`): ``not_dark``, ``too_low``, ``moon_too_close``,
  ``altitude_and_moon``, ``fragmented``;
* the plan: ``allocation_exhausted`` [program, left_s, after_others], ``displaced`` and ``no_room``
  [by: the sequences in the way, more, possible_from, possible_to, priority, program_priority, alert];
* ``no_exposures``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sky.observability import UnobservableCause

# A "displaced by" sentence names at most this many sequences, then "and N more".
MAX_NAMED = 3


def _json_ready(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float) or hasattr(value, "__float__"):  # numpy scalars too
        number = float(value)
        return round(number, 3) if math.isfinite(number) else None
    raise TypeError(f"a reason value must be JSON-ready, got {type(value).__name__}")


@dataclass(frozen=True)
class Reason:
    code: str
    values: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, code: str, **values: Any) -> Reason:
        return cls(code, _json_ready(values))

    @classmethod
    def from_cause(cls, cause: UnobservableCause) -> Reason:
        return cls(cause.code, _json_ready(cause.values))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Reason:
        return cls(str(data["code"]), dict(data.get("values") or {}))

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "values": self.values}

    @property
    def text(self) -> str:
        return reason_text(self.code, self.values)


# --------------------------------------------------------------------------------------------
# Words
# --------------------------------------------------------------------------------------------
def _when(iso: str | None, *, date: bool = False) -> str:
    if not iso:
        return "an unknown time"
    value = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(UTC)
    return f"{value:%Y-%m-%d %H:%M} UTC" if date else f"{value:%H:%M} UTC"


def _span(start: str | None, end: str | None) -> str:
    """``2026-12-16 22:10–23:40 UTC``, with the second date only when it differs."""
    if not start or not end:
        return "an unknown time"
    a = datetime.fromisoformat(start.replace("Z", "+00:00")).astimezone(UTC)
    b = datetime.fromisoformat(end.replace("Z", "+00:00")).astimezone(UTC)
    return f"{a:%Y-%m-%d %H:%M}–{b:%H:%M} UTC" if a.date() == b.date() else \
        f"{a:%Y-%m-%d %H:%M} UTC – {b:%Y-%m-%d %H:%M} UTC"


def _minutes(seconds: float | None) -> str:
    if seconds is None:
        return "an unknown time"
    minutes = seconds / 60.0
    if minutes >= 120:
        return f"{minutes / 60:.1f} h"
    return f"{max(0, round(minutes))} min" if minutes >= 1 or minutes == 0 else f"{round(seconds)} s"


def _deg(value: float | None) -> str:
    return "?" if value is None else f"{value:.0f}°"


def _altitude_limit(values: dict[str, Any]) -> str:
    text = f"the altitude limit of {_deg(values.get('limit_deg'))}"
    if values.get("max_airmass") is not None:
        text += f" (airmass {values['max_airmass']:g})"
    return text


def _join(words: list[str], more: int = 0) -> str:
    if more:
        words = [*words, f"{more} more"]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _label(other: dict[str, Any], why: str = "") -> str:
    """``#123 M51 (request “Galaxies”, priority 8 against 5)`` for a stored sequence; the planner's id for
    a simulated one."""
    details = []
    if other.get("sequence") is None:
        label = str(other.get("id", "?"))
    else:
        label = f"#{other['sequence']}" + (f" {other['target']}" if other.get("target") else "")
        if other.get("request") and other.get("request") != other.get("target"):
            details.append(f"request “{other['request']}”")
    if why:
        details.append(why)
    return label + (f" ({', '.join(details)})" if details else "")


def _precedence(other: dict[str, Any], values: dict[str, Any]) -> str:
    """Why ``other`` comes first, in the planner's order: alerts, then program priority, then priority."""
    if other.get("alert") and not values.get("alert"):
        return "an alert"
    if other.get("program_priority") != values.get("program_priority"):
        return f"program priority {other.get('program_priority')} against {values.get('program_priority')}"
    return f"priority {other.get('priority')} against {values.get('priority')}"


def _too_low(values: dict[str, Any], needs: str) -> str:
    limit = _altitude_limit(values)
    if not values.get("above_from"):
        highest = ""
        if values.get("highest_deg") is not None:
            highest = f" (highest {_deg(values['highest_deg'])} at {_when(values.get('highest_at'))})"
        return f"not observable: never above {limit} at night in its window{highest}"
    above, since, until = _minutes(values.get("above_s")), _when(values["above_from"]), _when(values["above_until"])
    rises, sets = values.get("rises"), values.get("sets")
    if rises and sets:
        return f"not observable: above {limit} only from {since} to {until} ({above}); it needs {needs}"
    if rises:
        return (f"not observable: below {limit} until {since}, which leaves {above} before {until} "
                f"(end of the night or of its window); it needs {needs}")
    if sets:
        return f"not observable: below {limit} from {until}, only {above} after {since}; it needs {needs}"
    return f"not observable: above {limit} at night for only {above} ({since}–{until}); it needs {needs}"


def reason_text(code: str, values: dict[str, Any]) -> str:
    """The sentence a user reads for a reason (the schedule page, the request page, the API's ``reason``)."""
    v = values
    needs = _minutes(v.get("duration_s"))
    if code == "night_over":
        return f"the night is over (it ended at {_when(v.get('night_end'), date=True)})"
    if code == "longer_than_night":
        return (f"longer ({needs}) than what is left of the night "
                f"({_span(v.get('plan_start'), v.get('night_end'))})")
    if code == "window_closed":
        return f"outside its time window: it had to start by {_when(v.get('latest_start'), date=True)}"
    if code == "window_after_night":
        return (f"outside its time window: it may not start before {_when(v.get('earliest_start'), date=True)}, "
                "after this night")
    if code == "window_outside_night":
        return (f"outside its time window: a {needs} block does not fit in its window during this night "
                f"({_span(v.get('plan_start'), v.get('night_end'))})")
    if code == "window_not_tonight":
        return "outside its time window: its window does not overlap what is left of tonight"
    if code == "window_too_short":
        return (f"outside its time window: a {needs} block does not fit in "
                f"{_span(v.get('window_start'), v.get('window_end'))}")
    if code == "not_dark":
        return (f"not observable: not {needs} of night (Sun below {v.get('twilight_deg', -18):.0f}°) in "
                f"{_span(v.get('window_start'), v.get('window_end'))}")
    if code == "too_low":
        return _too_low(v, needs)
    if code == "moon_too_close":
        if v.get("moon_deg") is None:
            return f"not observable: too close to the Moon (minimum {_deg(v.get('min_moon_deg'))})"
        return f"not observable: Moon {_deg(v['moon_deg'])} away (minimum {_deg(v.get('min_moon_deg'))})"
    if code == "altitude_and_moon":
        return (f"not observable: never above {_altitude_limit(v)} and at least {_deg(v.get('min_moon_deg'))} "
                f"from the Moon at once for {needs} at night")
    if code == "fragmented":
        return f"not observable: its limits all hold only in pieces shorter than the {needs} it needs"
    if code == "allocation_exhausted":
        after = " after its other sequences in the plan" if v.get("after_others") else ""
        return (f"allocation exhausted: program {v.get('program')} has {_minutes(v.get('left_s'))} left{after}, "
                f"this sequence needs {needs}")
    if code in ("displaced", "no_room"):
        others = list(v.get("by") or [])
        more = int(v.get("more") or 0)
        span = _span(v.get("possible_from"), v.get("possible_to"))
        if not others:
            return f"no room: its possible starts ({span}) are taken"
        if code == "displaced":
            noun = "sequence" if len(others) + more == 1 else "sequences"
            names = _join([_label(o, _precedence(o, v)) for o in others], more)
            return f"displaced by higher-priority {noun} {names}: its possible starts ({span}) are taken"
        if len(others) == 1 and not more:
            return (f"no room: its possible starts ({span}) are taken by {_label(others[0])}, which does not "
                    "outrank it but was placed first")
        priorities = " + ".join(str(o.get("priority")) for o in others)
        return (f"no room: its possible starts ({span}) are taken by {_join([_label(o) for o in others], more)}, "
                f"which together come first (priorities {priorities} against its {v.get('priority')})")
    if code == "no_exposures":
        return "no exposures defined: its duration is unknown, so it cannot be planned"
    # A code from a newer version read by an older one: say what is known rather than nothing.
    return code.replace("_", " ")
