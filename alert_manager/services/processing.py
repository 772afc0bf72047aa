"""Processing on the alerts worker: claim, parse, triage, group, act; the bulk path for alerts that cannot point the telescope."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Iterator

from django.db import IntegrityError, connection, transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone

from alert_manager import strategies
from alert_manager.grouping import (
    CandidateEvent,
    event_from_notice,
    event_with_notice,
    group_notice,
)
from alert_manager.notices_json import parse_kafka_message
from alert_manager.services.follow_up import _act, _decide_without_telescope, _Outcome, _StatusChange
from alert_manager.services.grouping import _candidate_events_many, _event_name, _group, _grouping_lock
from alert_manager.services.tiled_follow_up import has_localisation
from alert_manager.triage import triage
from alert_manager.voevent import ParsedNotice, VOEventRejected, parse_voevent
from pyrosapp.models import Alert, AlertEvent, Strategy

log = logging.getLogger("pyros.alert_manager")


def parse_stored(alert: Alert) -> ParsedNotice:
    """Parse a stored message whatever its transport and format: a VOEvent (VTP, or Kafka's VOEvent topics)
    or a JSON notice of a Kafka topic. Raises VOEventRejected (NoticeRejected is one) with the reason."""
    raw = bytes(alert.raw_xml)
    if alert.payload_format == Alert.Format.JSON or alert.kafka_topic:
        return parse_kafka_message(raw, topic=alert.kafka_topic)
    return parse_voevent(raw)

# --- Processing (alerts worker) ---------------------------------------------------------------


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
            notice = parse_stored(alert)
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
    did not see), notices that could point the telescope by themselves (those take the latency path) and, for a
    strategy that tiles large localisations, notices with a sky map or an error circle (``tiled_follow_up``)."""
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
    if notice.position_usable and notice.error_deg is not None and notice.error_deg <= strategy.max_error_deg:
        return False
    # A strategy that tiles acts on sky maps and wide error circles (and says why a bad map is not used).
    return not (strategy.tile_large_localisations and has_localisation(notice))


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
