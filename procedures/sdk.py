"""What a procedure module imports (no Django): the ``@procedure`` decorator, ``Param`` for units and
bounds, and the exceptions. A procedure is a function ``def name(ctx, *, param: type = default, ...)``;
``ctx`` is the :class:`procedures.context.ProcedureContext` the worker gives it (devices, progress, abort,
logger, publish, frames). See CONTRIBUTING.md, "Writing a procedure".

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
    minimum: float | None = None
    maximum: float | None = None


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
