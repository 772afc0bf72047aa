"""Writes of the alert manager: store a packet, process it (parse, triage, group, act), retract.

Latency path (``alert_process``): claim the row -> parse (~0.1 ms) -> store the parsed fields ->
group under the grouping lock -> (actionable, observable now) point the telescope -> build the request
-> pre-empt -> replan. Timestamps of each step go into ``Alert.timings`` (unix seconds) for the benchmark.
Commits of processing do not wait for the disk (``_asynchronous_commits``).

Bulk path (``_process_quiet``): consecutive alerts that cannot point the telescope by themselves (test
packets, not-a-GRB, no usable position, error beyond the strategy...) are grouped and decided together in
one transaction, with the same outcome as alert by alert (tested over the whole corpus).

Concurrency: the alerts worker runs 4 threads and a burst of one event brings several notices
within seconds. Grouping runs in a transaction holding one global lock (a PostgreSQL advisory
lock; SQLite's IMMEDIATE transactions already hold the write lock from BEGIN), because a notice
may join an event through another mission's time coincidence: no narrower key exists. It lasts a
few milliseconds. The request of an event is built under ``select_for_update`` of the event row,
so two notices of one burst never build two requests.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.sax.saxutils import unescape

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone

from alert_manager import strategies
from alert_manager.grouping import (
    DEFAULT_TIME_TOLERANCE_S,
    CandidateEvent,
    SkyPosition,
    carries_t0,
    event_from_notice,
    event_with_notice,
    group_notice,
    needs_repoint,
)
from alert_manager.triage import TriageDecision, triage, visibility
from alert_manager.voevent import MAX_PACKET_BYTES, ParsedNotice, VOEventRejected, parse_voevent
from pyrosapp.models import Alert, AlertEvent, Request, Sequence, Strategy

log = logging.getLogger("pyros.alert_manager")

# Any constant: the key of the PostgreSQL advisory lock serialising grouping decisions.
GROUPING_LOCK_KEY = 0x50_59_52_4F_53_07  # "PYROS" 7
# Candidate events for a time coincidence: the pure grouping's tolerance, and a bound on how many are loaded.
COINCIDENCE_WINDOW = timedelta(seconds=DEFAULT_TIME_TOLERANCE_S)
MAX_COINCIDENT_CANDIDATES = 50
# Stored raw bytes of a packet too large to parse: enough to see what it was.
OVERSIZE_KEEP_BYTES = 64 * 1024
PENDING_AFTER_S = 30.0  # a row still `received` after this was not queued (broker down): queue it again
STUCK_AFTER_S = 300.0  # a row `processing` this long lost its worker (task limit is 90 s)
VISIBILITY_HOURS = 24.0

_IVORN_ATTR_RE = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?VOEvent\b[^>]{0,4000}?\bivorn\s*=\s*([\"'])([^\"'<>]{1,500})\1",
                            re.DOTALL)
_FINAL_REQUEST_STATES = {Request.Status.COMPLETED, Request.Status.PARTIALLY_COMPLETED, Request.Status.FAILED,
                         Request.Status.CANCELLED, Request.Status.EXPIRED}
_OPEN_SEQUENCE_STATES = {Sequence.Status.DRAFT, Sequence.Status.PENDING, Sequence.Status.PLANNED,
                         Sequence.Status.UNPLANNED}
_EVENT_OPEN_STATES = (AlertEvent.Status.NEW, AlertEvent.Status.NOT_ACTIONABLE, AlertEvent.Status.IGNORED)


def spool_dir() -> Path:
    return Path(settings.VAR_DIR) / "alert-spool"


# --- Intake (Comet's thread) ---------------------------------------------------------------------


def extract_ivorn(raw: bytes) -> str | None:
    """The root's ivorn attribute, read with a bounded regex (no XML parse on the intake path)."""
    match = _IVORN_ATTR_RE.search(raw[:16384])
    if match is None:
        return None
    try:
        text = unescape(match.group(2).decode("utf-8"), {"&quot;": '"', "&apos;": "'"}).strip()
    except UnicodeDecodeError:
        return None
    return text if text.startswith("ivo://") else None


@dataclasses.dataclass
class _Incoming:
    """One packet ready to be written: what the row will hold."""

    raw: bytes  # as received (spooled as is)
    stored: bytes  # what the row keeps (a prefix for an oversized packet)
    sha256: str
    received_unix: float
    status: str
    reason: str
    ivorn: str | None

    @property
    def received_at(self) -> datetime:
        return datetime.fromtimestamp(self.received_unix, tz=UTC)


def _incoming(raw: bytes, received_unix: float) -> _Incoming:
    status, reason, stored = Alert.Status.RECEIVED, "", raw
    if len(raw) > MAX_PACKET_BYTES:
        status = Alert.Status.REJECTED
        reason = f"packet too large: {len(raw)} bytes (limit {MAX_PACKET_BYTES}); first {OVERSIZE_KEEP_BYTES} kept"
        stored = raw[:OVERSIZE_KEEP_BYTES]
    elif not raw.strip():
        status, reason = Alert.Status.REJECTED, "empty packet"
    ivorn = extract_ivorn(raw) if status == Alert.Status.RECEIVED else None
    return _Incoming(raw=raw, stored=stored, sha256=hashlib.sha256(raw).hexdigest(), received_unix=received_unix,
                     status=status, reason=reason, ivorn=ivorn)


def alert_receive(*, raw: bytes, received_unix: float | None = None) -> int | None:
    """Persist one packet (one INSERT), then queue its processing on ``alerts``.

    A repeated IVORN keeps the first row (its ``repeats`` counter goes up). An oversized or empty
    packet is stored rejected, with a prefix of its bytes. If the database is unreachable the packet
    goes to the spool directory (``process_pending`` imports it): Comet has ACKed it already.
    """
    item = _incoming(raw, time.time() if received_unix is None else received_unix)
    alert_id, queue_it = _store_one(item)
    if queue_it:
        alert_queue(alert_id=alert_id)
    return alert_id


def _store_one(item: _Incoming) -> tuple[int | None, bool]:
    """(row id or None if spooled, whether it must be queued)."""
    try:
        alert_id = _insert_alert(raw=item.stored, sha256=item.sha256, received_at=item.received_at, ivorn=item.ivorn,
                                 status=item.status, reason=item.reason, received_unix=item.received_unix)
    except _DuplicateIvorn as dup:
        log.info("repeat of %s (alert %s): recognised, not stored again%s", item.ivorn, dup.alert_id,
                 "" if dup.same_bytes else " (different bytes)")
        return dup.alert_id, False
    except Exception as exc:  # database down: never lose an ACKed packet
        path = _spool(item.raw, item.sha256)
        log.error("could not store the packet in the database (%s): spooled to %s", exc, path)
        return None, False
    if item.status == Alert.Status.REJECTED:
        log.warning("alert %s rejected at intake: %s", alert_id, item.reason)
        return alert_id, False
    return alert_id, True


def alert_receive_many(*, packets: list[tuple[bytes, float]]) -> list[int | None]:
    """Persist several packets (raw bytes, receive unix time) in one transaction, then queue them.

    The intake's writer thread calls this with whatever waited while its previous write ran: one
    multi-row INSERT and one message per chunk instead of a transaction and a message per packet.
    Same outcome as ``alert_receive`` for each packet, in order: a repeated IVORN (already stored, or
    twice in the batch) keeps the first row and counts the repeat, bad packets are stored rejected, and
    if the database is unreachable every packet of the batch is spooled. Returns the row ids (None: spooled).
    """
    items = [_incoming(raw, received_unix) for raw, received_unix in packets]
    ivorns = [item.ivorn for item in items if item.ivorn is not None]
    ids: list[int | None]
    to_queue: list[int] = []
    if len(items) > 1 and len(set(ivorns)) == len(ivorns):
        try:
            with transaction.atomic():
                rows = Alert.objects.bulk_create([
                    Alert(ivorn=item.ivorn, raw_xml=item.stored, sha256=item.sha256, received_at=item.received_at,
                          status=item.status, status_reason=item.reason[:500], timings={"received": item.received_unix},
                          processed_at=item.received_at if item.status == Alert.Status.REJECTED else None)
                    for item in items])
        except IntegrityError:
            rows = None  # one of them repeats an IVORN stored earlier: one by one below says which
        except Exception as exc:  # database down: never lose an ACKed packet
            for item in items:
                path = _spool(item.raw, item.sha256)
                log.error("could not store the packet in the database (%s): spooled to %s", exc, path)
            return [None] * len(items)
        if rows is not None:
            ids = [row.pk for row in rows]
            for item, alert_id in zip(items, ids, strict=True):
                if item.status == Alert.Status.REJECTED:
                    log.warning("alert %s rejected at intake: %s", alert_id, item.reason)
                else:
                    to_queue.append(alert_id)
            alert_queue_many(alert_ids=to_queue)
            return ids
    # One packet, or a repeat in the batch: row by row (the repeat logic of a single packet).
    ids = []
    for item in items:
        alert_id, queue_it = _store_one(item)
        ids.append(alert_id)
        if queue_it:
            to_queue.append(alert_id)
    alert_queue_many(alert_ids=to_queue)
    return ids


class _DuplicateIvorn(Exception):
    def __init__(self, alert_id: int, same_bytes: bool) -> None:
        super().__init__(alert_id)
        self.alert_id = alert_id
        self.same_bytes = same_bytes


def _insert_alert(*, raw: bytes, sha256: str, received_at: datetime, ivorn: str | None, status: str, reason: str,
                  received_unix: float) -> int:
    try:
        with transaction.atomic():
            alert = Alert.objects.create(
                ivorn=ivorn, raw_xml=raw, sha256=sha256, received_at=received_at, status=status,
                status_reason=reason[:500], timings={"received": received_unix},
                processed_at=received_at if status == Alert.Status.REJECTED else None,
            )
        return alert.pk
    except IntegrityError:
        if ivorn is None:
            raise
        existing = Alert.objects.filter(ivorn=ivorn).values_list("pk", "sha256").first()
        if existing is None:
            raise
        Alert.objects.filter(pk=existing[0]).update(repeats=F("repeats") + 1)
        raise _DuplicateIvorn(existing[0], existing[1] == sha256) from None


def _spool(raw: bytes, sha256: str) -> Path:
    folder = spool_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{time.time_ns()}-{sha256[:16]}.xml"
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(raw)
    tmp.replace(target)  # atomic: the importer never sees half a packet
    return target


def alerts_queue_override() -> str | None:
    """``PYROS_ALERTS_QUEUE``: consume/publish alerts on another queue than ``alerts`` (set by the end-to-end
    test and the benchmark so that their worker does not share a queue with other runs on one RabbitMQ)."""
    return os.environ.get("PYROS_ALERTS_QUEUE") or None


def alert_queue(*, alert_id: int) -> bool:
    """Queue processing on ``alerts``; False (row stays `received`, picked up later) if the broker is down."""
    from alert_manager.tasks import process_alert

    options = {"queue": queue} if (queue := alerts_queue_override()) else {}
    try:
        # Bounded retry: this runs in Comet's thread pool, it must not hang on a dead broker.
        process_alert.apply_async(kwargs={"alert_id": alert_id}, **options, retry=True,
                                  retry_policy={"max_retries": 1, "interval_start": 0.1, "interval_step": 0.1,
                                                "interval_max": 0.2})
    except Exception as exc:  # noqa: BLE001 - any broker failure: the periodic task recovers the row
        log.warning("alert %s stored but not queued (%s): process_pending will queue it", alert_id, exc)
        return False
    return True


# Ids per `process_alerts` message: small enough that the worker's 4 threads share a burst, large enough
# that a burst costs a few messages rather than one per packet.
PROCESS_CHUNK = 20


def alert_queue_many(*, alert_ids: list[int]) -> bool:
    """Queue several stored alerts: one id alone goes as ``process_alert`` (the latency path, unchanged),
    more go as ``process_alerts`` messages of up to PROCESS_CHUNK ids. False if the broker is down (the
    rows stay `received`: process_pending queues them later)."""
    if len(alert_ids) <= 1:
        return all(alert_queue(alert_id=alert_id) for alert_id in alert_ids)
    from alert_manager.tasks import process_alerts

    options = {"queue": queue} if (queue := alerts_queue_override()) else {}
    for start in range(0, len(alert_ids), PROCESS_CHUNK):
        chunk = alert_ids[start:start + PROCESS_CHUNK]
        try:
            process_alerts.apply_async(kwargs={"alert_ids": chunk}, **options, retry=True,
                                       retry_policy={"max_retries": 1, "interval_start": 0.1, "interval_step": 0.1,
                                                     "interval_max": 0.2})
        except Exception as exc:  # noqa: BLE001 - any broker failure: the periodic task recovers the rows
            log.warning("alerts %s stored but not queued (%s): process_pending will queue them",
                        alert_ids[start:], exc)
            return False
    return True


def alert_process_pending(*, pending_after_s: float = PENDING_AFTER_S, stuck_after_s: float = STUCK_AFTER_S,
                          limit: int = 500) -> int:
    """Recover what a broker or worker outage left behind: spooled packets, rows never queued, rows whose
    worker died. Returns how many alerts were queued."""
    for path in sorted(spool_dir().glob("*.xml")) if spool_dir().is_dir() else []:
        raw = path.read_bytes()
        alert_receive(raw=raw, received_unix=path.stat().st_mtime)
        path.unlink(missing_ok=True)
    now = timezone.now()
    stuck = Alert.objects.filter(status=Alert.Status.PROCESSING, received_at__lt=now - timedelta(seconds=stuck_after_s))
    reset = stuck.update(status=Alert.Status.RECEIVED)
    if reset:
        log.warning("%d alerts were left in processing by a dead worker: queued again", reset)
    ids = list(Alert.objects.filter(status=Alert.Status.RECEIVED,
                                    received_at__lt=now - timedelta(seconds=pending_after_s))
               .order_by("received_at").values_list("pk", flat=True)[:limit])
    queued = sum(alert_queue(alert_id=pk) for pk in ids)
    if ids:
        log.info("process_pending: %d alerts queued again (%d left unqueued)", queued, len(ids) - queued)
    return queued


# --- Processing (alerts worker) ---------------------------------------------------------------


@dataclasses.dataclass
class _Outcome:
    status: str
    reason: str
    decision: str = ""


@contextlib.contextmanager
def _asynchronous_commits() -> Iterator[None]:
    """PostgreSQL: the commits of alert processing do not wait for the WAL flush (``synchronous_commit=off``
    for this connection, reset afterwards). What processing writes is derived from the stored packet, whose
    spool file is kept until the packet's row is flushed (``intake_daemon.SpoolDeletions``). This disk's fsync
    takes 0.4 ms at p50 but 21 ms at p99 and up to 0.5 s, and the latency path commits five to ten times: the
    tail put 200-900 ms outliers on the slew. A database crash loses at most the last ~0.6 s of history (a
    prefix is kept, never a mix): the row is back to `received` or left `processing`, and
    ``alert_process_pending`` processes it again (or intake imports its spool file again)."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit TO OFF")
    try:
        yield
    finally:
        if connection.connection is not None and not connection.in_atomic_block:
            try:
                with connection.cursor() as cursor:
                    cursor.execute("RESET synchronous_commit")
            except Exception:  # noqa: BLE001 - a broken connection is replaced before its next use
                connection.close()


def alert_process(*, alert_id: int) -> Alert | None:
    """Parse, triage, group and act on one stored packet. Returns the alert, or None if another worker
    has it (or it was processed already)."""
    with _asynchronous_commits():
        return _alert_process(alert_id)


def _alert_process(alert_id: int) -> Alert | None:
    started = time.time()
    claimed = Alert.objects.filter(pk=alert_id, status=Alert.Status.RECEIVED).update(status=Alert.Status.PROCESSING)
    if not claimed:
        log.debug("alert %s already claimed or processed", alert_id)
        return None
    alert = Alert.objects.get(pk=alert_id)
    _process_rows([alert], started, loaded=time.time())
    return alert


def alert_process_many(*, alert_ids: list[int]) -> int:
    """Process several stored alerts in turn (a burst's chunk); returns how many this call processed.
    One failing alert does not stop the others (its row stays `processing`: process_pending recovers it)."""
    if not alert_ids:
        return 0
    with _asynchronous_commits():
        return _alert_process_many(alert_ids)


def _alert_process_many(alert_ids: list[int]) -> int:
    started = time.time()
    # One statement claims the whole chunk (rows another worker holds are skipped), one query loads it
    # (``_process_rows`` looks the active strategies up once per mission and notice type of the chunk).
    table = connection.ops.quote_name(Alert._meta.db_table)
    placeholders = ", ".join(["%s"] * len(alert_ids))
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET status = %s WHERE id IN ({placeholders}) AND status = %s RETURNING id",
                       [Alert.Status.PROCESSING, *alert_ids, Alert.Status.RECEIVED])
        claimed = {row[0] for row in cursor.fetchall()}
    rows = Alert.objects.in_bulk(claimed)
    skipped = [alert_id for alert_id in alert_ids if alert_id not in rows]
    if skipped:
        log.debug("alerts %s already claimed or processed", skipped)
    return _process_rows([rows[alert_id] for alert_id in alert_ids if alert_id in rows], started,
                         loaded=time.time())


@dataclasses.dataclass
class _Quiet:
    """A claimed alert that probably asks for nothing from the telescope: rejected, not about a burst, ignored by
    triage (test packet, not a GRB, catalogue source...), or not pointable by itself (no position, or an error
    circle larger than its strategy allows, or a strategy that does not trigger). Such alerts are grouped and
    written in bulk (``_process_quiet``); one whose event turns out pointable goes the per-alert way."""

    alert: Alert
    notice: ParsedNotice | None  # None: rejected
    outcome: _Outcome | None  # set for rejected ones
    timings: dict[str, float]


def _process_rows(alerts: list[Alert], started: float, *, loaded: float) -> int:
    """Process claimed rows in order. Consecutive quiet alerts (a burst of test packets, a storm of notices
    that do not point the telescope) are handled together in one transaction (``_process_quiet``, a handful
    of queries for the lot); any other alert goes through ``_process_parsed`` alone, in its turn."""
    cache: dict[tuple[str, str], Strategy | None] = {}

    def cached_strategy_for(*, mission: str, notice_type: str) -> Strategy | None:
        key = (mission, notice_type)
        if key not in cache:
            cache[key] = strategies.strategy_for(mission=mission, notice_type=notice_type)
        return cache[key]

    quiet: list[_Quiet] = []
    done = 0
    for alert in alerts:
        timings = {**alert.timings, "task_started": started, "loaded": loaded}
        try:
            notice = parse_voevent(bytes(alert.raw_xml))
        except VOEventRejected as exc:
            log.warning("alert %s rejected: %s", alert.pk, exc.reason)
            quiet.append(_Quiet(alert, None, _Outcome(Alert.Status.REJECTED, exc.reason), timings))
            continue
        except Exception as exc:  # a parser bug must not leave the row `processing` (and retried forever)
            log.exception("alert %s: parsing failed", alert.pk)
            quiet.append(_Quiet(alert, None, _Outcome(Alert.Status.REJECTED, f"parser error: {exc!r}"[:500]),
                                timings))
            continue
        timings["parsed"] = time.time()
        if _may_be_quiet(alert, notice, cached_strategy_for):
            quiet.append(_Quiet(alert, notice, None, timings))
            continue
        done += _flush_quiet(quiet, cached_strategy_for)
        try:
            _process_parsed(alert, notice, timings, cached_strategy_for)
            done += 1
        except Exception:
            log.exception("alert %s: processing failed", alert.pk)
    return done + _flush_quiet(quiet, cached_strategy_for)


def _may_be_quiet(alert: Alert, notice: ParsedNotice, strategy_for) -> bool:  # noqa: ANN001
    """Whether the bulk path may take this alert: everything but retractions, odd IVORNs (a repeat the intake
    did not see) and notices that could point the telescope by themselves (those take the latency path)."""
    if notice.ivorn != alert.ivorn or notice.is_retraction:
        return False
    if not _is_about_an_event(notice):
        return True
    # Whether triage ignores it does not depend on the strategy (role, flags), nor on the grouping.
    if triage(notice, max_error_deg=strategies.DEFAULT_MAX_ERROR_DEG).kind == "ignored":
        return True
    strategy = strategy_for(mission=notice.mission, notice_type=notice.notice_type)
    if strategy is None or not strategy.triggers:
        return True
    return not (notice.position_usable and notice.error_deg is not None and notice.error_deg <= strategy.max_error_deg)


def _process_parsed(alert: Alert, notice: ParsedNotice, timings: dict[str, float], strategy_for) -> None:  # noqa: ANN001
    """The whole path for one parsed alert: store its fields, triage with its strategy, group, act."""
    alert_id = alert.pk
    if not _store_parsed(alert, notice):
        _finish(alert, _Outcome(Alert.Status.IGNORED, f"repeat of an IVORN already stored: {notice.ivorn}"), timings)
        return

    strategy = strategy_for(mission=notice.mission, notice_type=notice.notice_type)
    max_error_deg = strategy.max_error_deg if strategy else strategies.DEFAULT_MAX_ERROR_DEG
    decision = triage(notice, max_error_deg=max_error_deg)
    if not _is_about_an_event(notice):
        _finish(alert, _Outcome(Alert.Status.IGNORED, decision.reason, decision.kind), timings)
        return

    event, created, group_reason = _group(alert, notice, decision)
    timings["grouped"] = time.time()
    decision = triage(notice, max_error_deg=max_error_deg, joins_existing_event=not created)
    try:
        outcome = _act(alert=alert, notice=notice, decision=decision, event=event, strategy=strategy,
                       timings=timings)
    except Exception as exc:
        log.exception("alert %s (%s): processing failed after grouping into %s", alert_id, notice.ivorn, event)
        outcome = _Outcome(Alert.Status.PROCESSED, f"error while acting on it: {exc}"[:500], decision.kind)
    outcome.reason = f"{outcome.reason} [{group_reason}]"[:500]
    _finish(alert, outcome, timings)
    log.info("alert %s %s -> event %s (%s): %s", alert_id, notice.ivorn, event.pk, event.status, outcome.reason)


def _flush_quiet(quiet: list[_Quiet], strategy_for) -> int:  # noqa: ANN001
    """Process and empty ``quiet``; returns how many were processed. An alert whose event turns out pointable
    stops the bulk: it goes through ``_process_parsed``, the bulk resumes after it. If a bulk transaction
    fails, the remaining alerts are tried one by one (one bad row must not hold back the others)."""
    batch = list(quiet)
    quiet.clear()
    done = 0
    while batch:
        try:
            taken = _process_quiet(batch, strategy_for)
        except Exception:
            log.exception("bulk processing of %d alerts failed: processing them one by one", len(batch))
            break
        done += taken
        if taken < len(batch):
            item = batch[taken]
            try:
                _process_parsed(item.alert, item.notice, item.timings, strategy_for)
                done += 1
            except Exception:
                log.exception("alert %s: processing failed", item.alert.pk)
            taken += 1
        batch = batch[taken:]
    for item in batch:  # only after a failed bulk transaction
        try:
            item.alert.event = None
            if item.notice is None:
                _finish(item.alert, item.outcome, item.timings)
            else:
                _process_parsed(item.alert, item.notice, item.timings, strategy_for)
            done += 1
        except Exception:
            log.exception("alert %s: processing failed", item.alert.pk)
    return done


_PARSED_FIELDS = ["ivorn", "role", "stream", "mission", "instrument", "notice_type", "packet_type", "trigger_id",
                  "trigger_scope", "event_time", "ra_deg", "dec_deg", "error_deg", "position_usable", "params",
                  "citations", "flags"]
_FINISH_FIELDS = ["status", "status_reason", "decision", "timings", "processed_at", "event"]


@dataclasses.dataclass
class _EventState:
    """An event's status as a bulk sees it (its decisions change it in order before anything is written)."""

    status: str
    reason: str
    loaded_status: str | None = None  # as read from the database; None: created by this batch


def _quiet_outcome(notice: ParsedNotice, created: bool, merged: CandidateEvent, state: _EventState,
                   strategy: Strategy | None) -> tuple[_Outcome, _StatusChange | None] | None:
    """``_decide_without_telescope`` for a notice of the bulk path, on its event as the batch sees it."""
    max_error_deg = strategy.max_error_deg if strategy else strategies.DEFAULT_MAX_ERROR_DEG
    decision = triage(notice, max_error_deg=max_error_deg, joins_existing_event=not created)
    return _decide_without_telescope(notice, decision, state.status, merged.position, strategy)


def _process_quiet(batch: list[_Quiet], strategy_for) -> int:  # noqa: ANN001
    """Group and finish a prefix of ``batch`` in one transaction: one grouping lock, one candidate lookup for
    all of them, new events in one INSERT, every alert row in one batched UPDATE. Same outcome as
    ``_process_parsed`` alert after alert (the pure grouping and decisions see the events this batch creates
    or changes). Stops before the first alert whose event turns out pointable; returns how many it took."""
    groupable = [item.notice for item in batch if item.notice is not None and _is_about_an_event(item.notice)]
    taken: list[_Quiet] = []
    outcomes: dict[int, _Outcome] = {}
    event_key_of: dict[int, object] = {}
    event_ids: dict[object, int] = {}
    rows: dict[int, AlertEvent] = {}
    pool: dict[object, CandidateEvent] = {}
    states: dict[object, _EventState] = {}
    new_events: list[tuple[str, ParsedNotice]] = []
    touched: list[object] = []
    with transaction.atomic():
        if groupable:
            _grouping_lock()
            pool = {c.event_id: c for c in _candidate_events_many(groupable, rows)}
            states = {pk: _EventState(row.status, row.status_reason, row.status) for pk, row in rows.items()}
        for item in batch:
            notice = item.notice
            if notice is None:
                outcomes[item.alert.pk] = item.outcome
            elif not _is_about_an_event(notice):
                decision = triage(notice, max_error_deg=strategies.DEFAULT_MAX_ERROR_DEG)
                outcomes[item.alert.pk] = _Outcome(Alert.Status.IGNORED, decision.reason, decision.kind)
            else:
                grouping = group_notice(notice, pool.values())
                ignored = triage(notice, max_error_deg=strategies.DEFAULT_MAX_ERROR_DEG).kind == "ignored"
                # An ignored notice (catalogue source, star tracker out of lock...) never moves the position.
                for_position = dataclasses.replace(notice, position_usable=False) if ignored else notice
                created = grouping.opens_new_event
                key: object = f"new {len(new_events)}" if created else grouping.event_id
                merged = event_from_notice(for_position, key) if created else event_with_notice(pool[key],
                                                                                               for_position)
                state = _EventState(AlertEvent.Status.NEW, "") if created else states[key]
                strategy = strategy_for(mission=notice.mission, notice_type=notice.notice_type)
                decided = _quiet_outcome(notice, created, merged, state, strategy)
                if decided is None:
                    break  # its event can be pointed at: the per-alert path, after this bulk is written
                outcome, change = decided
                if created:
                    new_events.append((key, notice))
                    states[key] = state
                if key not in touched:
                    touched.append(key)
                pool[key] = merged
                if change is not None and state.status in change.only_from:
                    state.status, state.reason = change.status, change.reason[:500]
                outcome.reason = f"{outcome.reason} [{grouping.reason}]"
                outcomes[item.alert.pk] = outcome
                event_key_of[item.alert.pk] = key
                item.timings["grouped"] = time.time()
            taken.append(item)
        if new_events:
            created_rows = [AlertEvent(name=_event_name(notice), is_test=notice.is_test, status=states[key].status,
                                       status_reason=states[key].reason, **_event_fields(pool[key]))
                            for key, notice in new_events]
            AlertEvent.objects.bulk_create(created_rows)
            event_ids = {key: row.pk for (key, _), row in zip(new_events, created_rows, strict=True)}
        for key in touched:
            if key in event_ids:
                continue
            event_ids[key] = key
            state = states[key]
            changes = {**_event_fields(pool[key]), "updated": timezone.now()}
            if (state.status, state.reason) != (state.loaded_status, rows[key].status_reason):
                # Only if nobody changed it meanwhile (another worker may be starting its follow-up).
                changes["status"] = Case(When(status=state.loaded_status, then=Value(state.status)),
                                         default=F("status"))
                changes["status_reason"] = Case(When(status=state.loaded_status, then=Value(state.reason)),
                                                default=F("status_reason"))
            AlertEvent.objects.filter(pk=key).update(**changes)
        now = timezone.now()
        for item in taken:
            alert, outcome = item.alert, outcomes[item.alert.pk]
            if item.notice is not None:
                _apply_parsed(alert, item.notice)
            if alert.pk in event_key_of:
                alert.event_id = event_ids[event_key_of[alert.pk]]
            item.timings["done"] = time.time()
            alert.status, alert.status_reason, alert.decision = outcome.status, outcome.reason[:500], outcome.decision
            alert.timings, alert.processed_at = item.timings, now
        _bulk_save(Alert, [item.alert for item in taken], _PARSED_FIELDS + _FINISH_FIELDS)
    if taken:
        counts: dict[str, int] = {}
        for outcome in outcomes.values():
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
        log.info("%d alerts processed together: %s; %d new events", len(taken),
                 ", ".join(f"{n} {status}" for status, n in sorted(counts.items())), len(new_events))
    return len(taken)


def _event_fields(merged: CandidateEvent) -> dict:
    fields = {"missions": sorted(merged.missions), "trigger_ids": merged.trigger_ids,
              "burst_time": merged.burst_time_utc}
    if merged.position is not None:
        fields.update(ra_deg=merged.position.ra_deg, dec_deg=merged.position.dec_deg,
                      error_deg=merged.position.error_deg)
    return fields


def _bulk_save(model, objects: list, field_names: list[str]) -> None:  # noqa: ANN001 - a model class
    """``UPDATE ... WHERE pk = %s`` for every object with its own values, sent as one ``executemany``
    (psycopg pipelines it: one round trip), values prepared by the fields as ``save()`` would."""
    if not objects:
        return
    meta = model._meta
    fields = [meta.get_field(name) for name in field_names]
    quote = connection.ops.quote_name
    sql = (f"UPDATE {quote(meta.db_table)} SET {', '.join(f'{quote(f.column)} = %s' for f in fields)} "
           f"WHERE {quote(meta.pk.column)} = %s")
    params = [[field.get_db_prep_save(getattr(obj, field.attname), connection) for field in fields] + [obj.pk]
              for obj in objects]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def _apply_parsed(alert: Alert, notice: ParsedNotice) -> None:
    alert.ivorn = notice.ivorn
    alert.role = notice.role
    alert.stream = notice.stream[:200]
    alert.mission = notice.mission[:50]
    alert.instrument = (notice.instrument or "")[:50]
    alert.notice_type = notice.notice_type[:100]
    alert.packet_type = notice.packet_type
    alert.trigger_id = (notice.trigger_id or "")[:100]
    alert.trigger_scope = (notice.trigger_scope or "")[:50]
    alert.event_time = notice.event_time_utc
    alert.ra_deg, alert.dec_deg = notice.ra_deg, notice.dec_deg
    alert.error_deg = notice.error_deg
    alert.position_usable = notice.position_usable
    alert.params = notice.params
    alert.citations = [{"ivorn": c.ivorn, "cite": c.cite} for c in notice.citations]
    alert.flags = sorted(notice.flags)


def _store_parsed(alert: Alert, notice: ParsedNotice) -> bool:
    """Copy the parsed fields onto the row; False if its IVORN belongs to another row already."""
    intake_ivorn = alert.ivorn
    _apply_parsed(alert, notice)
    if notice.ivorn == intake_ivorn:
        # The usual case: the row already holds this IVORN, no unique conflict is possible (no savepoint:
        # this is on the latency path, every round trip counts).
        alert.save(update_fields=_PARSED_FIELDS)
        return True
    try:
        with transaction.atomic():
            alert.save(update_fields=_PARSED_FIELDS)
    except IntegrityError:
        # The cheap intake extraction missed the IVORN (odd formatting) and it is a repeat.
        alert.ivorn = None
        Alert.objects.filter(ivorn=notice.ivorn).update(repeats=F("repeats") + 1)
        return False
    return True


def _is_about_an_event(notice: ParsedNotice) -> bool:
    """Utility packets (broker heartbeats, Swift pointing plans), test packets naming no trigger, and
    packets with neither trigger, time, position nor citation say nothing about a burst: stored, not grouped."""
    if notice.role == "utility":
        return False
    if notice.role == "test":
        return notice.trigger_id is not None
    return bool(notice.trigger_id or notice.event_time_utc or notice.position_usable or notice.citations)


def _finish(alert: Alert, outcome: _Outcome, timings: dict[str, float]) -> None:
    timings["done"] = time.time()
    alert.status = outcome.status
    alert.status_reason = outcome.reason[:500]
    alert.decision = outcome.decision
    alert.timings = timings
    alert.processed_at = timezone.now()
    alert.save(update_fields=_FINISH_FIELDS)


# --- Grouping ---------------------------------------------------------------------------------


def _grouping_lock() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [GROUPING_LOCK_KEY])
    # SQLite: settings open every transaction IMMEDIATE, i.e. holding the database write lock.


def _candidate(event: AlertEvent, ivorns: set[str]) -> CandidateEvent:
    position = None
    if event.ra_deg is not None and event.dec_deg is not None:
        position = SkyPosition(event.ra_deg, event.dec_deg, event.error_deg or 0.0)
    return CandidateEvent(event_id=event.pk, missions=frozenset(event.missions), trigger_ids=dict(event.trigger_ids),
                          ivorns=frozenset(ivorns), burst_time_utc=event.burst_time, position=position,
                          is_test=event.is_test)


def _candidate_events(notice: ParsedNotice) -> list[CandidateEvent]:
    return _candidate_events_many([notice])


def _candidate_events_many(notices: list[ParsedNotice], loaded: dict[int, AlertEvent] | None = None,
                           ) -> list[CandidateEvent]:
    """The stored events any of ``notices`` could join: those holding one of their triggers or a cited IVORN,
    and those whose burst time coincides (one query per test/real and trigger scope, not per notice)."""
    ids: set[int] = set()
    scoped = {(n.trigger_scope, n.trigger_id) for n in notices if n.trigger_id and n.trigger_scope}
    if scoped:
        rows = Alert.objects.filter(trigger_id__in={trig for _, trig in scoped},
                                    trigger_scope__in={scope for scope, _ in scoped},
                                    event__isnull=False).values_list("trigger_scope", "trigger_id", "event_id")
        ids.update(event_id for scope, trig, event_id in rows if (scope, trig) in scoped)
    cited = {ivorn for n in notices for ivorn in n.cited_ivorns}
    cited_by_event: dict[int, set[str]] = {}
    if cited:
        for event_id, ivorn in Alert.objects.filter(ivorn__in=cited, event__isnull=False).values_list("event_id",
                                                                                                      "ivorn"):
            cited_by_event.setdefault(event_id, set()).add(ivorn)
        ids.update(cited_by_event)
    timed: dict[tuple[bool, str], list[datetime]] = {}
    for n in notices:
        if n.event_time_utc is not None and carries_t0(n):
            timed.setdefault((n.is_test, n.trigger_scope or ""), []).append(n.event_time_utc)
    for (is_test, scope), times in timed.items():
        coincident = AlertEvent.objects.filter(
            burst_time__range=(min(times) - COINCIDENCE_WINDOW, max(times) + COINCIDENCE_WINDOW), is_test=is_test)
        if scope:
            # An event holding another trigger of this mission is never joined by coincidence: do not load it
            # (during a burst of packets this keeps the candidate list short).
            coincident = coincident.exclude(trigger_ids__has_key=scope)
        ids.update(coincident.order_by("-burst_time").values_list("pk", flat=True)[
            :MAX_COINCIDENT_CANDIDATES * len(times)])
    if not ids:
        return []
    events = list(AlertEvent.objects.filter(pk__in=ids).order_by("pk"))
    if loaded is not None:  # (``loaded``: filled with the events themselves)
        loaded.update((event.pk, event) for event in events)
    return [_candidate(event, cited_by_event.get(event.pk, set())) for event in events]


def _event_name(notice: ParsedNotice) -> str:
    prefix = "TEST " if notice.is_test else ""
    if notice.trigger_id:
        label = f"{notice.trigger_scope or notice.mission} {notice.trigger_id}"
    elif notice.event_time_utc is not None:
        label = f"{notice.mission} {notice.event_time_utc:%Y-%m-%d %H:%M:%S}"
    else:
        label = notice.ivorn.rpartition("#")[2] or notice.ivorn
    return f"{prefix}{label}"[:100]


def _group(alert: Alert, notice: ParsedNotice, decision: TriageDecision) -> tuple[AlertEvent, bool, str]:
    """Attach the alert to its event (creating it if needed). Returns (event, created, reason)."""
    if decision.kind in ("ignored", "retraction"):
        # A catalogue source, a star tracker out of lock or a retraction must not move the best position.
        notice_for_position = dataclasses.replace(notice, position_usable=False)
    else:
        notice_for_position = notice
    with transaction.atomic():
        _grouping_lock()
        grouping = group_notice(notice, _candidate_events(notice))
        if grouping.opens_new_event:
            merged = event_from_notice(notice_for_position, None)
            event = AlertEvent(name=_event_name(notice), is_test=notice.is_test)
            created = True
        else:
            event = AlertEvent.objects.select_for_update().get(pk=grouping.event_id)
            merged = event_with_notice(_candidate(event, set()), notice_for_position)
            created = False
        event.missions = sorted(merged.missions)
        event.trigger_ids = merged.trigger_ids
        event.burst_time = merged.burst_time_utc
        if merged.position is not None:
            event.ra_deg, event.dec_deg, event.error_deg = (merged.position.ra_deg, merged.position.dec_deg,
                                                            merged.position.error_deg)
        if created:
            event.save()
        else:
            event.save(update_fields=["missions", "trigger_ids", "burst_time", "ra_deg", "dec_deg", "error_deg",
                                      "updated"])
        alert.event = event
        Alert.objects.filter(pk=alert.pk).update(event=event)
    return event, created, grouping.reason


# --- Acting on the decision -------------------------------------------------------------------


def _set_event_status(event: AlertEvent, status: str, reason: str, *, only_from: tuple[str, ...] | None = None) -> None:
    qs = AlertEvent.objects.filter(pk=event.pk)
    if only_from is not None:
        qs = qs.filter(status__in=only_from)
    if qs.update(status=status, status_reason=reason[:500], updated=timezone.now()):
        event.status, event.status_reason = status, reason[:500]


@dataclasses.dataclass(frozen=True)
class _StatusChange:
    """An event status change: to ``status`` with ``reason``, only if the event is in one of ``only_from``."""

    status: str
    reason: str
    only_from: tuple[str, ...]


def _decide_without_telescope(notice: ParsedNotice, decision: TriageDecision, event_status: str,
                              position: SkyPosition | None, strategy: Strategy | None,
                              ) -> tuple[_Outcome, _StatusChange | None] | None:
    """The decisions that leave the telescope alone (ignored notice, retracted event, strategy off, no position
    the strategy can point at): the alert's outcome and the event's status change. None: the event's position
    can be pointed at (start or update the follow-up). Retractions are decided before this. Shared by the
    per-alert path (``_act``) and the bulk path (``_quiet_outcome``), so that both decide alike."""
    if decision.kind == "ignored":
        return _Outcome(Alert.Status.IGNORED, decision.reason, decision.kind), _StatusChange(
            AlertEvent.Status.IGNORED, decision.reason, (AlertEvent.Status.NEW,))
    if event_status == AlertEvent.Status.RETRACTED:
        return _Outcome(Alert.Status.PROCESSED, "the event was retracted: nothing done", decision.kind), None
    if strategy is None or not strategy.triggers:
        why = (f"strategy {strategy.name!r} does not trigger on {notice.mission} {notice.notice_type}" if strategy
               else f"no active strategy for {notice.mission} {notice.notice_type}")
        return _Outcome(Alert.Status.PROCESSED, why, decision.kind), _StatusChange(
            AlertEvent.Status.NOT_ACTIONABLE, why, _EVENT_OPEN_STATES)
    if position is None or position.error_deg > strategy.max_error_deg:
        # This notice may be pointable while the event's best position is not (or the reverse): the event decides.
        why = decision.reason if not decision.actionable else "the event has no position within the strategy's error"
        return _Outcome(Alert.Status.PROCESSED, why, decision.kind), _StatusChange(
            AlertEvent.Status.NOT_ACTIONABLE, why, _EVENT_OPEN_STATES)
    return None


def _act(*, alert: Alert, notice: ParsedNotice, decision: TriageDecision, event: AlertEvent,
         strategy: Strategy | None, timings: dict[str, float]) -> _Outcome:
    if decision.kind == "retraction":
        return _Outcome(Alert.Status.PROCESSED, event_retract(event=event, reason=decision.reason), decision.kind)
    if decision.kind == "ignored" and notice.is_retraction and event.is_test:
        # A test retraction (LVK mock events) retracts its test event: visible, and nothing to cancel.
        _set_event_status(event, AlertEvent.Status.RETRACTED, f"test retraction ({decision.reason})")
        return _Outcome(Alert.Status.IGNORED, f"{decision.reason}; test event marked retracted", decision.kind)
    position = _event_position(event)
    decided = _decide_without_telescope(notice, decision, event.status, position, strategy)
    if decided is not None:
        outcome, change = decided
        if change is not None:
            _set_event_status(event, change.status, change.reason, only_from=change.only_from)
        return outcome
    if event.request_id is None:
        return _Outcome(Alert.Status.PROCESSED,
                        _start_follow_up(event=event, strategy=strategy, position=position, timings=timings),
                        decision.kind)
    return _Outcome(Alert.Status.PROCESSED, _update_follow_up(event=event, position=position), decision.kind)


def _event_position(event: AlertEvent) -> SkyPosition | None:
    if event.ra_deg is None or event.dec_deg is None:
        return None
    return SkyPosition(event.ra_deg, event.dec_deg, event.error_deg or 0.0)


def _start_follow_up(*, event: AlertEvent, strategy: Strategy, position: SkyPosition,
                     timings: dict[str, float]) -> str:
    now = timezone.now()
    site = strategies.active_site()
    if site is None:
        _set_event_status(event, AlertEvent.Status.NOT_ACTIONABLE, "no active site", only_from=_EVENT_OPEN_STATES)
        return "no active site: cannot compute visibility"
    vis = visibility(position.ra_deg, position.dec_deg, site, now, VISIBILITY_HOURS,
                     min_altitude_deg=strategy.min_altitude_deg, twilight_deg=site.twilight_deg)
    timings["visibility"] = time.time()
    pointed = False
    if vis.observable_now:
        # The latency path: the slew leaves for the mount before the request is written (~25 queries).
        pointed = _point_now(ra_deg=position.ra_deg, dec_deg=position.dec_deg, reason=f"alert {event.name}")
        timings["pointed"] = time.time()
    with transaction.atomic():
        locked = AlertEvent.objects.select_for_update().get(pk=event.pk)
        if locked.request_id is not None or locked.status == AlertEvent.Status.RETRACTED:
            # Another notice of the burst got here first (its worker held the lock): this one is an update.
            event.refresh_from_db()
            if event.status == AlertEvent.Status.RETRACTED:
                return "the event was retracted meanwhile"
            return _update_follow_up(event=event, position=position)
        if vis.next_observable_utc is None:
            _set_event_status(locked, AlertEvent.Status.NOT_ACTIONABLE, f"not observable: {vis.reason}",
                              only_from=_EVENT_OPEN_STATES)
            event.status, event.status_reason = locked.status, locked.status_reason
            return f"not observable within {VISIBILITY_HOURS:g} h: {vis.reason}"
        try:
            request = strategies.build_follow_up_request(event=locked, strategy=strategy, ra_deg=position.ra_deg,
                                                         dec_deg=position.dec_deg, now=now, site=site)
        except strategies.FollowUpImpossible as exc:
            _set_event_status(locked, AlertEvent.Status.NOT_ACTIONABLE, str(exc), only_from=_EVENT_OPEN_STATES)
            event.status, event.status_reason = locked.status, locked.status_reason
            return str(exc)
        status = AlertEvent.Status.OBSERVING if vis.observable_now else AlertEvent.Status.AWAITING_VISIBILITY
        reason = ("observable now: pre-empting" if vis.observable_now
                  else f"{vis.reason}; scheduled for when it is observable")
        AlertEvent.objects.filter(pk=event.pk).update(
            request=request, strategy=strategy, status=status, status_reason=reason[:500],
            pointed_ra_deg=position.ra_deg, pointed_dec_deg=position.dec_deg, updated=timezone.now())
        first_sequence_id = request.sequences.order_by("order", "pk").values_list("pk", flat=True).first()
    timings["request_built"] = time.time()
    if vis.observable_now and first_sequence_id is not None:
        timings["preempt_called"] = time.time()
        _preempt(sequence_id=first_sequence_id, ra_deg=position.ra_deg, dec_deg=position.dec_deg,
                 reason=f"alert {event.name}", slew=not pointed)
        timings["preempt_returned"] = time.time()
    event.refresh_from_db()
    _request_replan(reason=f"alert {event.name}: request {request.pk}")
    return f"request {request.pk} built by strategy {strategy.name!r}; {reason}"


def _update_follow_up(*, event: AlertEvent, position: SkyPosition) -> str:
    """A better position for an event that already has a request: move the telescope only if the target
    leaves the field (or its error circle would be covered once re-centred)."""
    executing_id: int | None = None
    with transaction.atomic():
        locked = AlertEvent.objects.select_for_update(of=("self",)).select_related("request").get(pk=event.pk)
        request = locked.request
        if request is None or request.status in _FINAL_REQUEST_STATES:
            return "position update after the follow-up ended: nothing to re-point"
        pointed = None
        if locked.pointed_ra_deg is not None and locked.pointed_dec_deg is not None:
            pointed = SkyPosition(locked.pointed_ra_deg, locked.pointed_dec_deg, 0.0)
        album = request.sequences.first().albums.select_related("detector").first() if request.sequences.exists() \
            else None
        radius = strategies.field_radius_deg(album.detector if album else None)
        repoint = needs_repoint(pointed, position, field_radius_deg=radius)
        if not repoint.repoint:
            return f"position refined, no re-point: {repoint.reason}"
        ra = position.ra_deg % 360.0
        Sequence.objects.filter(request=request, status__in=_OPEN_SEQUENCE_STATES).update(ra_deg=ra,
                                                                                           dec_deg=position.dec_deg)
        executing = Sequence.objects.filter(request=request, status=Sequence.Status.EXECUTING).first()
        if executing is not None:
            Sequence.objects.filter(pk=executing.pk).update(ra_deg=ra, dec_deg=position.dec_deg)
            executing_id = executing.pk
        AlertEvent.objects.filter(pk=event.pk).update(pointed_ra_deg=ra, pointed_dec_deg=position.dec_deg,
                                                      updated=timezone.now())
    event.refresh_from_db()
    if executing_id is not None:
        _repoint(sequence_id=executing_id, ra_deg=ra, dec_deg=position.dec_deg,
                 reason=f"alert {event.name}: {repoint.reason}")
    _request_replan(reason=f"alert {event.name}: position updated")
    return f"re-pointed: {repoint.reason}"


def event_retract(*, event: AlertEvent, reason: str) -> str:
    """Retraction: the event is marked retracted, its request cancelled (time refunded, aborted if executing)."""
    with transaction.atomic():
        locked = AlertEvent.objects.select_for_update(of=("self",)).select_related("request").get(pk=event.pk)
        AlertEvent.objects.filter(pk=event.pk).update(status=AlertEvent.Status.RETRACTED,
                                                      status_reason=reason[:500], updated=timezone.now())
        request = locked.request
    event.refresh_from_db()
    if request is None:
        return "retracted (no request had been built)"
    if request.status in _FINAL_REQUEST_STATES:
        return f"retracted; request {request.pk} already {request.status}"
    _cancel_request(request=request, reason=f"retraction: {reason}")
    return f"retracted; request {request.pk} cancelled"


# --- Calls into other apps (lazy imports, one place each) --------------------------------------


def _point_now(*, ra_deg: float, dec_deg: float, reason: str) -> bool:
    """Slew to the burst at once, before any bookkeeping (the majordome owns the mount)."""
    from majordome.services import observatory_point_now

    try:
        return observatory_point_now(ra_deg=ra_deg, dec_deg=dec_deg, reason=reason)
    except Exception:
        log.exception("pointing at the burst failed; the executor will slew when the sequence starts")
        return False


def _preempt(*, sequence_id: int, ra_deg: float, dec_deg: float, reason: str, slew: bool = True) -> None:
    """Run the burst's sequence next, aborting what runs (the majordome owns the telescope)."""
    from majordome.services import observatory_preempt

    try:
        slewed = observatory_preempt(sequence_id=sequence_id, ra_deg=ra_deg, dec_deg=dec_deg, reason=reason,
                                     slew=slew) or not slew
        if not slewed:
            log.info("pre-emption for sequence %s deferred by the majordome (not observing now): it runs first "
                     "when observing resumes", sequence_id)
    except Exception:
        # The request exists and the replan follows: the scheduler will still put it first.
        log.exception("pre-emption for sequence %s failed; the replan will schedule it", sequence_id)


def _repoint(*, sequence_id: int, ra_deg: float, dec_deg: float, reason: str) -> None:
    from majordome.services import observatory_repoint

    try:
        observatory_repoint(sequence_id=sequence_id, ra_deg=ra_deg, dec_deg=dec_deg, reason=reason)
    except Exception:
        log.exception("re-pointing of sequence %s failed", sequence_id)


def _request_replan(*, reason: str) -> None:
    from scheduler.services import schedule_request_replan

    try:
        schedule_request_replan(reason=reason)
    except Exception:
        log.exception("could not ask the scheduler for a replan (%s)", reason)


def _cancel_request(*, request: Request, reason: str) -> None:
    from routine_manager.services import request_cancel

    # It refunds the unused time, asks the majordome to abort a running sequence and asks for a replan.
    request_cancel(request=request, reason=reason)


# --- Strategies (operators) ------------------------------------------------------------------


def strategy_activate(*, strategy: Strategy, active: bool = True) -> Strategy:
    """Switch a strategy on or off. Switching one on switches off the active ones for the same alert
    types (same missions and notice types): one active strategy per alert type."""
    with transaction.atomic():
        if active:
            for other in Strategy.objects.select_for_update().filter(is_active=True).exclude(pk=strategy.pk):
                if sorted(other.missions) == sorted(strategy.missions) and \
                        sorted(other.notice_types) == sorted(strategy.notice_types):
                    Strategy.objects.filter(pk=other.pk).update(is_active=False)
        Strategy.objects.filter(pk=strategy.pk).update(is_active=active)
    strategy.refresh_from_db()
    log.info("strategy %r %s", strategy.name, "activated" if active else "deactivated")
    return strategy


# --- Test packets (operators) -------------------------------------------------------------------


def packet_send_to_broker(*, raw: bytes, fresh: bool = True, to_zenith: bool = False, host: str = "127.0.0.1",
                     port: int | None = None):  # noqa: ANN201 - vtp.VTPResponse
    """Send a packet through the real Comet broker (VTP), as a mission would.

    ``fresh``: new IVORN, trigger id and current time (see packet_rewrite); ``to_zenith``: move its position
    near the zenith of the active site, so that the simulated telescope can point at it now.
    Raises VOEventRejected (the packet cannot be rewritten) or vtp.VTPError (broker unreachable)."""
    from alert_manager.packet_rewrite import as_fresh_burst
    from alert_manager.vtp import send_voevent

    now = timezone.now()
    if fresh or to_zenith:
        ra = dec = None
        if to_zenith:
            site = strategies.active_site()
            if site is None:
                raise VOEventRejected("no active site to point at")
            ra, dec = zenith_ra_dec(site=site, when=now)
        raw = as_fresh_burst(raw, now=now, ra_deg=ra, dec_deg=dec)
    response = send_voevent(host, port or settings.PYROS_COMET_PORT, raw, timeout_s=10.0)
    log.info("test packet sent to Comet: %s (%s)", "ack" if response.ack else "refused", response.message)
    return response


def zenith_ra_dec(*, site, when: datetime) -> tuple[float, float]:  # noqa: ANN001 - Site
    """(RA, Dec) in degrees near the site's zenith (mean sidereal time is precise enough to point near it)."""
    from sky.astro import to_time, u

    lst_deg = to_time(when).sidereal_time("mean", longitude=site.longitude_deg * u.deg).deg
    return lst_deg % 360.0, max(-89.0, min(89.0, site.latitude_deg))
