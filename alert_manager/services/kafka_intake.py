"""Storing GCN Kafka messages: each message (VOEvent XML or JSON notice, bytes unchanged) becomes an Alert row
with its topic, partition and offset, committed before the consumer commits the offset; then it is queued.

A batch (what the consumer fetched at once: one message after a quiet moment, up to 100 during a burst) is
one multi-row INSERT in one transaction: one synchronous commit for the batch instead of one per message
(PostgreSQL's commit waits for the WAL flush, so every row is durable when this returns and the consumer
commits the offsets). Nothing is read before the INSERT: the unique constraints recognise what was stored.

Repeats: a message redelivered after a crash between the rows' commit and the offset's commit has the
same (topic, partition, offset) and is recognised as such; the same notice arriving twice (republished, or
by VTP and by Kafka) has the same IVORN (a JSON notice's is derived from its content, see
``alert_manager.notices_json``) and is one notice (the first row's ``repeats`` counter goes up). A batch the
constraints refuse (a redelivery, a notice stored before) or holding a message or an IVORN twice is stored
row by row, which says which. A database error propagates: the consumer does not commit, backs off and gets
the same messages again (nothing accepted is lost)."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from datetime import UTC, datetime

from django.db import IntegrityError, transaction
from django.db.models import F

from alert_manager.kafka_consumer import KafkaRecord, StoreResult
from alert_manager.notices_json import MAX_MESSAGE_BYTES, NoticeRejected, is_voevent_message, parse_json_notice
from alert_manager.services._constants import OVERSIZE_KEEP_BYTES
from alert_manager.services.intake import alert_queue_many, extract_ivorn
from alert_manager.voevent import MAX_PACKET_BYTES
from pyrosapp.models import Alert

log = logging.getLogger("pyros.alert_manager")


def alert_receive_kafka(*, records: list[KafkaRecord]) -> list[StoreResult]:
    """Persist every record (one multi-row INSERT for a batch, else one INSERT each), then queue the new ones;
    returns what was done with each, in order. The INSERT comes first: a redelivery or a repeat is looked up only
    when the unique constraints refuse a row (no query before the INSERT on the latency path)."""
    items = [_prepare(record) for record in records]
    ids = _insert_batch(items) if len(items) > 1 else None
    results: list[StoreResult] = []
    to_queue: list[int] = []
    for index, item in enumerate(items):
        if ids is not None:
            alert_id, note = ids[index], ""
            _log_rejected(item, alert_id)
        else:  # one message, or a batch holding a redelivery or a repeat: row by row
            alert_id, note = _insert_one(item)
        if note == "" and item.status != Alert.Status.REJECTED:
            to_queue.append(alert_id)
        results.append(StoreResult.of(item.record, created=note == "", object_id=alert_id, note=note))
    alert_queue_many(alert_ids=to_queue)
    return results


@dataclasses.dataclass
class _Prepared:
    """One new message ready to be written: what its row will hold."""

    record: KafkaRecord
    stored: bytes
    sha256: str
    received_unix: float
    status: str
    reason: str
    ivorn: str | None
    voevent: bool

    @property
    def received_at(self) -> datetime:
        return datetime.fromtimestamp(self.received_unix, tz=UTC)

    def row(self) -> Alert:
        """The row (not saved): the fields of a VTP packet's row (``intake._insert_alert``) plus the transport's."""
        record = self.record
        timings = {"received": self.received_unix}
        if record.timestamp_ms is not None:
            timings["kafka_timestamp"] = record.timestamp_ms / 1000.0
        return Alert(ivorn=self.ivorn, raw_xml=self.stored, sha256=self.sha256, received_at=self.received_at,
                     status=self.status, status_reason=self.reason[:500], timings=timings,
                     processed_at=self.received_at if self.status == Alert.Status.REJECTED else None,
                     transport=Alert.Transport.KAFKA,
                     payload_format=Alert.Format.VOEVENT if self.voevent else Alert.Format.JSON,
                     kafka_topic=record.topic, kafka_partition=record.partition, kafka_offset=record.offset)


def _prepare(record: KafkaRecord) -> _Prepared:
    received_unix = time.time()
    raw = bytes(record.value)
    voevent = is_voevent_message(raw, topic=record.topic)
    limit = MAX_PACKET_BYTES if voevent else MAX_MESSAGE_BYTES
    status, reason, stored, ivorn = Alert.Status.RECEIVED, "", raw, None
    if len(raw) > limit:
        status, stored = Alert.Status.REJECTED, raw[:OVERSIZE_KEEP_BYTES]
        reason = f"message too large: {len(raw)} bytes (limit {limit}); first {OVERSIZE_KEEP_BYTES} kept"
    elif not raw.strip():
        status, reason = Alert.Status.REJECTED, "empty message"
    elif voevent:
        ivorn = extract_ivorn(raw)
    else:
        try:  # the IVORN of a JSON notice comes from its content: the same notice twice is one notice
            ivorn = parse_json_notice(raw, topic=record.topic).ivorn
        except NoticeRejected:
            ivorn = None  # processing rejects it with the reason, like any bad packet
    return _Prepared(record=record, stored=stored, sha256=hashlib.sha256(raw).hexdigest(),
                     received_unix=received_unix, status=status, reason=reason, ivorn=ivorn, voevent=voevent)


def _insert_batch(items: list[_Prepared]) -> list[int] | None:
    """One multi-row INSERT in one transaction; None (nothing written) when the batch holds a message twice, an
    IVORN twice, or a message or notice stored before (the unique constraints refuse the batch)."""
    ivorns = [item.ivorn for item in items if item.ivorn is not None]
    idents = {item.record.ident for item in items}
    if len(set(ivorns)) != len(ivorns) or len(idents) != len(items):
        return None
    try:
        with transaction.atomic():
            rows = Alert.objects.bulk_create([item.row() for item in items])
    except IntegrityError:
        return None
    return [row.pk for row in rows]


def _insert_one(item: _Prepared) -> tuple[int, str]:
    """(alert id, note): one INSERT; when refused, the row already holding this message ("redelivered") or this
    notice ("repeat": its ``repeats`` counter goes up)."""
    record = item.record
    try:
        with transaction.atomic():
            alert = item.row()
            alert.save(force_insert=True)
    except IntegrityError:
        existing = (Alert.objects.filter(kafka_topic=record.topic, kafka_partition=record.partition,
                                         kafka_offset=record.offset).order_by().values_list("pk", flat=True).first())
        if existing is not None:
            log.info("kafka %s[%d]@%d redelivered: already stored as alert %s", *record.ident, existing)
            return existing, "redelivered"
        prior = None
        if item.ivorn is not None:
            prior = Alert.objects.filter(ivorn=item.ivorn).order_by().values_list("pk", flat=True).first()
        if prior is None:
            raise
        Alert.objects.filter(pk=prior).update(repeats=F("repeats") + 1)
        log.info("kafka %s[%d]@%d repeats %s (alert %s): recognised, not stored again", *record.ident, item.ivorn,
                 prior)
        return prior, "repeat"
    _log_rejected(item, alert.pk)
    return alert.pk, ""


def _log_rejected(item: _Prepared, alert_id: int) -> None:
    if item.status == Alert.Status.REJECTED:
        log.warning("alert %s rejected at intake: %s", alert_id, item.reason)
