"""What runs next: the pre-empting sequence first, else the first planned entry that is due; claimed with
a conditional update so that two callers cannot both start it, then sent to the execution worker."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from common.messages import send_after_commit
from majordome import selectors
from majordome import state_machine as sm
from majordome.state import state_update
from pyrosapp.models import ObservatoryState
from routine_manager.services import sequence_claim_for_execution

log = logging.getLogger("pyros.majordome")


def majordome_wake(*, reason: str) -> None:
    """Decide now (not at the next tick) whether to start something; after commit."""
    transaction.on_commit(lambda: majordome_dispatch(reason=reason))


def majordome_dispatch(*, reason: str, now: datetime | None = None) -> str | None:
    """Start the next sequence if the observatory may. Returns what it did (None: nothing)."""
    now = now or timezone.now()
    with transaction.atomic():
        state = ObservatoryState.objects.select_for_update().select_related("site").get(
            pk=selectors.observatory_state().pk)
        busy = selectors.executor_busy(state, now)
        entry = None if state.preempt_sequence_id else selectors.next_due_entry(now)
        ok, why = sm.may_dispatch(sm.DispatchInputs(
            phase=state.phase, mode=state.mode, safety=state.safety, executor_busy=busy,
            has_preempt=state.preempt_sequence_id is not None, next_entry_due=entry is not None))
        if not ok:
            return None
        sequence_id = state.preempt_sequence_id or entry.sequence_id
        token = sequence_claim(sequence_id=sequence_id, now=now)
        if token is None:
            if state.preempt_sequence_id:
                state_update(state, reason=f"pre-empting sequence {sequence_id} is no longer runnable",
                             preempt_sequence=None)
            return None
        state_update(state, reason=f"dispatching sequence {sequence_id} ({why}; {reason})", preempt_sequence=None,
                     current_sequence_id=sequence_id, abort_sequence_id=None, abort_reason="", abort_kind="",
                     progress={"kind": "sequence", "sequence": sequence_id, "token": token,
                               "heartbeat": now.isoformat(), "step": "dispatched"})
        send_after_commit("pyros.majordome.execute_sequence", sequence_id=sequence_id, token=token)
    return f"dispatched sequence {sequence_id}"


def sequence_claim(*, sequence_id: int, now: datetime | None = None) -> str | None:
    """Mark a waiting sequence executing under a new token (None if it is not waiting any more:
    another dispatcher or a cancellation got there first); its request follows."""
    token = uuid.uuid4().hex
    return token if sequence_claim_for_execution(sequence_id=sequence_id, token=token, now=now) else None


def calibrations_dispatch(state: ObservatoryState, *, when: str, now: datetime) -> None:
    token = uuid.uuid4().hex
    state_update(state, reason=f"{when} calibrations dispatched",
                 progress={"kind": "calibration", "token": token, "heartbeat": now.isoformat(), "when": when})
    send_after_commit("pyros.majordome.run_calibrations", when=when, token=token)
