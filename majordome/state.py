"""The one writer of the observatory state (``ObservatoryState``): every change bumps ``version`` (live
clients skip unchanged data) and is logged with its reason. Only the majordome imports this module."""

from __future__ import annotations

import logging

from django.db.models import F
from django.utils import timezone

from majordome import selectors
from pyrosapp.models import ObservatoryState

log = logging.getLogger("pyros.majordome")

StopKind = ObservatoryState.StopKind


def state_update(state: ObservatoryState, *, reason: str, only_if: dict | None = None, quiet: bool = False,
                 **changes) -> bool:
    """Apply ``changes`` (conditionally on ``only_if``), bump the version, log the reason."""
    qs = ObservatoryState.objects.filter(pk=state.pk, **(only_if or {}))
    n = qs.update(**changes, version=F("version") + 1, updated=timezone.now())
    if n:
        for key, value in changes.items():
            setattr(state, key, value)
        if not quiet:
            shown = {k: (v.pk if hasattr(v, "pk") else v) for k, v in changes.items() if k not in ("progress",)}
            # The observatory's state is public: astronomers read these lines too (dashboard, /api/logs/).
            log.info("observatory %s: %s", ", ".join(f"{k}={v}" for k, v in shown.items()), reason,
                     extra={"public": True})
    return bool(n)


def request_stop_of(state: ObservatoryState, *, sequence_id: int, reason: str, kind: str) -> None:
    """Flag ``sequence_id`` to stop: its executor's watcher sees the flag within a fraction of a second.
    ``kind`` says whether the sequence is planned again (interrupt) or ends (end)."""
    state_update(state, reason=f"stop of sequence {sequence_id} requested ({kind}): {reason}",
                 abort_sequence_id=sequence_id, abort_reason=reason[:300], abort_kind=kind)


def request_stop_current(*, reason: str, kind: str, state: ObservatoryState | None = None) -> int | None:
    """Flag the running sequence to stop; returns its id (None when nothing runs)."""
    state = state or selectors.observatory_state()
    running = selectors.executing_sequence()
    if running is None:
        request_stop_procedure(state, reason=reason, kind=kind)
        return None
    request_stop_of(state, sequence_id=running.pk, reason=reason, kind=kind)
    return running.pk


def request_stop_procedure(state: ObservatoryState, *, reason: str, kind: str) -> bool:
    """Flag the procedure that holds the telescope (``progress.kind == "procedure"``) to stop: the same
    columns as a sequence's stop, with no sequence id. Its worker's watcher sees the flag within a fraction
    of a second and aborts the devices. Returns whether a procedure held the telescope."""
    n = ObservatoryState.objects.filter(pk=state.pk, progress__kind="procedure").update(
        abort_sequence_id=None, abort_reason=reason[:300], abort_kind=kind, version=F("version") + 1,
        updated=timezone.now())
    if n:
        log.info("stop of the running procedure requested (%s): %s", kind, reason)
    return bool(n)
