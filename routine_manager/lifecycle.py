"""The request and sequence state machines, as explicit transition tables (pure: no Django).

Services apply a transition with ``Model.objects.filter(pk=pk, status=old).update(status=new)`` and
check the row count, so two workers can never both move the same row (see ``services.py``).

Request statuses::

    draft -> submitted -> scheduled -> executing -> completed | partially_completed | failed
    (any non-final) -> cancelled ; submitted | scheduled -> expired (windows passed)

A request with several sequences goes back from ``executing`` to ``scheduled``/``submitted`` when one
sequence is done and others wait; its status is the roll-up of its sequences' statuses
(:func:`request_status_for_sequences`).
"""

from __future__ import annotations

from collections.abc import Iterable

DRAFT = "draft"
SUBMITTED = "submitted"
SCHEDULED = "scheduled"
EXECUTING = "executing"
COMPLETED = "completed"
PARTIALLY_COMPLETED = "partially_completed"
FAILED = "failed"
CANCELLED = "cancelled"
EXPIRED = "expired"

# Sequence-only statuses.
PENDING = "pending"
PLANNED = "planned"
UNPLANNED = "unplanned"

REQUEST_FINAL = frozenset({COMPLETED, PARTIALLY_COMPLETED, FAILED, CANCELLED, EXPIRED})

REQUEST_TRANSITIONS: dict[str, frozenset[str]] = {
    DRAFT: frozenset({SUBMITTED, CANCELLED}),
    # An alert may be executed before any schedule includes it (pre-emption): submitted -> executing.
    SUBMITTED: frozenset({SCHEDULED, EXECUTING, CANCELLED, EXPIRED, FAILED}),
    SCHEDULED: frozenset({SUBMITTED, EXECUTING, CANCELLED, EXPIRED, FAILED}),
    # Back to scheduled/submitted when one sequence ended and others still wait for their turn.
    EXECUTING: frozenset({SCHEDULED, SUBMITTED, COMPLETED, PARTIALLY_COMPLETED, FAILED, CANCELLED}),
    COMPLETED: frozenset(),
    PARTIALLY_COMPLETED: frozenset(),
    FAILED: frozenset(),
    CANCELLED: frozenset(),
    EXPIRED: frozenset(),
}

SEQUENCE_FINAL = frozenset({COMPLETED, PARTIALLY_COMPLETED, FAILED, CANCELLED, EXPIRED})
SEQUENCE_WAITING = frozenset({PENDING, PLANNED, UNPLANNED})
# Not started and not final: what an update of an alert may still change.
SEQUENCE_OPEN = frozenset({DRAFT}) | SEQUENCE_WAITING
# Executed, whatever the result (the schedule's history shows these).
SEQUENCE_EXECUTED = frozenset({COMPLETED, PARTIALLY_COMPLETED, FAILED})
# Requests whose waiting sequences the scheduler plans (an executing request may have others waiting).
REQUEST_SCHEDULABLE = frozenset({SUBMITTED, SCHEDULED, EXECUTING})

SEQUENCE_TRANSITIONS: dict[str, frozenset[str]] = {
    DRAFT: frozenset({PENDING, CANCELLED}),
    PENDING: frozenset({PLANNED, UNPLANNED, EXECUTING, CANCELLED, EXPIRED}),
    PLANNED: frozenset({PENDING, UNPLANNED, EXECUTING, CANCELLED, EXPIRED}),
    UNPLANNED: frozenset({PENDING, PLANNED, EXECUTING, CANCELLED, EXPIRED}),
    # Pre-empted by an alert or interrupted by the weather: back to pending, to be planned again.
    EXECUTING: frozenset({PENDING, COMPLETED, PARTIALLY_COMPLETED, FAILED, CANCELLED}),
    COMPLETED: frozenset(),
    PARTIALLY_COMPLETED: frozenset(),
    FAILED: frozenset(),
    CANCELLED: frozenset(),
    EXPIRED: frozenset(),
}

CANCELLABLE = frozenset({DRAFT, SUBMITTED, SCHEDULED, EXECUTING})


class InvalidStateChange(Exception):
    """A transition the table does not allow, or a row that another process moved first."""

    def __init__(self, kind: str, old: str, new: str, detail: str = "") -> None:
        self.kind, self.old, self.new = kind, old, new
        message = f"a {kind} cannot go from {old!r} to {new!r}"
        super().__init__(f"{message}: {detail}" if detail else message)


def check_request_transition(old: str, new: str) -> None:
    if new not in REQUEST_TRANSITIONS.get(old, frozenset()):
        raise InvalidStateChange("request", old, new)


def check_sequence_transition(old: str, new: str) -> None:
    if new not in SEQUENCE_TRANSITIONS.get(old, frozenset()):
        raise InvalidStateChange("sequence", old, new)


def request_status_for_sequences(statuses: Iterable[str]) -> str | None:
    """The request status implied by its sequences' statuses (None when there are no sequences).

    Running beats waiting, waiting beats done; once all are done: all completed -> completed, none
    completed -> failed / expired / cancelled (the most common), else partially completed.
    """
    statuses = list(statuses)
    if not statuses:
        return None
    if EXECUTING in statuses:
        return EXECUTING
    if all(status == DRAFT for status in statuses):
        return DRAFT
    waiting = [status for status in statuses if status in SEQUENCE_WAITING]
    if waiting:
        return SCHEDULED if PLANNED in waiting else SUBMITTED
    if all(status == COMPLETED for status in statuses):
        return COMPLETED
    if any(status in {COMPLETED, PARTIALLY_COMPLETED} for status in statuses):
        return PARTIALLY_COMPLETED
    for final in (CANCELLED, EXPIRED, FAILED):
        if all(status == final for status in statuses):
            return final
    return FAILED
