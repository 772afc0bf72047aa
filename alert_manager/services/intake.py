"""Storing packets and queueing their processing: one INSERT per packet (or one per batch), a repeat recognised by IVORN, an unreachable database spooled (never lose an ACKed packet), and the recovery of what a broker or worker outage left behind."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.sax.saxutils import unescape

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from alert_manager import spool
from alert_manager.services._constants import (
    _IVORN_ATTR_RE,
    OVERSIZE_KEEP_BYTES,
    PENDING_AFTER_S,
    STUCK_AFTER_S,
    spool_dir,
)
from alert_manager.voevent import MAX_PACKET_BYTES
from pyrosapp.models import Alert

log = logging.getLogger("pyros.alert_manager")

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
        path = _spool(item)
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
                path = _spool(item)
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
                  received_unix: float, **origin) -> int:
    """One INSERT; ``origin`` are the transport fields of a Kafka message (topic, partition, offset...)."""
    try:
        with transaction.atomic():
            alert = Alert.objects.create(
                ivorn=ivorn, raw_xml=raw, sha256=sha256, received_at=received_at, status=status,
                status_reason=reason[:500], timings={"received": received_unix, **origin.pop("timings", {})},
                processed_at=received_at if status == Alert.Status.REJECTED else None, **origin,
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


def _spool(item: _Incoming) -> Path:
    """The database is unreachable: the packet goes to the one spool of PyROS (``alert_manager/spool.py``),
    the folder alert-intake imports from (and ``alert_process_pending`` too, for files left there)."""
    return spool.write_packet(item.raw, item.received_unix, spool.incoming_dir(spool_dir()))


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
        log.warning("alert %s stored but not queued (%s): queued again as soon as the broker is back", alert_id, exc)
        _unqueued.set()
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
            log.warning("alerts %s stored but not queued (%s): queued again as soon as the broker is back",
                        alert_ids[start:], exc)
            _unqueued.set()
            return False
    return True


# --- Rows stored while the broker was down: queued as soon as it is back ---------------------------------
# Set when a stored row could not be queued. The intake processes (alert-intake, alert-kafka) run a thread
# that then tries again every REQUEUE_EVERY_S, so the rows leave within a second of the broker's return
# instead of waiting for process_pending (every 30 s, rows older than 30 s). process_pending stays the
# safety net for rows whose process died.
REQUEUE_EVERY_S = 0.5
_unqueued = threading.Event()


def alert_requeue_unqueued(*, limit: int = 2000) -> int | None:
    """Queue every row still `received` (oldest first); the number queued, None when the broker still refuses.
    Queuing a row twice is harmless: processing claims a row with a conditional update."""
    ids = list(Alert.objects.filter(status=Alert.Status.RECEIVED).order_by("received_at")
               .values_list("pk", flat=True)[:limit])
    _unqueued.clear()
    if ids and not alert_queue_many(alert_ids=ids):
        return None
    if ids:
        log.warning("%d alert(s) stored while the broker was unreachable are queued now", len(ids))
    return len(ids)


def _broker_reachable() -> bool:
    """A connection to the broker can be opened now (checked quietly before queueing again)."""
    from celery import current_app

    try:
        with current_app.connection_for_write() as connection_:
            connection_.ensure_connection(max_retries=1, interval_start=0, timeout=1)
    except Exception:  # noqa: BLE001 - any failure means: not yet
        return False
    return True


def start_requeue_thread(stop: threading.Event | None = None) -> threading.Thread:
    """The thread of an intake process that queues the rows stored during a broker outage once it is back."""
    stop = stop or threading.Event()

    def loop() -> None:
        from django.db import close_old_connections

        while not stop.is_set():
            if not _unqueued.wait(1.0):
                continue
            while not stop.is_set():
                try:
                    close_old_connections()
                    if _broker_reachable() and alert_requeue_unqueued() is not None:
                        break
                except Exception:  # noqa: BLE001 - the database may be down too: try again
                    log.exception("re-queueing stored alerts failed")
                    _unqueued.set()
                stop.wait(REQUEUE_EVERY_S)

    thread = threading.Thread(target=loop, name="pyros-alert-requeue", daemon=True)
    thread.start()
    return thread


def alert_process_pending(*, pending_after_s: float = PENDING_AFTER_S, stuck_after_s: float = STUCK_AFTER_S,
                          limit: int = 500) -> int:
    """Recover what a broker or worker outage left behind: spooled packets, rows never queued, rows whose
    worker died. Returns how many alerts were queued."""
    # Spool files older than ``pending_after_s`` (alert-intake imports fresh ones itself, and deletes each
    # once its row is durable): a file is deleted only once its row exists.
    folder = spool.incoming_dir(spool_dir())
    imported: set[int] = set()  # queued by alert_receive already
    for path in spool.pending_files(folder) if folder.is_dir() else []:
        received_unix = spool.received_unix_of(path) or path.stat().st_mtime
        if time.time() - received_unix < pending_after_s:
            continue
        alert_id = alert_receive(raw=path.read_bytes(), received_unix=received_unix)
        if alert_id is not None:
            imported.add(alert_id)
            path.unlink(missing_ok=True)
    now = timezone.now()
    stuck = Alert.objects.filter(status=Alert.Status.PROCESSING, received_at__lt=now - timedelta(seconds=stuck_after_s))
    reset = stuck.update(status=Alert.Status.RECEIVED)
    if reset:
        log.warning("%d alerts were left in processing by a dead worker: queued again", reset)
    ids = list(Alert.objects.filter(status=Alert.Status.RECEIVED,
                                    received_at__lt=now - timedelta(seconds=pending_after_s)).exclude(pk__in=imported)
               .order_by("received_at").values_list("pk", flat=True)[:limit])
    queued = sum(alert_queue(alert_id=pk) for pk in ids)
    if ids:
        log.info("process_pending: %d alerts queued again (%d left unqueued)", queued, len(ids) - queued)
    return queued
