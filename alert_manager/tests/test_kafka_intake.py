"""GCN Kafka into PyROS: every message of ../shared/data/gcn-kafka stored (bytes unchanged, with its topic,
partition and offset) and processed with no error escaping; a redelivered message and a repeated notice are
recognised; through the librdkafka mock cluster, a produced message becomes a stored alert before its offset
is committed, and a consumer restarted before its commit duplicates nothing."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine

from alert_manager.kafka_consumer import KafkaRecord
from alert_manager.services import kafka_intake, processing
from alert_manager.services.kafka_intake import alert_receive_kafka
from pyrosapp.models import Alert, AlertEvent

KAFKA_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "gcn-kafka"


def _corpus() -> list[dict]:
    index = KAFKA_DIR / "index.json"
    if not index.exists():
        pytest.skip(f"GCN Kafka corpus absent: {KAFKA_DIR} (shared data not checked out)")
    return json.loads(index.read_text(encoding="utf-8"))


def _when(entry: dict) -> datetime:
    try:
        moment = datetime.fromisoformat((entry.get("time") or "").replace("Z", "+00:00"))
    except ValueError:
        return datetime(2000, 1, 1, tzinfo=UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _record(entry: dict, offset: int) -> KafkaRecord:
    return KafkaRecord(topic=entry["topic"], partition=0, offset=offset, timestamp_ms=None, key=None,
                       value=(KAFKA_DIR / entry["file"]).read_bytes())


def test_every_corpus_message_is_stored_processed_and_a_redelivery_is_a_repeat(observing_night, telescope,
                                                                              monkeypatch):
    # the majordome runs for real, at night: what it commands the devices is recorded by ``telescope``
    monkeypatch.setattr(kafka_intake, "alert_queue_many", lambda *, alert_ids: True)
    entries = sorted(_corpus(), key=_when)
    records = [_record(entry, offset) for offset, entry in enumerate(entries)]
    for record, entry in zip(records, entries, strict=True):
        with time_machine.travel(_when(entry) + timedelta(seconds=30), tick=False):
            (result,) = alert_receive_kafka(records=[record])
            alert = Alert.objects.get(pk=result.object_id)
            if result.created:
                assert bytes(alert.raw_xml) == record.value  # bytes unchanged, whatever the format
                assert (alert.kafka_topic, alert.kafka_offset, alert.transport) == (record.topic, record.offset,
                                                                                   "kafka")
                processing.alert_process(alert_id=alert.pk)  # nothing may escape: an exception fails here
            else:
                assert result.note == "repeat"  # the same notice twice in the corpus (a republished copy)
    stored = Alert.objects.count()
    assert stored >= len(entries) - 200  # byte-identical copies in the corpus are one notice
    assert not Alert.objects.filter(status__in=["received", "processing"]).exists()
    # redelivery after a crash between the row's commit and the offset's commit: nothing new
    again = alert_receive_kafka(records=records[:50])
    assert all(not r.created and r.note == "redelivered" for r in again)
    assert Alert.objects.count() == stored
    # test notices never trigger: LVK mock superevents (MS...) and tests are stored, never pointed at
    tests = AlertEvent.objects.filter(is_test=True)
    assert tests.exists() and not tests.exclude(request=None).exists()
    lvk_mock = Alert.objects.filter(kafka_topic="igwn.gwalert", trigger_id__startswith="MS")
    assert lvk_mock.exists() and {a.status for a in lvk_mock} <= {"ignored", "rejected"}
    # a series of one event ends in one event: every notice of one LVK superevent in one event
    for trigger in ("MS181101ab", "S230522a"):
        events = set(Alert.objects.filter(trigger_id=trigger).values_list("event_id", flat=True))
        assert len(events - {None}) <= 1, (trigger, events)
    # the majordome slewed to each burst observable at once, and only there (never to a test notice's position)
    observing = AlertEvent.objects.filter(status=AlertEvent.Status.OBSERVING, is_test=False)
    assert observing.exists()
    assert sorted((round(ra, 6), round(dec, 6)) for ra, dec in telescope.slews) == sorted(
        (round(e.pointed_ra_deg, 6), round(e.pointed_dec_deg, 6)) for e in observing)


def test_a_rejected_json_notice_is_stored_with_its_reason(alert_observatory, monkeypatch):
    monkeypatch.setattr(kafka_intake, "alert_queue_many", lambda *, alert_ids: True)
    record = KafkaRecord(topic="gcn.notices.einstein_probe.wxt.alert", partition=0, offset=7, timestamp_ms=None,
                         key=None, value=b'{"ra": 400, "dec": 10')
    (result,) = alert_receive_kafka(records=[record])
    processing.alert_process(alert_id=result.object_id)
    alert = Alert.objects.get(pk=result.object_id)
    assert alert.status == "rejected" and alert.status_reason and bytes(alert.raw_xml) == record.value


def test_a_batch_is_one_insert_and_a_repeat_in_it_is_recognised(alert_observatory, monkeypatch):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    queued: list[int] = []
    monkeypatch.setattr(kafka_intake, "alert_queue_many", lambda *, alert_ids: queued.extend(alert_ids) or True)
    topic = "gcn.notices.einstein_probe.wxt.alert"
    values = [(KAFKA_DIR / e["file"]).read_bytes() for e in _corpus() if e["topic"] == topic][:5]
    records = [KafkaRecord(topic=topic, partition=0, offset=100 + i, timestamp_ms=1_700_000_000_000 + i, key=None,
                           value=value) for i, value in enumerate(values)]
    empty = KafkaRecord(topic=topic, partition=0, offset=99, timestamp_ms=None, key=None, value=b"")
    with CaptureQueriesContext(connection) as queries:
        results = alert_receive_kafka(records=[empty, *records[:3]])
    table = Alert._meta.db_table
    inserts = [q["sql"] for q in queries if q["sql"].startswith(f'INSERT INTO "{table}"')]
    assert len(inserts) == 1  # one multi-row INSERT of the alerts (the rejection's warning also writes a Log row)
    assert [r.created for r in results] == [True] * 4 and [r.offset for r in results] == [99, 100, 101, 102]
    rejected = Alert.objects.get(pk=results[0].object_id)
    assert rejected.status == "rejected" and rejected.processed_at is not None and results[0].object_id not in queued
    assert queued == [r.object_id for r in results[1:]]
    (single,) = alert_receive_kafka(records=[records[3]])  # alone: the row-by-row path writes the same row
    for batch_row, one_row in ((Alert.objects.get(pk=results[1].object_id), Alert.objects.get(pk=single.object_id)),):
        for alert, record in ((batch_row, records[0]), (one_row, records[3])):
            assert bytes(alert.raw_xml) == record.value and alert.status == "received"
            assert (alert.transport, alert.payload_format, alert.kafka_topic, alert.kafka_partition,
                    alert.kafka_offset) == ("kafka", "json", topic, 0, record.offset)
            assert set(alert.timings) == {"received", "kafka_timestamp"} and alert.ivorn.startswith("kafka://")
    # a batch with a redelivered message, a new one and a republished copy of that new one (new offset, same
    # IVORN): the copy makes the batch go row by row; the new one is stored once
    copy = KafkaRecord(topic=topic, partition=0, offset=200, timestamp_ms=None, key=None, value=records[4].value)
    again = alert_receive_kafka(records=[records[0], records[4], copy])
    assert [(r.created, r.note) for r in again] == [(False, "redelivered"), (True, ""), (False, "repeat")]
    assert again[2].object_id == again[1].object_id
    # a batch whose new message repeats a notice stored before: the INSERT is refused, row by row says which
    late = KafkaRecord(topic=topic, partition=0, offset=201, timestamp_ms=None, key=None, value=records[1].value)
    fresh = KafkaRecord(topic=topic, partition=0, offset=202, timestamp_ms=None, key=None, value=b'{"ra": 400}')
    last = alert_receive_kafka(records=[late, fresh])
    assert [(r.created, r.note) for r in last] == [(False, "repeat"), (True, "")]
    assert Alert.objects.get(pk=results[2].object_id).repeats == 1
    # the same message twice in one batch: stored once
    twice = KafkaRecord(topic=topic, partition=0, offset=203, timestamp_ms=None, key=None, value=b'{"x": 1}')
    assert [(r.created, r.note) for r in alert_receive_kafka(records=[twice, twice])] == [(True, ""),
                                                                                         (False, "redelivered")]
    assert Alert.objects.filter(kafka_topic=topic).count() == 8  # 99-104, 202 and 203


@pytest.mark.slow
def test_mock_cluster_message_is_stored_before_its_offset_is_committed(transactional_db, monkeypatch):
    pytest.importorskip("confluent_kafka")
    from alert_manager.kafka_consumer import KafkaIntake, KafkaSettings
    from alert_manager.kafka_mock import MockCluster
    from alert_manager.kafka_process import store

    queued: list[int] = []
    monkeypatch.setattr(kafka_intake, "alert_queue_many", lambda *, alert_ids: queued.extend(alert_ids) or True)
    entry = next(e for e in _corpus() if e["topic"] == "gcn.notices.einstein_probe.wxt.alert")
    raw = (KAFKA_DIR / entry["file"]).read_bytes()
    topic = entry["topic"]
    with MockCluster([topic, "gcn.heartbeat"]) as cluster:
        from alert_manager.kafka_consumer import publish

        settings = KafkaSettings.from_env({"PYROS_KAFKA_BOOTSTRAP": cluster.bootstrap, "PYROS_KAFKA_GROUP": "t1",
                                           "PYROS_KAFKA_TOPICS": topic})
        killed_after_store: list[int] = []

        def store_then_die(records):  # the process dies after its rows commit, before the offset commit
            results = store(records)
            killed_after_store.extend(r.object_id for r in results)
            raise SystemExit("killed between store and commit")

        publish(cluster.bootstrap, topic, [raw])
        # a short session: the dead member's partition goes to the restarted one within ~2 s
        restart = {"session.timeout.ms": 1500, "heartbeat.interval.ms": 300}
        first = KafkaIntake(settings, store=store_then_die, consumer_overrides=restart)
        runner = threading.Thread(target=lambda: pytest.raises(SystemExit, first.run), daemon=True)
        runner.start()
        runner.join(30)
        assert killed_after_store, "the message never reached the store"
        # restarted: the same message comes again (its offset was not committed) and is recognised
        stop = threading.Event()
        seen: list = []
        second = KafkaIntake(settings, store=lambda records: seen.extend(store(records)) or seen[-len(records):],
                             consumer_overrides=restart)
        worker = threading.Thread(target=second.run, args=(stop,), daemon=True)
        worker.start()
        deadline = time.monotonic() + 45
        while not seen and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        worker.join(30)
    assert seen and not seen[0].created and seen[0].note == "redelivered"
    assert Alert.objects.filter(kafka_topic=topic).count() == 1  # nothing lost, nothing duplicated
    alert = Alert.objects.get(kafka_topic=topic)
    assert bytes(alert.raw_xml) == raw and queued == [alert.pk]


def test_alerts_replay_needs_a_cluster_and_publishes_bytes_unchanged(monkeypatch, tmp_path):
    from django.core.management import CommandError, call_command

    message = tmp_path / "ep.json"
    message.write_bytes(b'{"id": ["x"]}')
    monkeypatch.delenv("PYROS_KAFKA_BOOTSTRAP", raising=False)
    with pytest.raises(CommandError, match="PYROS_KAFKA_BOOTSTRAP"):
        call_command("alerts_replay", str(message), "--topic", "gcn.notices.einstein_probe.wxt.alert", "--bootstrap", "")
    pytest.importorskip("confluent_kafka")
    from alert_manager.kafka_mock import MockCluster

    topic = "gcn.notices.einstein_probe.wxt.alert"
    with MockCluster([topic]) as cluster:
        call_command("alerts_replay", str(message), "--topic", topic, "--bootstrap", cluster.bootstrap)
        from confluent_kafka import Consumer

        consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "replay-check",
                             "auto.offset.reset": "earliest"})
        consumer.subscribe([topic])
        received = None
        deadline = time.monotonic() + 20
        while received is None and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                received = msg.value()
        consumer.close()
    assert received == message.read_bytes()


def test_an_einstein_probe_notice_by_kafka_and_a_swift_follow_up_by_vtp_are_one_event(alert_observatory, telescope,
                                                                                      monkeypatch):
    from alert_manager import services
    from alert_manager.services import intake
    from alert_manager.tests.helpers import swift_packet

    monkeypatch.setattr(kafka_intake, "alert_queue_many", lambda *, alert_ids: True)
    monkeypatch.setattr(intake, "alert_queue", lambda *, alert_id: True)  # the majordome: daytime, moves nothing
    t0 = datetime(2026, 12, 3, 20, 0, tzinfo=UTC)
    body = {"$schema": "https://gcn.nasa.gov/schema/v4.1.0/gcn/notices/einstein_probe/wxt/alert.schema.json",
            "instrument": "WXT", "trigger_time": t0.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "id": ["01709131077"],
            "ra": 150.0, "dec": 20.0, "ra_dec_error": 0.05}
    record = KafkaRecord(topic="gcn.notices.einstein_probe.wxt.alert", partition=0, offset=1, timestamp_ms=None,
                         key=None, value=json.dumps(body).encode())
    with time_machine.travel(t0 + timedelta(minutes=2), tick=False):
        (stored,) = alert_receive_kafka(records=[record])
        processing.alert_process(alert_id=stored.object_id)
    with time_machine.travel(t0 + timedelta(hours=5, minutes=1), tick=False):
        xrt_id = services.alert_receive(raw=swift_packet("XRT_Pos", 1240077, 1, t0 + timedelta(hours=5), 150.02,
                                                         20.01, 0.002))
        processing.alert_process(alert_id=xrt_id)
    ep, xrt = Alert.objects.get(pk=stored.object_id), Alert.objects.get(pk=xrt_id)
    assert (ep.transport, xrt.transport) == ("kafka", "vtp")
    assert ep.event_id is not None and xrt.event_id == ep.event_id
    assert sorted(AlertEvent.objects.get(pk=ep.event_id).missions) == ["Einstein Probe", "Swift"]
    assert telescope.commands == []
