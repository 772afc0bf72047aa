"""Storing GCN Kafka messages: each message (VOEvent XML or JSON notice, bytes unchanged) becomes an Alert row
with its topic, partition and offset, committed before the consumer commits the offset; then it is queued.

Repeats: a message redelivered after a crash between the row's commit and the offset's commit has the
same (topic, partition, offset) and is recognised as such; the same notice arriving twice (republished, or
by VTP and by Kafka) has the same IVORN (a JSON notice's is derived from its content, see
``alert_manager.notices_json``) and is one notice. A database error propagates: the consumer does not
commit, backs off and gets the same messages again (nothing accepted is lost)."""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import UTC, datetime

from alert_manager.kafka_consumer import KafkaRecord, StoreResult
from alert_manager.notices_json import MAX_MESSAGE_BYTES, NoticeRejected, is_voevent_message, parse_json_notice
from alert_manager.services._constants import OVERSIZE_KEEP_BYTES
from alert_manager.services.intake import _DuplicateIvorn, _insert_alert, alert_queue_many, extract_ivorn
from alert_manager.voevent import MAX_PACKET_BYTES
from pyrosapp.models import Alert

log = logging.getLogger("pyros.alert_manager")


def alert_receive_kafka(*, records: list[KafkaRecord]) -> list[StoreResult]:
    """Persist every record (one INSERT each), then queue the new ones; returns what was done with each."""
    results: list[StoreResult] = []
    to_queue: list[int] = []
    for record in records:
        existing = Alert.objects.filter(kafka_topic=record.topic, kafka_partition=record.partition,
                                        kafka_offset=record.offset).values_list("pk", flat=True).first()
        if existing is not None:
            log.info("kafka %s[%d]@%d redelivered: already stored as alert %s", *record.ident, existing)
            results.append(StoreResult.of(record, created=False, object_id=existing, note="redelivered"))
            continue
        alert_id, queue_it, note = _store_record(record)
        if queue_it:
            to_queue.append(alert_id)
        results.append(StoreResult.of(record, created=note == "", object_id=alert_id, note=note))
    alert_queue_many(alert_ids=to_queue)
    return results


def _store_record(record: KafkaRecord) -> tuple[int, bool, str]:
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
    received_at = datetime.fromtimestamp(received_unix, tz=UTC)
    try:
        alert_id = _insert_alert(
            raw=stored, sha256=hashlib.sha256(raw).hexdigest(), received_at=received_at, ivorn=ivorn, status=status,
            reason=reason, received_unix=received_unix, transport=Alert.Transport.KAFKA,
            payload_format=Alert.Format.VOEVENT if voevent else Alert.Format.JSON, kafka_topic=record.topic,
            kafka_partition=record.partition, kafka_offset=record.offset,
            timings={} if record.timestamp_ms is None else {"kafka_timestamp": record.timestamp_ms / 1000.0})
    except _DuplicateIvorn as dup:
        log.info("kafka %s[%d]@%d repeats %s (alert %s): recognised, not stored again", *record.ident, ivorn,
                 dup.alert_id)
        return dup.alert_id, False, "repeat"
    if status == Alert.Status.REJECTED:
        log.warning("alert %s rejected at intake: %s", alert_id, reason)
        return alert_id, False, ""
    return alert_id, True, ""
