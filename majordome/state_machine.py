"""The observatory's state machine, as plain data: phases from the Sun, operating modes, and the
transitions allowed between them. No Django here; services apply these with conditional updates."""

from __future__ import annotations

from dataclasses import dataclass

DAY, DUSK, NIGHT, DAWN = "day", "dusk", "night", "dawn"
AUTOMATIC, MANUAL, PAUSED, STOPPED = "automatic", "manual", "paused", "stopped"
SAFE, UNSAFE, UNKNOWN = "safe", "unsafe", "unknown"

# Operator-driven mode changes. Any mode may go to STOPPED (finish nothing more, park).
MODE_TRANSITIONS: dict[str, frozenset[str]] = {
    AUTOMATIC: frozenset({PAUSED, STOPPED, MANUAL}),
    PAUSED: frozenset({AUTOMATIC, STOPPED, MANUAL}),
    STOPPED: frozenset({AUTOMATIC, MANUAL}),
    MANUAL: frozenset({AUTOMATIC, PAUSED, STOPPED}),
}

# The Sun drives the phases: day -> dusk -> night -> dawn -> day. A jump (e.g. the process was down
# all evening) is allowed: the phase is recomputed, never inferred from the previous one.
PHASE_ORDER = (DAY, DUSK, NIGHT, DAWN)

# Sun altitude above which it is day: dusk/dawn calibrations (flats) happen between this and the
# night's twilight limit.
DAY_SUN_ALT_DEG = -0.833  # geometric sunset, with refraction and the Sun's radius


class InvalidStateChange(Exception):
    pass


def check_mode_change(old: str, new: str) -> None:
    if old == new:
        return
    if new not in MODE_TRANSITIONS.get(old, frozenset()):
        raise InvalidStateChange(f"the observatory cannot go from {old} to {new}")


def phase_for(*, sun_alt_deg: float, sun_rising: bool, twilight_deg: float) -> str:
    """Phase from the Sun's altitude and direction: night below the twilight limit, day above
    sunset altitude, dusk (setting) or dawn (rising) in between."""
    if sun_alt_deg <= twilight_deg:
        return NIGHT
    if sun_alt_deg >= DAY_SUN_ALT_DEG:
        return DAY
    return DAWN if sun_rising else DUSK


@dataclass(frozen=True)
class DispatchInputs:
    phase: str
    mode: str
    safety: str
    executor_busy: bool
    has_preempt: bool
    next_entry_due: bool


def may_dispatch(inputs: DispatchInputs) -> tuple[bool, str]:
    """Whether the majordome may start the next sequence now, and why not."""
    if inputs.executor_busy:
        return False, "a sequence is executing"
    if inputs.mode != AUTOMATIC:
        return False, f"mode is {inputs.mode}"
    if inputs.safety != SAFE:
        return False, f"conditions are {inputs.safety}"
    if inputs.phase != NIGHT:
        return False, f"it is {inputs.phase}"
    if inputs.has_preempt:
        return True, "a pre-empting sequence waits"
    if not inputs.next_entry_due:
        return False, "nothing planned now"
    return True, "next planned sequence is due"
