"""Burst intake: packets that arrive together are stored in one transaction and queued in a few
messages, with the single-packet guarantees kept (nothing lost, repeats recognised, bad packets
stored rejected, database down -> spooled)."""

from __future__ import annotations

import time
from pathlib import Path

from django.db import OperationalError

from alert_manager import intake, services
from alert_manager.services import processing
from alert_manager.tests.helpers import NIGHT, swift_packet
from pyrosapp.models import Alert


def _burst(n: int, first_trig: int) -> list[bytes]:
    return [swift_packet("BAT_GRB_Pos", first_trig + i, 1, NIGHT, 10.0, 20.0, 0.05, role="test") for i in range(n)]


def test_fifty_packets_at_once_are_all_stored_and_queued_in_chunks(db, messages) -> None:  # noqa: ANN001
    burst = _burst(50, 300000)
    now = time.time()
    ids = services.alert_receive_many(packets=[(raw, now) for raw in burst])
    assert None not in ids and len(set(ids)) == 50
    stored = {a.pk: a for a in Alert.objects.filter(pk__in=ids)}
    assert [bytes(stored[pk].raw_xml) for pk in ids] == burst  # exact bytes, in arrival order
    assert all(a.status == Alert.Status.RECEIVED and a.timings == {"received": now} for a in stored.values())
    assert [name for name, _ in messages] == ["process_alerts"] * -(-50 // services.PROCESS_CHUNK)
    assert [pk for _, kw in messages for pk in kw["alert_ids"]] == ids


def test_repeats_in_a_batch_are_recognised_and_bad_packets_stored_rejected(db, messages) -> None:  # noqa: ANN001
    earlier = services.alert_receive(raw=swift_packet("BAT_GRB_Pos", 301000, 1, NIGHT, 10.0, 20.0, 0.05))
    messages.clear()
    burst = _burst(20, 301100)
    repeat_of_earlier = swift_packet("BAT_GRB_Pos", 301000, 1, NIGHT, 10.0, 20.0, 0.05).replace(b"<What>", b"<What>\n")
    repeat_in_batch = burst[3].replace(b"<What>", b"<What>\n ")
    packets = [*burst[:10], repeat_of_earlier, b"   ", *burst[10:], repeat_in_batch]
    ids = services.alert_receive_many(packets=[(raw, time.time()) for raw in packets])
    assert ids[10] == earlier and ids[-1] == ids[3]
    assert Alert.objects.get(pk=earlier).repeats == 1 and Alert.objects.get(pk=ids[3]).repeats == 1
    assert Alert.objects.get(pk=ids[11]).status == Alert.Status.REJECTED
    assert Alert.objects.count() == 1 + 20 + 1  # the earlier one, the burst, the empty packet
    queued = [pk for _, kw in messages for pk in kw["alert_ids"]]
    assert sorted(queued) == sorted(ids[:10] + ids[12:-1])  # each new valid packet once, repeats and rejects not


def test_database_down_spools_the_whole_batch(db, messages, monkeypatch, tmp_path: Path, settings) -> None:  # noqa: ANN001
    settings.VAR_DIR = tmp_path
    burst = _burst(5, 302000)

    def db_down(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise OperationalError("could not connect to server")

    monkeypatch.setattr(Alert.objects, "bulk_create", db_down)
    assert services.alert_receive_many(packets=[(raw, time.time()) for raw in burst]) == [None] * 5
    assert sorted(p.read_bytes() for p in (tmp_path / "alert-spool" / "incoming").glob("*.xml")) == sorted(burst)
    assert messages == []


def test_the_writer_thread_stores_every_submitted_packet(transactional_db, messages) -> None:  # noqa: ANN001
    writer = intake._Writer()
    burst = _burst(50, 303000)
    for raw in burst:
        writer.submit(raw, time.time())
    writer.stop()
    assert sorted(bytes(a.raw_xml) for a in Alert.objects.all()) == sorted(burst)
    queued = [kw.get("alert_ids", [kw.get("alert_id")]) for _, kw in messages]
    assert sorted(pk for chunk in queued for pk in chunk) == sorted(Alert.objects.values_list("pk", flat=True))


def test_a_lone_packet_is_queued_alone_on_the_latency_path(transactional_db, messages) -> None:  # noqa: ANN001
    writer = intake._Writer()
    writer.submit(swift_packet("BAT_GRB_Pos", 304000, 1, NIGHT, 10.0, 20.0, 0.05), time.time())
    writer.stop()
    alert = Alert.objects.get()
    assert messages == [("process_alert", {"alert_id": alert.pk})]


def test_a_chunk_is_processed_alert_by_alert(alert_observatory, messages) -> None:  # noqa: ANN001
    ids = services.alert_receive_many(packets=[(raw, time.time()) for raw in _burst(12, 305000)])
    assert services.alert_process_many(alert_ids=ids) == 12
    assert services.alert_process_many(alert_ids=ids) == 0  # claimed already: a second delivery is harmless
    assert set(Alert.objects.filter(pk__in=ids).values_list("status", flat=True)) == {Alert.Status.IGNORED}


def test_quiet_notices_of_one_chunk_join_the_events_the_chunk_creates(alert_observatory, messages) -> None:  # noqa: ANN001
    """Test packets of one burst in one chunk: same trigger, then another mission coinciding in time,
    end up in one test event that holds both missions and triggers (and no request)."""
    from datetime import timedelta

    from alert_manager.tests.packets import make_packet
    from pyrosapp.models import AlertEvent

    first = swift_packet("BAT_GRB_Pos", 306000, 1, NIGHT, 10.0, 20.0, 0.05, role="test")
    again = swift_packet("XRT_Position", 306000, 2, NIGHT, 10.01, 20.0, 0.002, role="test")
    svom = make_packet("ivo://org.svom/fsc#sb26011599_eclairs-wakeup", role="test", params={"Packet_Type": "202"},
                       groups={"Svom_Identifiers": {"Burst_Id": "sb26011599"}}, time_utc=NIGHT + timedelta(seconds=4),
                       ra_deg=10.02, dec_deg=20.01, error_deg=0.1)
    other = swift_packet("BAT_GRB_Pos", 306001, 1, NIGHT + timedelta(hours=2), 200.0, -30.0, 0.05, role="test")
    ids = services.alert_receive_many(packets=[(raw, time.time()) for raw in (first, again, svom, other)])
    assert services.alert_process_many(alert_ids=ids) == 4
    alerts = [Alert.objects.get(pk=pk) for pk in ids]
    assert {a.status for a in alerts} == {Alert.Status.IGNORED}
    assert alerts[0].event_id == alerts[1].event_id == alerts[2].event_id != alerts[3].event_id
    event = AlertEvent.objects.get(pk=alerts[0].event_id)
    assert event.is_test and event.request_id is None and event.status == AlertEvent.Status.IGNORED
    assert sorted(event.missions) == ["SVOM", "Swift"] and len(event.trigger_ids) == 2
    assert event.burst_time == NIGHT
    assert "same" in alerts[1].status_reason and "coincides" in alerts[2].status_reason
    assert AlertEvent.objects.count() == 2


def test_a_failing_bulk_write_falls_back_to_one_by_one(alert_observatory, messages, monkeypatch) -> None:  # noqa: ANN001
    ids = services.alert_receive_many(packets=[(raw, time.time()) for raw in _burst(5, 307000)])

    def broken(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(processing, "_bulk_save", broken)
    assert services.alert_process_many(alert_ids=ids) == 5
    assert set(Alert.objects.filter(pk__in=ids).values_list("status", flat=True)) == {Alert.Status.IGNORED}
    assert Alert.objects.filter(pk__in=ids, event__isnull=False).count() == 5


def test_a_parser_crash_rejects_that_alert_and_the_chunk_goes_on(alert_observatory, messages, monkeypatch) -> None:  # noqa: ANN001
    ids = services.alert_receive_many(packets=[(raw, time.time()) for raw in _burst(3, 309000)])
    real = processing.parse_voevent

    def parse(raw: bytes):  # noqa: ANN202
        if b"309001" in raw:
            raise RuntimeError("unexpected parser failure")
        return real(raw)

    monkeypatch.setattr(processing, "parse_voevent", parse)
    assert services.alert_process_many(alert_ids=ids) == 3
    statuses = dict(Alert.objects.filter(pk__in=ids).values_list("pk", "status"))
    assert statuses == {ids[0]: Alert.Status.IGNORED, ids[1]: Alert.Status.REJECTED, ids[2]: Alert.Status.IGNORED}
    assert "parser error" in Alert.objects.get(pk=ids[1]).status_reason
