"""What a procedure module imports (no Django): the ``@procedure`` decorator, ``Param`` for units and
bounds, and the exceptions. A procedure is a function ``def name(ctx, *, param: type = default, ...)``;
``ctx`` is the :class:`procedures.context.ProcedureContext` the worker gives it (devices, progress, abort,
logger, publish, frames). See CONTRIBUTING.md, "Writing a procedure".

A procedure that returns a ``Flow`` is a flow: named ``Step``s (functions, or other procedures by name),
``Group``s and ``Loop``s with ``require=`` dependencies on other steps' outcomes; each step's state and data are
stored, and a recovery run skips the steps that succeeded (procedures/flows.py runs them):

    @procedure(timeout_s=3600, sky="none")
    def end_of_night(ctx, *, darks: int = 5):
        return Flow(
            Step("park", park, telescope=True),
            Step("close", close_dome, telescope=True, require=(("park", "success"),)),
            Loop("darks", list(range(darks)), Step("dark", take_dark, telescope=True), require="close"),
            Step("disk", check_disk, require="close"),            # beside the darks (no telescope)
            Step("report", night_report, require=("darks", "disk")),
            max_concurrent=3)

    from typing import Annotated
    from procedures.sdk import Param, procedure

    @procedure(timeout_s=600, sky="none")
    def wheel_check(ctx, *, exposure_s: Annotated[float, Param(unit="s", minimum=0)] = 1.0):
        \"\"\"Visit every filter and take a dark through it.

        Parameters:
            exposure_s: exposure of each frame
        \"\"\"
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

SKY_CHOICES = ("dark", "twilight", "none")


@dataclass(frozen=True)
class Param:
    """Metadata of a parameter, given with ``typing.Annotated[type, Param(...)]``."""

    unit: str = ""
    help: str = ""
    minimum: float | None = None  # for a list: of each of its values
    maximum: float | None = None
    min_items: int | None = None  # a list: at least this many values


@dataclass(frozen=True)
class ProcedureInfo:
    title: str
    timeout_s: float
    sky: str
    tags: tuple[str, ...] = field(default_factory=tuple)


def procedure(func: Callable | None = None, *, title: str = "", timeout_s: float = 3600.0, sky: str = "dark",
              tags: tuple[str, ...] = ()):
    """Mark a function as a procedure. ``timeout_s``: the worker is killed and the item failed after this
    long; ``sky``: "dark" (night only), "twilight" (dusk and dawn) or "none" (any time, day included)."""
    if sky not in SKY_CHOICES:
        raise ValueError(f"sky must be one of {', '.join(SKY_CHOICES)}, not {sky!r}")
    if not timeout_s > 0:
        raise ValueError("timeout_s must be positive")

    def mark(f: Callable) -> Callable:
        f.__pyros_procedure__ = ProcedureInfo(title=title or f.__name__.replace("_", " ").capitalize(),
                                              timeout_s=float(timeout_s), sky=sky, tags=tuple(tags))
        return f

    return mark(func) if func is not None else mark


class ProcedureAborted(Exception):
    """Raised inside a procedure by ``ctx.check()`` (or a device call) once it must stop. ``kind``:
    "abort" (an operator's abort: the item ends aborted) or "stop" (pre-emption, unsafe, pause now: the
    item ends stopped)."""

    def __init__(self, reason: str, *, kind: str = "abort") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


class ProcedureError(Exception):
    """A procedure's own failure with a message for the operator (the item ends failed)."""


def failure_message(exc: BaseException) -> str:
    """How a failure reads in the history, on the pages and in the CLI: a ProcedureError's message is written for
    the operator and stands alone; any other exception is named ('ZeroDivisionError: division by zero')."""
    return str(exc) if isinstance(exc, ProcedureError) and str(exc) else f"{exc.__class__.__name__}: {exc}"


# --- Flows -----------------------------------------------------------------------------------------
# A procedure that returns a ``Flow`` is a flow: the worker runs its steps (see procedures/flows.py), stores
# each step's state and published data (FlowRun, StepRun), and a recovery run skips the steps that succeeded.

OUTCOMES = ("success", "failure", "complete")
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.+:")


def open_to_sky(ctx, *, timeout_s: float = 300.0) -> dict:
    """Before pointing at the sky: the dome unparked and its shutter open (when there is a dome), the mount
    unparked. Returns what it had to do: ``{"dome_opened": bool, "mount_unparked": bool}``."""
    opened = False
    if ctx.observatory.dome:
        dome = ctx.dome.state()
        if dome.parked:
            ctx.dome.unpark()
        if dome.shutter != "open":
            ctx.set_progress(0, None, "opening the dome")
            ctx.dome.open_shutter(timeout_s=timeout_s)
            opened = True
    parked = bool(ctx.mount.state().parked)
    if parked:
        ctx.mount.unpark()
    return {"dome_opened": opened, "mount_unparked": parked}


class FlowError(ValueError):
    """A flow declared wrong (a duplicate name, an unknown requirement, a cycle...): the item fails before any
    step runs, with this message."""


def _check_name(name) -> str:
    if not isinstance(name, str) or not name or len(name) > 80 or not set(name) <= _NAME_CHARS:
        raise FlowError(f"step name {name!r}: 1-80 characters among letters, digits and _-.+:")
    return name


def _requirements(require) -> tuple[tuple[str, str], ...]:
    """``require=("park", ("close", "success"), ("x", "failure"))``: a bare name means success."""
    if isinstance(require, str) or (isinstance(require, tuple) and len(require) == 2
                                    and all(isinstance(x, str) for x in require) and require[1] in OUTCOMES):
        require = (require,)  # one name, or one (name, outcome) pair
    out = []
    for entry in require or ():
        if isinstance(entry, str):
            entry = (entry, "success")
        if not (isinstance(entry, (tuple, list)) and len(entry) == 2 and isinstance(entry[0], str)
                and entry[1] in OUTCOMES):
            raise FlowError(f"requirement {entry!r}: a step name, or (name, outcome) with outcome one of "
                            f"{', '.join(OUTCOMES)}")
        out.append((entry[0], entry[1]))
    return tuple(out)


class Step:
    """One step: ``run`` is a function ``fn(ctx, **params)`` or the name of another loaded procedure (run with
    ``params``, validated by its schema). ``require``: the outcomes of other steps it waits for (names are
    looked up in the step's container first, then outward; ``"a/b"`` names a step inside container ``a``).
    ``telescope=True``: the step uses the devices; such steps never run at the same time."""

    def __init__(self, name: str, run: Callable | str, *, require=(), telescope: bool = False,
                 params: dict | None = None, title: str = "") -> None:
        self.name = _check_name(name)
        if not (callable(run) or isinstance(run, str)):
            raise FlowError(f"step {name!r}: run must be a function or a procedure's name")
        self.run = run
        self.require = _requirements(require)
        self.telescope = bool(telescope)
        self.params = dict(params or {})
        self.title = title

    def __repr__(self) -> str:
        return f"Step({self.name!r})"


class Group:
    """A container of steps (and of other containers). ``sequential=True``: each child waits for the success
    of the one before it. The group's ``require`` holds back every step inside it."""

    kind = "group"

    def __init__(self, name: str, *steps, require=(), sequential: bool = False, title: str = "") -> None:
        self.name = _check_name(name)
        self.steps = _children(steps, name)
        self.require = _requirements(require)
        self.sequential = bool(sequential)
        self.title = title


class Loop:
    """The same steps once per value (``for point in grid``): iteration *i* runs after iteration *i-1* has
    ended, each with its own state; inside it ``ctx.value`` is the iteration's value. ``key(value)`` names an
    iteration (default: its number from 1): a recovery run skips the iterations whose steps all succeeded
    with the same value. ``sequential`` (default True): the body's steps one after the other. ``overlap=True``:
    an iteration does not wait for the previous one to end; its steps start as their requirements and the
    telescope allow, iteration by iteration (a point's plate-solve runs while the telescope goes to the next
    point)."""

    kind = "loop"

    def __init__(self, name: str, values, *steps, require=(), key: Callable | None = None,
                 sequential: bool = True, overlap: bool = False, title: str = "") -> None:
        import json

        self.name = _check_name(name)
        self.values = list(values)
        try:
            json.dumps(self.values)
        except (TypeError, ValueError) as exc:
            raise FlowError(f"loop {name!r}: its values must be JSON values (numbers, strings, lists...)") from exc
        self.steps = _children(steps, name)
        self.require = _requirements(require)
        self.sequential = bool(sequential)
        self.overlap = bool(overlap)
        self.title = title
        self.keys = [_check_name(str(key(v)) if key else str(i)) for i, v in enumerate(self.values, start=1)]
        if len(set(self.keys)) != len(self.keys):
            raise FlowError(f"loop {name!r}: two iterations have the same key")


def _children(steps, where: str) -> tuple:
    if len(steps) == 1 and isinstance(steps[0], (list, tuple)):
        steps = tuple(steps[0])
    names = set()
    for s in steps:
        if not isinstance(s, (Step, Group, Loop)):
            raise FlowError(f"{where}: {s!r} is not a Step, Group or Loop")
        if s.name in names:
            raise FlowError(f"{where}: two steps are named {s.name!r}")
        names.add(s.name)
    if not steps:
        raise FlowError(f"{where}: no step")
    return tuple(steps)


class Flow:
    """What a flow procedure returns: its steps. Steps without dependencies between them run at the same time,
    at most ``max_concurrent`` (threads of the worker); steps with ``telescope=True`` one at a time.
    ``stop_on_failure`` (default): once a step fails, no new step starts (except those that require a
    failure or any outcome: clean-up), the running ones finish, and the item ends failed; a recovery run
    goes on from there. ``sequential=True``: each top-level step waits for the success of the previous one."""

    def __init__(self, *steps, max_concurrent: int = 4, stop_on_failure: bool = True,
                 sequential: bool = False) -> None:
        if not isinstance(max_concurrent, int) or not 1 <= max_concurrent <= 64:
            raise FlowError("max_concurrent must be an integer from 1 to 64")
        self.steps = _children(steps, "flow")
        self.max_concurrent = max_concurrent
        self.stop_on_failure = bool(stop_on_failure)
        self.sequential = bool(sequential)
        self.name = ""
