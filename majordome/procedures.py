"""Who holds the telescope when the procedures queue wants it: the majordome's arbitration.

The procedures queue (layer 8) asks for the telescope before each item (``procedure_lease_acquire``); the
majordome grants it only when ``state_machine.may_run_procedure`` says so (manual mode, or a procedure block
in automatic mode; safe; no sequence running, no alert waiting; the sky the procedure needs). The lease is
``ObservatoryState.progress`` of kind ``procedure`` with a token and a heartbeat: while the heartbeat is fresh
the executor is busy, so no sequence or calibration is dispatched beside it. Stopping it (an alert's
pre-emption, unsafe weather, an operator's pause/stop/close) uses the same columns as a sequence's stop
(``state.request_stop_procedure``); the procedure's watcher reads them with ``procedure_lease_check``."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from majordome import selectors
from majordome import state_machine as sm
from majordome.dispatch import majordome_wake
from majordome.state import state_update
from pyrosapp.models import ObservatoryState

log = logging.getLogger("pyros.majordome")


@dataclass(frozen=True)
class LeaseStop:
    reason: str
    kind: str  # ObservatoryState.StopKind: interrupt (pre-emption, weather, pause) or end (abort)


def procedure_may_run(*, sky: str, in_block: bool, state: ObservatoryState | None = None,
                      now: datetime | None = None) -> tuple[bool, str]:
    state = state or selectors.observatory_state()
    return sm.may_run_procedure(sm.ProcedureInputs(
        phase=state.phase, mode=state.mode, safety=state.safety,
        executor_busy=selectors.executor_busy(state, now or timezone.now()),
        has_preempt=state.preempt_sequence_id is not None, sky=sky, in_block=in_block))


def procedure_lease_acquire(*, item_id: int, name: str, sky: str, in_block: bool,
                            now: datetime | None = None) -> tuple[str | None, str]:
    """Give the telescope to procedure item ``item_id`` if the rules allow. Returns (token, why): a token
    when granted (None otherwise) and the reason."""
    now = now or timezone.now()
    with transaction.atomic():
        state = ObservatoryState.objects.select_for_update().select_related("site").get(
            pk=selectors.observatory_state().pk)
        ok, why = procedure_may_run(sky=sky, in_block=in_block, state=state, now=now)
        if not ok:
            return None, why
        token = uuid.uuid4().hex
        state_update(state, reason=f"procedure {name} (queue item {item_id}) takes the telescope ({why})",
                     abort_sequence_id=None, abort_reason="", abort_kind="",
                     progress={"kind": "procedure", "item": item_id, "name": name, "token": token,
                               "heartbeat": now.isoformat(), "step": "starting"})
    return token, why


def procedure_lease_heartbeat(*, token: str, current: float | None = None, total: float | None = None,
                              message: str = "") -> bool:
    """Refresh the lease (every ~2 s, with the progress shown on the dashboard). False: the lease is lost."""
    state = selectors.observatory_state()
    progress = dict(state.progress or {}) if (state.progress or {}).get("token") == token else None
    if progress is None:
        return False
    progress.update(heartbeat=timezone.now().isoformat(), current=current, total=total, step=message[:200])
    return bool(ObservatoryState.objects.filter(pk=state.pk, progress__token=token).update(
        progress=progress, version=F("version") + 1))


def procedure_lease_check(*, token: str) -> LeaseStop | None:
    """Whether the procedure holding ``token`` must stop (None: it may go on)."""
    row = (ObservatoryState.objects.filter(site__is_active=True, progress__token=token)
           .values("abort_sequence_id", "abort_reason", "abort_kind").first())
    if row is None:
        return LeaseStop("the telescope was taken back by the majordome", ObservatoryState.StopKind.INTERRUPT)
    if row["abort_kind"] and row["abort_sequence_id"] is None:
        return LeaseStop(row["abort_reason"] or "stopped", row["abort_kind"])
    return None


def procedure_lease_release(*, token: str, reason: str) -> bool:
    """Give the telescope back; the majordome decides at once what runs next (an alert sequence may wait)."""
    n = ObservatoryState.objects.filter(progress__token=token).update(
        progress={}, abort_reason="", abort_kind="", version=F("version") + 1, updated=timezone.now())
    if n:
        log.info("procedure gave the telescope back: %s", reason)
        majordome_wake(reason="procedure ended")
    return bool(n)
