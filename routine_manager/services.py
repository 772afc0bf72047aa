"""Writes of the request lifecycle: submit, cancel, clone, expire, status changes from other apps.

Every status change goes through the transition tables of :mod:`routine_manager.lifecycle`, applied
with a conditional UPDATE (``filter(pk=..., status=old).update(status=new)``) whose row count tells
whether another process moved the row first. Allocation bookkeeping: submitting reserves the estimated
duration on the program's current allocation; execution moves time from reserved to used; cancelling
or expiring refunds what is still reserved.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Greatest
from django.urls import reverse
from django.utils import timezone

from common import notifications
from common.messages import send_after_commit
from pyrosapp.models import Allocation, Request, Sequence, User
from routine_manager.builder import RequestInvalid
from routine_manager.request_json import builder_from_api_data, builder_from_request

from . import lifecycle
from .selectors import allocation_current

log = logging.getLogger("pyros.routine_manager")


# --- The two messages to apps above this one (layer order: never an import) ---------------------
def _ask_majordome_to_abort(*, sequence_id: int, reason: str) -> None:
    """Ask the majordome to stop a sequence that was running when its request was cancelled. Also the
    executor's watcher sees the ``cancelled`` row within a second and stops by itself."""
    send_after_commit("pyros.majordome.sequence_withdrawn", sequence_id=sequence_id, reason=reason[:300])


def _ask_scheduler_to_replan(*, reason: str) -> None:
    """Tell the scheduler the set of schedulable sequences changed: its debounced run (2 s later; it
    skips itself when a plan made since has seen this change)."""
    send_after_commit("pyros.scheduler.make_schedule", countdown_s=2.0, reason=reason[:200],
                      requested_at=timezone.now().isoformat(), site_id=None)


# --- Transitions --------------------------------------------------------------------------------
def _move_request(request_id: int, old: str, new: str, **fields) -> None:
    lifecycle.check_request_transition(old, new)
    if not Request.objects.filter(pk=request_id, status=old).update(status=new, updated=timezone.now(), **fields):
        current = Request.objects.filter(pk=request_id).values_list("status", flat=True).first()
        raise lifecycle.InvalidStateChange("request", old, new, f"it is now {current!r} (changed by someone else)")
    log.info("request %s: %s -> %s", request_id, old, new, extra={"request_id": request_id})
    _notify_owner(request_id, old, new)


# Which request transitions the owner may want to hear of (preferences on the profile page). Scheduled only
# from submitted: a request with several sequences goes executing -> scheduled between them.
_NOTIFIED_TRANSITIONS = {
    (lifecycle.SUBMITTED, lifecycle.SCHEDULED): "request_scheduled",
    (lifecycle.EXECUTING, lifecycle.COMPLETED): "request_executed",
    (lifecycle.EXECUTING, lifecycle.PARTIALLY_COMPLETED): "request_executed",
}


def _notify_owner(request_id: int, old: str, new: str) -> None:
    kind = _NOTIFIED_TRANSITIONS.get((old, new))
    if kind is None and new in (lifecycle.FAILED, lifecycle.EXPIRED):
        kind = "request_failed"
    if kind is None:
        return
    row = Request.objects.filter(pk=request_id).values("owner_id", "name", "status_reason", "is_alert").first()
    if row is None or row["is_alert"]:
        return  # alert requests belong to the alert program's PI: GRB notifications tell them
    verdict = new.replace("_", " ")
    notifications.notify(
        kind, subject=f"request {row['name']!r} {verdict}",
        body=f"Your request {row['name']!r} (#{request_id}) is now {verdict}"
             + (f": {row['status_reason']}" if row["status_reason"] else "") + ".",
        link=reverse("routine_manager:request_detail", args=[request_id]), user_ids=[row["owner_id"]])


def _move_sequence(sequence_id: int, old: str, new: str, **fields) -> None:
    lifecycle.check_sequence_transition(old, new)
    if not Sequence.objects.filter(pk=sequence_id, status=old).update(status=new, **fields):
        current = Sequence.objects.filter(pk=sequence_id).values_list("status", flat=True).first()
        raise lifecycle.InvalidStateChange("sequence", old, new, f"it is now {current!r} (changed by someone else)")


def _refund(request: Request) -> float:
    """Give the request's remaining reservation back to its allocation. Returns the seconds refunded."""
    refund_s = request.reserved_s
    if refund_s > 0 and request.allocation_id:
        Allocation.objects.filter(pk=request.allocation_id).update(
            reserved_s=Greatest(F("reserved_s") - Value(refund_s), Value(0.0)))
    Request.objects.filter(pk=request.pk).update(reserved_s=0.0)
    request.reserved_s = 0.0
    return refund_s


def request_mark_submitted(*, request: Request, duration_s: float, now: datetime | None = None) -> None:
    """draft -> submitted, reserving ``duration_s`` on the program's allocation. Call inside a transaction
    after validation (``RequestBuilder.save`` and :func:`request_submit` do)."""
    now = now or timezone.now()
    allocation = None
    current = allocation_current(program=request.program, now=now)
    if current is not None:
        # Lock the allocation row: two submissions at once must not both spend the last hour.
        allocation = Allocation.objects.select_for_update().get(pk=current.pk)
        if not request.is_alert and duration_s > allocation.remaining_s + 1e-6:
            raise RequestInvalid({"program": [
                f"This request needs {duration_s / 3600:.2f} h but only "
                f"{max(0.0, allocation.remaining_s) / 3600:.2f} h remain on program {request.program.name!r}."]})
        Allocation.objects.filter(pk=allocation.pk).update(reserved_s=F("reserved_s") + duration_s)
    elif not request.is_alert:
        # Alerts are never refused for want of allocation: a burst does not wait for paperwork.
        raise RequestInvalid({"program": [f"Program {request.program.name!r} has no time allocated now."]})
    _move_request(request.pk, lifecycle.DRAFT, lifecycle.SUBMITTED, submitted_at=now, reserved_s=duration_s,
                  estimated_duration_s=duration_s, allocation=allocation)
    Sequence.objects.filter(request=request, status=lifecycle.DRAFT).update(status=lifecycle.PENDING)
    _ask_scheduler_to_replan(reason=f"request {request.pk} submitted")
    log.info("request %s %r submitted (%.0f s reserved)", request.pk, request.name, duration_s,
             extra={"request_id": request.pk})


def request_submit(*, request: Request, now: datetime | None = None, check_observability: bool = True) -> Request:
    """Validate a saved draft fully and submit it. Raises RequestInvalid (nothing changes) or InvalidStateChange."""
    now = now or timezone.now()
    if request.status != lifecycle.DRAFT:
        raise lifecycle.InvalidStateChange("request", request.status, lifecycle.SUBMITTED)
    builder = builder_from_request(request)
    report = builder.validate(now=now, check_observability=check_observability)
    if not report.valid:
        raise RequestInvalid(report.errors)
    with transaction.atomic():
        sequences = list(request.sequences.select_for_update().order_by("order", "id"))
        for sequence, checked in zip(sequences, report.sequences, strict=True):
            Sequence.objects.filter(pk=sequence.pk).update(estimated_duration_s=checked.duration_s or 0.0)
        request_mark_submitted(request=request, duration_s=report.duration_s or 0.0, now=now)
    request.refresh_from_db()
    return request


def request_cancel(*, request: Request, reason: str = "", now: datetime | None = None) -> Request:
    """Cancel a request that is not finished: its waiting and running sequences are cancelled, the
    majordome is asked to abort a running one, and the unused reserved time goes back to the program."""
    reason = (reason or "cancelled by its owner")[:500]
    with transaction.atomic():
        request = Request.objects.select_for_update().get(pk=request.pk)
        if request.status not in lifecycle.CANCELLABLE:
            raise lifecycle.InvalidStateChange("request", request.status, lifecycle.CANCELLED,
                                               "only draft, submitted, scheduled or executing requests can be cancelled")
        _move_request(request.pk, request.status, lifecycle.CANCELLED, status_reason=reason)
        for sequence in request.sequences.select_for_update():
            if sequence.status in lifecycle.SEQUENCE_FINAL:
                continue
            if sequence.status == lifecycle.EXECUTING:
                # Asked in the same transaction, while the row still says "executing" (the majordome
                # only aborts a running sequence): both changes commit, or neither.
                _ask_majordome_to_abort(sequence_id=sequence.pk, reason=reason)
            _move_sequence(sequence.pk, sequence.status, lifecycle.CANCELLED, status_reason=reason)
        refunded_s = _refund(request)
        _ask_scheduler_to_replan(reason=f"request {request.pk} cancelled")
    log.info("request %s cancelled (%s); %.0f s refunded to %s", request.pk, reason, refunded_s, request.program,
             extra={"request_id": request.pk})
    request.refresh_from_db()
    return request


def request_clone(*, request: Request, owner: User) -> Request:
    """A new draft with the same sequences, albums and plans (windows unchanged: edit them before submitting)."""
    name = f"{request.name} (copy)"[:200]
    builder = builder_from_request(request, owner=owner, name=name)
    return builder.save(submit=False)


def requests_expire(*, now: datetime | None = None) -> int:
    """Expire the waiting sequences whose windows have closed, then roll their requests up. Returns how
    many requests reached a final status."""
    now = now or timezone.now()
    finished = 0
    stale = (Sequence.objects.filter(status__in=lifecycle.SEQUENCE_WAITING, window_end__lte=now)
             .values_list("request_id", flat=True).distinct())
    for request_id in list(stale):
        with transaction.atomic():
            request = Request.objects.select_for_update().get(pk=request_id)
            for sequence in request.sequences.filter(status__in=lifecycle.SEQUENCE_WAITING, window_end__lte=now):
                _move_sequence(sequence.pk, sequence.status, lifecycle.EXPIRED,
                               status_reason=f"window closed at {sequence.window_end:%Y-%m-%d %H:%M} UTC")
            if _roll_up(request) in lifecycle.REQUEST_FINAL:
                finished += 1
    if finished:
        log.info("%d request(s) expired or finished with expired sequences", finished)
    return finished


def _roll_up(request: Request) -> str:
    """Set the request status implied by its sequences; refund the reservation once it is final."""
    implied = lifecycle.request_status_for_sequences(request.sequences.values_list("status", flat=True))
    if implied and implied != request.status:
        reason = "windows closed" if implied == lifecycle.EXPIRED else ""
        _move_request(request.pk, request.status, implied, **({"status_reason": reason} if reason else {}))
        request.status = implied
    if request.status in lifecycle.REQUEST_FINAL:
        _refund(request)
    return request.status


# --- For the scheduler, the majordome and the executor ------------------------------------------
def request_set_status(*, request_id: int, status: str, reason: str = "") -> None:
    """Move a request (checked against the transition table; InvalidStateChange if not allowed)."""
    with transaction.atomic():
        request = Request.objects.select_for_update().get(pk=request_id)
        _move_request(request_id, request.status, status, **({"status_reason": reason[:500]} if reason else {}))
        if status in lifecycle.REQUEST_FINAL:
            _refund(request)


def sequence_set_status(*, sequence_id: int, status: str, reason: str = "", **fields) -> None:
    """Move a sequence, then its request to the status its sequences imply.

    ``fields`` may set planned_start, planned_end, started_at, ended_at with the status (one UPDATE).
    """
    allowed = {"planned_start", "planned_end", "started_at", "ended_at"}
    unknown = set(fields) - allowed
    if unknown:
        raise TypeError(f"unexpected fields {sorted(unknown)}")
    with transaction.atomic():
        sequence = Sequence.objects.select_for_update().get(pk=sequence_id)
        request = Request.objects.select_for_update().get(pk=sequence.request_id)
        _move_sequence(sequence_id, sequence.status, status, **fields,
                       **({"status_reason": reason[:500]} if reason else {}))
        _roll_up(request)


def request_refresh_status(*, request_id: int) -> None:
    """Move a request to the status its sequences imply (executing when one runs...)."""
    with transaction.atomic():
        request = Request.objects.select_for_update().get(pk=request_id)
        try:
            _roll_up(request)
        except lifecycle.InvalidStateChange as exc:
            log.info("request %s stays %s: %s", request_id, request.status, exc, extra={"request_id": request_id})


# --- Execution: the majordome claims, releases and ends sequences through these ---------------------
def sequence_claim_for_execution(*, sequence_id: int, token: str, now: datetime | None = None) -> bool:
    """A waiting sequence becomes ``executing`` under ``token`` (False when it is not waiting any more:
    another dispatcher or a cancellation got there first); its request follows."""
    now = now or timezone.now()
    for old in lifecycle.SEQUENCE_WAITING:
        lifecycle.check_sequence_transition(old, lifecycle.EXECUTING)
    claimed = Sequence.objects.filter(pk=sequence_id, status__in=lifecycle.SEQUENCE_WAITING).update(
        status=lifecycle.EXECUTING, execution_token=token, execution_heartbeat=now, started_at=now, status_reason="")
    if not claimed:
        return False
    request_refresh_status(request_id=Sequence.objects.values_list("request_id", flat=True).get(pk=sequence_id))
    return True


def sequence_mark_planned(*, sequence_id: int) -> bool:
    """A waiting sequence that must run next (pre-emption) shows as planned."""
    moved = Sequence.objects.filter(pk=sequence_id, status__in=[lifecycle.PENDING, lifecycle.UNPLANNED]).update(
        status=lifecycle.PLANNED)
    return bool(moved)


def sequence_release(*, sequence_id: int, token: str, reason: str) -> bool:
    """An execution whose executor was lost: the sequence waits again (its completed plans are kept)."""
    lifecycle.check_sequence_transition(lifecycle.EXECUTING, lifecycle.PENDING)
    with transaction.atomic():
        moved = Sequence.objects.filter(pk=sequence_id, status=lifecycle.EXECUTING, execution_token=token).update(
            status=lifecycle.PENDING, status_reason=reason[:500], execution_token="")
        if moved:
            request_refresh_status(request_id=Sequence.objects.values_list("request_id", flat=True).get(pk=sequence_id))
    return bool(moved)


def sequence_end_execution(*, sequence_id: int, token: str, status: str, reason: str = "",
                           device_retry: bool = False, now: datetime | None = None) -> str:
    """The end of one execution: ``status`` is final, or ``pending`` when the sequence is to be planned again
    (``device_retry`` counts a transient device error). Time used is charged. Returns the status reached
    (the current one when the execution no longer owned the sequence: a cancellation got there first)."""
    now = now or timezone.now()
    seq = Sequence.objects.get(pk=sequence_id)
    used_s = (now - seq.started_at).total_seconds() if seq.started_at else 0.0
    reached = seq.status
    if seq.status == lifecycle.EXECUTING and (not token or seq.execution_token == token):
        try:
            sequence_set_status(sequence_id=sequence_id, status=status,
                                reason=reason or ("" if status == lifecycle.COMPLETED else "stopped"),
                                ended_at=now)
            reached = status
        except lifecycle.InvalidStateChange as exc:
            log.warning("sequence %s: %s", sequence_id, exc)
        Sequence.objects.filter(pk=sequence_id).update(
            execution_token="", **({"device_retries": F("device_retries") + 1} if device_retry else {}))
    if used_s > 0:
        sequence_record_time_used(sequence_id=sequence_id, used_s=used_s)
    return reached


def sequence_record_time_used(*, sequence_id: int, used_s: float) -> None:
    """Charge telescope time actually spent: moves it from the request's reservation to used time."""
    if used_s <= 0:
        return
    with transaction.atomic():
        sequence = Sequence.objects.select_for_update().get(pk=sequence_id)
        request = Request.objects.select_for_update().get(pk=sequence.request_id)
        from_reserved_s = min(request.reserved_s, used_s)
        Sequence.objects.filter(pk=sequence_id).update(used_s=F("used_s") + used_s)
        Request.objects.filter(pk=request.pk).update(used_s=F("used_s") + used_s,
                                                     reserved_s=F("reserved_s") - from_reserved_s)
        if request.allocation_id:
            Allocation.objects.filter(pk=request.allocation_id).update(
                used_s=F("used_s") + used_s, reserved_s=Greatest(F("reserved_s") - Value(from_reserved_s), Value(0.0)))


def requests_import(*, owner: User, batch, submit: bool, now: datetime | None = None) -> list[Request]:
    """Create every request of a parsed batch (see :mod:`routine_manager.importers`), or none.

    Raises ``ImportInvalid`` with one entry per error, located by CSV row or JSON item.
    """
    from .importers import ImportInvalid, csv_column_for

    now = now or timezone.now()

    def located(index: int, errors: dict[str, list[str]]) -> list[dict[str, str]]:
        return [{"location": batch.locate(index, path),
                 "field": csv_column_for(path) if batch.kind == "csv" else path,
                 "message": message}
                for path, messages in errors.items() for message in messages]

    builders = [builder_from_api_data(data, owner=owner) for data in batch.requests]
    problems: list[dict[str, str]] = []
    for index, builder in enumerate(builders):
        report = builder.validate(now=now, submission=submit)
        problems.extend(located(index, report.errors))
    if problems:
        raise ImportInvalid(problems)
    created: list[Request] = []
    try:
        with transaction.atomic():
            for builder in builders:
                created.append(builder.save(submit=submit, now=now))
    except RequestInvalid as exc:
        # Each request fits the allocation alone but not all together: nothing was kept.
        raise ImportInvalid(located(len(created), exc.errors)) from None
    log.info("imported %d request(s) for %s (%s)", len(created), owner, "submitted" if submit else "drafts")
    return created
