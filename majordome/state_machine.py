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


# --- Procedures (operator routines from the procedures queue) ---------------------------------------
# What sky a procedure needs: a dark night (focus, pointing grid, standard stars), twilight (sky flats),
# or none at all (dome and filter-wheel checks, darks): those may run by day.
SKY_DARK, SKY_TWILIGHT, SKY_NONE = "dark", "twilight", "none"
SKY_PHASES: dict[str, frozenset[str]] = {
    SKY_DARK: frozenset({NIGHT}),
    SKY_TWILIGHT: frozenset({DUSK, DAWN}),
    SKY_NONE: frozenset({DAY, DUSK, NIGHT, DAWN}),
}


@dataclass(frozen=True)
class ProcedureInputs:
    phase: str
    mode: str
    safety: str
    executor_busy: bool
    has_preempt: bool
    sky: str
    in_block: bool  # a scheduled procedure block is open (automatic mode hands the telescope to the queue)


def may_run_procedure(inputs: ProcedureInputs) -> tuple[bool, str]:
    """Whether a procedure may take the telescope now, and why not. Manual (engineering) mode hands it to the
    operator's queue; automatic mode only during a procedure block; never while unsafe, never before a
    pre-empting (alert) sequence, never beside a running sequence."""
    if inputs.executor_busy:
        return False, "the telescope is busy (a sequence, calibrations or another procedure)"
    if inputs.safety != SAFE:
        return False, f"conditions are {inputs.safety}"
    if inputs.has_preempt:
        return False, "an alert sequence waits to run"
    if inputs.mode == AUTOMATIC and not inputs.in_block:
        return False, "mode is automatic and no procedure block is open (switch to manual, or open a block)"
    if inputs.mode not in (MANUAL, AUTOMATIC):
        return False, f"mode is {inputs.mode}"
    phases = SKY_PHASES.get(inputs.sky)
    if phases is None:
        return False, f"unknown sky requirement {inputs.sky!r}"
    if inputs.phase not in phases:
        return False, f"it is {inputs.phase} and the procedure needs sky={inputs.sky}"
    return True, "the telescope is free"
