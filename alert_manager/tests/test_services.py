"""The alert pipeline on the database: intake (persist first), processing, grouping, strategies,
pre-emption, position updates and retractions. Celery is not involved here (the task is a one-line call of
``alert_process``); the majordome acts for real on the observatory state, and the commands it sends the devices
are recorded (``telescope``: they leave the process)."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from django.db import OperationalError

from alert_manager import services
from alert_manager.services import intake, processing
from alert_manager.tests.helpers import NIGHT, svom_packet, swift_packet, zenith_ra_dec
from alert_manager.tests.packets import make_packet
from pyrosapp.models import Alert, AlertEvent, Log, ObservatoryState, Request, Sequence, Strategy


@pytest.fixture
def queued(monkeypatch) -> list[int]:  # noqa: ANN001
    """Record what intake queues instead of publishing to a broker."""
    ids: list[int] = []
    monkeypatch.setattr(intake, "alert_queue", lambda *, alert_id: ids.append(alert_id) or True)
    return ids


def ingest(raw: bytes) -> Alert:
    alert_id = services.alert_receive(raw=raw)
    assert alert_id is not None
    services.alert_process(alert_id=alert_id)
    return Alert.objects.get(pk=alert_id)


# --- Intake ------------------------------------------------------------------------------------


def test_intake_stores_the_exact_bytes_before_queueing(db, queued) -> None:  # noqa: ANN001
    raw = swift_packet("BAT_GRB_Pos", 100001, 1, NIGHT, 10.0, 20.0, 0.05)
    alert_id = services.alert_receive(raw=raw)
    alert = Alert.objects.get(pk=alert_id)
    assert bytes(alert.raw_xml) == raw
    assert alert.ivorn == "ivo://nasa.gsfc.gcn/SWIFT#BAT_GRB_Pos_100001-1"
    assert alert.status == Alert.Status.RECEIVED and "received" in alert.timings
    assert queued == [alert_id]


def test_a_repeated_ivorn_is_recognised_not_duplicated(db, queued) -> None:  # noqa: ANN001
    raw = swift_packet("BAT_GRB_Pos", 100002, 1, NIGHT, 10.0, 20.0, 0.05)
    first = services.alert_receive(raw=raw)
    # The same IVORN re-formatted (Comet's SHA-1 duplicate check lets this through).
    again = services.alert_receive(raw=raw.replace(b"<What>", b"<What>\n  "))
    assert again == first
    assert Alert.objects.count() == 1
    assert Alert.objects.get(pk=first).repeats == 1
    assert queued == [first]


def test_broker_down_leaves_the_row_received_and_process_pending_queues_it(db, monkeypatch) -> None:  # noqa: ANN001
    from alert_manager import tasks

    def broker_down(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise OperationalError("connection refused")

    monkeypatch.setattr(tasks.process_alert, "apply_async", broker_down)
    alert_id = services.alert_receive(raw=swift_packet("BAT_GRB_Pos", 100003, 1, NIGHT, 10.0, 20.0, 0.05))
    assert Alert.objects.get(pk=alert_id).status == Alert.Status.RECEIVED
    assert Log.objects.filter(message__contains="not queued").exists()

    sent: list[dict] = []
    monkeypatch.setattr(tasks.process_alert, "apply_async", lambda **kw: sent.append(kw["kwargs"]))
    assert services.alert_process_pending(pending_after_s=3600) == 0  # too recent: may still be in the queue
    assert services.alert_process_pending(pending_after_s=0) == 1
    assert sent == [{"alert_id": alert_id}]


def test_database_down_spools_the_packet_and_process_pending_imports_it(db, queued, monkeypatch,
                                                                       tmp_path: Path, settings) -> None:  # noqa: ANN001
    settings.VAR_DIR = tmp_path
    raw = swift_packet("BAT_GRB_Pos", 100004, 1, NIGHT, 10.0, 20.0, 0.05)
    real_insert = intake._insert_alert

    def db_down(**kwargs):  # noqa: ANN003, ANN202
        raise OperationalError("could not connect to server")

    monkeypatch.setattr(intake, "_insert_alert", db_down)
    assert services.alert_receive(raw=raw) is None
    spooled = list((tmp_path / "alert-spool" / "incoming").glob("*.xml"))  # the one spool alert-intake reads
    assert [p.read_bytes() for p in spooled] == [raw]

    monkeypatch.setattr(intake, "_insert_alert", real_insert)
    services.alert_process_pending()  # too fresh: alert-intake's to import
    assert not Alert.objects.exists()
    services.alert_process_pending(pending_after_s=0)
    assert bytes(Alert.objects.get().raw_xml) == raw
    assert not list((tmp_path / "alert-spool" / "incoming").glob("*.xml"))
    assert len(queued) == 1


# --- Bad input ----------------------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<voe:VOEvent xmlns:voe="http://www.ivoa.net/xml/VOEvent/v2.0" ivorn="ivo://evil/x#1" role="observation"
 version="2.0"><What><Param name="x" value="&lol3;"/></What></voe:VOEvent>"""
XXE = b"""<?xml version="1.0"?>
<!DOCTYPE v [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<voe:VOEvent xmlns:voe="http://www.ivoa.net/xml/VOEvent/v2.0" ivorn="ivo://evil/x#2" role="observation"
 version="2.0"><What><Param name="x" value="&xxe;"/></What></voe:VOEvent>"""


@pytest.mark.parametrize(("name", "raw", "reason"), [
    ("malformed", b"<VOEvent this is not xml", "malformed"),
    ("truncated", swift_packet("BAT_GRB_Pos", 1, 1, NIGHT, 1.0, 2.0, 0.1)[:300], "truncated"),
    ("not a VOEvent", b"<html><body>hello</body></html>", "not a VOEvent"),
    ("bad role", make_packet("ivo://pyros/tests#r", role="attack"), "invalid role"),
    ("no ivorn", b"<voe:VOEvent xmlns:voe='http://www.ivoa.net/xml/VOEvent/v2.0' role='observation' "
                 b"version='2.0'/>", "no ivorn"),
    ("version 3", make_packet("ivo://pyros/tests#v3", version="3.0"), "version"),
    ("billion laughs", BILLION_LAUGHS, "DOCTYPE"),
    ("external entity", XXE, "DOCTYPE"),
    ("10 MB", b"<voe:VOEvent ivorn='ivo://evil/big#1'>" + b"x" * (10 * 1024 * 1024) + b"</voe:VOEvent>",
     "too large"),
])
def test_bad_packets_are_stored_rejected_with_a_logged_reason(db, queued, name: str, raw: bytes,  # noqa: ANN001
                                                              reason: str) -> None:
    alert_id = services.alert_receive(raw=raw)
    if queued:
        services.alert_process(alert_id=alert_id)
    alert = Alert.objects.get(pk=alert_id)
    assert alert.status == Alert.Status.REJECTED
    assert reason.lower() in alert.status_reason.lower()
    assert len(bytes(alert.raw_xml)) <= services.OVERSIZE_KEEP_BYTES or bytes(alert.raw_xml) == raw
    assert Log.objects.filter(message__contains=f"alert {alert_id} rejected").exists()
    assert not AlertEvent.objects.exists()
    # The next packet goes through as usual.
    ok = ingest(swift_packet("BAT_GRB_Pos", 100005, 1, NIGHT, 10.0, 20.0, 0.05))
    assert ok.status in (Alert.Status.PROCESSED, Alert.Status.IGNORED) and ok.event is not None


# --- Triggering, pre-emption, updates -------------------------------------------------------------


def test_swift_bat_then_xrt_one_event_refined_position_no_repoint_inside_the_field(
        alert_observatory, queued, observing_night, telescope) -> None:  # noqa: ANN001
    site = alert_observatory.site
    ra, dec = zenith_ra_dec(site.latitude_deg, site.longitude_deg, NIGHT)
    with time_machine.travel(NIGHT + timedelta(seconds=20), tick=False):
        bat = ingest(swift_packet("BAT_GRB_Pos", 200001, 1, NIGHT, ra, dec, 0.05))
    event = bat.event
    event.refresh_from_db()
    assert event.status == AlertEvent.Status.OBSERVING
    request = event.request
    assert request is not None and request.is_alert and request.program == alert_observatory.program
    assert request.status == Request.Status.SUBMITTED
    first = request.sequences.order_by("order").first()
    assert first.priority == 10 and first.window_start == NIGHT + timedelta(seconds=20)
    plan = first.albums.get().plans.get()
    assert (plan.filter.name, plan.exposure_s, plan.count) == ("R", 60.0, 10)
    # the slew left first (camera aborted, mount unparked), before the request existed; the pre-emption then
    # does not slew again: it makes the burst's first sequence the next to run
    assert telescope.commands == [("abort",), ("unpark",), ("slew", pytest.approx(ra), pytest.approx(dec))]
    assert ObservatoryState.objects.get().preempt_sequence_id == first.pk and first.status == Sequence.Status.PLANNED
    assert Log.objects.filter(message__contains=f"pre-emption by sequence {first.pk}: alert {event.name}").exists()
    assert {"parsed", "grouped", "request_built", "preempt_called"} <= bat.timings.keys()

    # XRT 50 s later: 0.02 deg away with a 5" error: inside the field, the telescope stays.
    with time_machine.travel(NIGHT + timedelta(seconds=70), tick=False):
        xrt = ingest(swift_packet("XRT_Pos", 200001, 2, NIGHT, ra + 0.02, dec, 0.0014, packet_type=67))
    event.refresh_from_db()
    assert xrt.event_id == event.pk and AlertEvent.objects.count() == 1
    assert (event.ra_deg, event.error_deg) == (pytest.approx(ra + 0.02), pytest.approx(0.0014))
    assert event.request_id == request.pk and Request.objects.count() == 1
    assert len(telescope.slews) == 1 and ObservatoryState.objects.get().abort_sequence_id is None
    assert "no re-point" in xrt.status_reason


def test_a_position_update_leaving_the_field_repoints_the_executing_sequence(
        alert_observatory, queued, observing_night, telescope) -> None:  # noqa: ANN001
    site = alert_observatory.site
    ra, dec = zenith_ra_dec(site.latitude_deg, site.longitude_deg, NIGHT)
    with time_machine.travel(NIGHT + timedelta(seconds=20), tick=False):
        bat = ingest(swift_packet("BAT_GRB_Pos", 200002, 1, NIGHT, ra, dec, 0.05))
    event = AlertEvent.objects.get(pk=bat.event_id)
    sequences = list(event.request.sequences.order_by("order"))
    Sequence.objects.filter(pk=sequences[0].pk).update(status=Sequence.Status.EXECUTING)  # the majordome runs it
    # The refined position is 0.25 deg away: beyond the 0.142 deg inscribed radius of the camera field.
    with time_machine.travel(NIGHT + timedelta(seconds=70), tick=False):
        ingest(swift_packet("XRT_Pos", 200002, 2, NIGHT, ra, dec + 0.25, 0.0014, packet_type=67))
    # the mount goes to the new position and the running sequence is interrupted, to restart there first
    assert telescope.slews == [(pytest.approx(ra), pytest.approx(dec)), (pytest.approx(ra), pytest.approx(dec + 0.25))]
    state = ObservatoryState.objects.get()
    assert (state.abort_sequence_id, state.abort_kind) == (sequences[0].pk, ObservatoryState.StopKind.INTERRUPT)
    assert "leaves the field" in state.abort_reason and state.preempt_sequence_id == sequences[0].pk
    for sequence in Sequence.objects.filter(request=event.request):
        assert sequence.dec_deg == pytest.approx(dec + 0.25)  # the waiting cadence follows too
    event.refresh_from_db()
    assert event.pointed_dec_deg == pytest.approx(dec + 0.25)


def test_not_observable_now_schedules_for_later_without_preempting(alert_observatory, queued,
                                                                   observing_night, telescope) -> None:  # noqa: ANN001
    site = alert_observatory.site
    ra, _ = zenith_ra_dec(site.latitude_deg, site.longitude_deg, NIGHT)
    # 8 h of RA away from the meridian and at Dec +30: below 20 deg now, rises before morning.
    target_ra = (ra + 105.0) % 360.0
    with time_machine.travel(NIGHT + timedelta(seconds=20), tick=False):
        alert = ingest(swift_packet("BAT_GRB_Pos", 200003, 1, NIGHT, target_ra, 30.0, 0.05))
    event = AlertEvent.objects.get(pk=alert.event_id)
    assert event.status == AlertEvent.Status.AWAITING_VISIBILITY, event.status_reason
    assert event.request is not None
    # the majordome would have let it take the telescope (night, safe, automatic): it was not asked to
    assert telescope.commands == [] and ObservatoryState.objects.get().preempt_sequence_id is None


@pytest.mark.parametrize(("extra", "role", "reason"), [
    ({}, "test", "role=test"),
    ({"Def_NOT_a_GRB": "true"}, "observation", "not a GRB"),
    ({"Target_in_Flt_Catalog": "true"}, "observation", "catalogue source"),
])
def test_test_packets_and_non_grbs_never_create_a_request(alert_observatory, queued, observing_night, telescope,  # noqa: ANN001
                                                          extra: dict, role: str, reason: str) -> None:
    site = alert_observatory.site
    ra, dec = zenith_ra_dec(site.latitude_deg, site.longitude_deg, NIGHT)
    with time_machine.travel(NIGHT + timedelta(seconds=20), tick=False):
        alert = ingest(swift_packet("BAT_GRB_Pos", 200004, 1, NIGHT, ra, dec, 0.05, role=role, extra=extra))
    assert alert.status == Alert.Status.IGNORED and reason in alert.status_reason
    assert alert.event is not None and alert.event.request is None  # stored and visible, nothing triggered
    assert Request.objects.count() == 0 and telescope.commands == []
    assert ObservatoryState.objects.get().preempt_sequence_id is None


def test_error_region_larger_than_the_strategy_allows_does_not_point(alert_observatory, queued,
                                                                     observing_night, telescope) -> None:  # noqa: ANN001
    site = alert_observatory.site
    ra, dec = zenith_ra_dec(site.latitude_deg, site.longitude_deg, NIGHT)
    gbm = make_packet("ivo://nasa.gsfc.gcn/Fermi#GBM_Gnd_Pos_2026-01-15T23:00:00.00_790000000_1-500",
                      params={"Packet_Type": "112", "TrigID": "790000000"}, time_utc=NIGHT, ra_deg=ra, dec_deg=dec,
                      error_deg=4.5)
    with time_machine.travel(NIGHT + timedelta(seconds=60), tick=False):
        alert = ingest(gbm)
    event = AlertEvent.objects.get(pk=alert.event_id)
    assert event.status == AlertEvent.Status.NOT_ACTIONABLE and "larger than" in event.status_reason
    assert Request.objects.count() == 0 and telescope.commands == []
    assert ObservatoryState.objects.get().preempt_sequence_id is None


def test_strategy_switch_and_time_since_burst(alert_observatory, queued, observing_night) -> None:  # noqa: ANN001
    site = alert_observatory.site
    ra, dec = zenith_ra_dec(site.latitude_deg, site.longitude_deg, NIGHT)
    # A notice processed 2 h after the burst: the immediate sequence (first hour) is over, the cadence is left.
    with time_machine.travel(NIGHT + timedelta(hours=2), tick=False):
        late = ingest(swift_packet("BAT_GRB_Pos", 200005, 1, NIGHT, ra, dec, 0.05))
    sequences = list(late.event.request.sequences.all())
    assert [s.name.rpartition(" ")[2] for s in sequences] == ["cadence"]
    assert sequences[0].albums.get().plans.get().exposure_s == 120.0

    # Operators switch to a strategy that does not trigger: a new burst is stored, not observed.
    quiet = Strategy.objects.create(name="Quiet", triggers=False, template=alert_observatory.strategy.template)
    services.strategy_activate(strategy=quiet)
    alert_observatory.strategy.refresh_from_db()
    assert not alert_observatory.strategy.is_active  # same alert types: one active strategy
    with time_machine.travel(NIGHT + timedelta(hours=2, seconds=30), tick=False):
        alert = ingest(swift_packet("BAT_GRB_Pos", 200006, 1, NIGHT + timedelta(hours=2), ra, dec, 0.05))
    event = AlertEvent.objects.get(pk=alert.event_id)
    assert event.request is None and "does not trigger" in event.status_reason


def test_svom_retraction_cancels_the_request_and_refunds_the_time(alert_observatory, queued,
                                                                  observing_night) -> None:  # noqa: ANN001
    site = alert_observatory.site
    ra, dec = zenith_ra_dec(site.latitude_deg, site.longitude_deg, NIGHT)
    burst = "sb26011501"
    with time_machine.travel(NIGHT + timedelta(seconds=40), tick=False):
        wakeup = ingest(svom_packet(burst, "eclairs-wakeup", 202, NIGHT, ra, dec, 0.1))
    event = AlertEvent.objects.get(pk=wakeup.event_id)
    request = event.request
    alert_observatory.allocation.refresh_from_db()
    assert request.reserved_s > 0 and alert_observatory.allocation.reserved_s == pytest.approx(request.reserved_s)

    retraction = svom_packet(burst, "retraction", 219, NIGHT, ra, dec, 0.1,
                             citations=((f"ivo://org.svom/fsc#{burst}_eclairs-wakeup", "retraction"),))
    with time_machine.travel(NIGHT + timedelta(minutes=10), tick=False):
        retract = ingest(retraction)
    assert retract.event_id == event.pk
    event.refresh_from_db()
    request.refresh_from_db()
    alert_observatory.allocation.refresh_from_db()
    assert event.status == AlertEvent.Status.RETRACTED
    assert request.status == Request.Status.CANCELLED
    assert alert_observatory.allocation.reserved_s == pytest.approx(0.0)
    assert set(request.sequences.values_list("status", flat=True)) == {Sequence.Status.CANCELLED}


def test_lvk_retraction_cancels_the_events_request(alert_observatory, queued, observing_night) -> None:  # noqa: ANN001
    from pyrosapp.tests.factories import RequestFactory

    initial = make_packet("ivo://gwnet/LVC#S260115a-2-Initial", params={"Packet_Type": "151", "GraceID": "S260115a",
                                                                         "AlertType": "Initial"})
    with time_machine.travel(NIGHT, tick=False):
        first = ingest(initial)
    event = first.event
    assert event.status == AlertEvent.Status.NOT_ACTIONABLE  # a sky map only: nothing to point at
    # An operator built a tiling request for it by hand.
    request = RequestFactory(program=alert_observatory.program, owner=alert_observatory.admin, is_alert=True,
                             alert_event=event, status=Request.Status.SUBMITTED)
    AlertEvent.objects.filter(pk=event.pk).update(request=request)
    retraction = make_packet("ivo://gwnet/LVC#S260115a-3-Retraction",
                             params={"Packet_Type": "164", "GraceID": "S260115a", "AlertType": "Retraction"})
    with time_machine.travel(NIGHT + timedelta(minutes=20), tick=False):
        ingest(retraction)
    event.refresh_from_db()
    request.refresh_from_db()
    assert event.status == AlertEvent.Status.RETRACTED and request.status == Request.Status.CANCELLED


def test_gbm_and_swift_of_one_burst_join_one_event_with_the_best_position(alert_observatory, queued,
                                                                         observing_night, telescope) -> None:  # noqa: ANN001
    site = alert_observatory.site
    ra, dec = zenith_ra_dec(site.latitude_deg, site.longitude_deg, NIGHT)
    gbm = make_packet("ivo://nasa.gsfc.gcn/Fermi#GBM_Flt_Pos_2026-01-15T23:00:00.00_790000001_1-300",
                      params={"Packet_Type": "111", "TrigID": "790000001"}, time_utc=NIGHT, ra_deg=ra + 3.0,
                      dec_deg=dec, error_deg=5.0)
    with time_machine.travel(NIGHT + timedelta(seconds=10), tick=False):
        first = ingest(gbm)
    with time_machine.travel(NIGHT + timedelta(seconds=25), tick=False):
        second = ingest(swift_packet("BAT_GRB_Pos", 200007, 1, NIGHT + timedelta(seconds=1), ra, dec, 0.05))
    assert first.event_id == second.event_id
    event = AlertEvent.objects.get(pk=first.event_id)
    assert sorted(event.missions) == ["Fermi", "Swift"]
    assert event.trigger_ids == {"Fermi-GBM": "790000001", "Swift": "200007"}
    assert event.error_deg == pytest.approx(0.05) and event.request is not None
    # one pre-emption, at Swift's position (GBM's 5 deg circle alone did not point)
    assert telescope.slews == [(pytest.approx(ra), pytest.approx(dec))]
    first = event.request.sequences.order_by("order").first()
    assert ObservatoryState.objects.get().preempt_sequence_id == first.pk


def test_processing_commits_do_not_wait_for_the_disk_but_intake_commits_do(postgres_required, transactional_db,  # noqa: ANN001
                                                                            queued, monkeypatch) -> None:
    """PostgreSQL: processing runs with synchronous_commit off (its commits waited 3-8 ms each for the WAL
    flush); the setting is restored afterwards, so intake (which deletes spool files after its commit) and
    everything else on the connection keep durable commits."""
    from django.db import connection

    def setting() -> str:
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            return cursor.fetchone()[0]

    seen: list[str] = []
    real = processing._process_rows
    monkeypatch.setattr(processing, "_process_rows", lambda *a, **kw: (seen.append(setting()), real(*a, **kw))[1])
    first = services.alert_receive(raw=swift_packet("BAT_GRB_Pos", 308000, 1, NIGHT, 10.0, 20.0, 0.05, role="test"))
    assert setting() == "on"
    services.alert_process(alert_id=first)
    assert setting() == "on"
    ids = services.alert_receive_many(packets=[
        (swift_packet("BAT_GRB_Pos", 308001 + i, 1, NIGHT, 10.0, 20.0, 0.05, role="test"), 0.0) for i in range(3)])
    services.alert_process_many(alert_ids=ids)
    assert seen == ["off", "off"] and setting() == "on"
    assert set(Alert.objects.values_list("status", flat=True)) == {Alert.Status.IGNORED}


def test_a_coarse_notice_of_a_burst_being_observed_is_an_update_not_a_dead_end(
        alert_observatory, queued, observing_night) -> None:  # noqa: ANN001
    """A notice that could not point by itself (2 deg circle) joins an event whose best position can: the event's
    position decides (a follow-up update), in a chunk as alone; it is not filed as "not actionable"."""
    site = alert_observatory.site
    ra, dec = zenith_ra_dec(site.latitude_deg, site.longitude_deg, NIGHT)
    with time_machine.travel(NIGHT + timedelta(seconds=20), tick=False):
        bat = ingest(swift_packet("BAT_GRB_Pos", 200101, 1, NIGHT, ra, dec, 0.05))
    with time_machine.travel(NIGHT + timedelta(seconds=40), tick=False):
        ids = services.alert_receive_many(packets=[
            (swift_packet("BAT_GRB_Pos", 200101, 2, NIGHT, ra + 0.5, dec, 2.0), 0.0),
            (swift_packet("BAT_GRB_Pos", 200102, 1, NIGHT, ra + 40.0, dec, 2.0), 0.0)])
        assert services.alert_process_many(alert_ids=ids) == 2
    coarse, other = (Alert.objects.get(pk=pk) for pk in ids)
    event = AlertEvent.objects.get(pk=bat.event_id)
    assert coarse.event_id == event.pk and event.status == AlertEvent.Status.OBSERVING
    assert "no re-point" in coarse.status_reason and event.error_deg == pytest.approx(0.05)
    assert other.event.status == AlertEvent.Status.NOT_ACTIONABLE and "error radius 2 deg" in other.status_reason


def test_rows_stored_while_the_broker_is_down_are_queued_once_it_is_back(transactional_db, monkeypatch) -> None:  # noqa: ANN001
    import threading

    from alert_manager.tasks import process_alert

    broker_up = threading.Event()
    sent: list[int] = []

    def apply_async(*, kwargs, **options):  # noqa: ANN001, ANN003, ANN202
        if not broker_up.is_set():
            raise ConnectionRefusedError("broker down")
        sent.append(kwargs["alert_id"])

    monkeypatch.setattr(process_alert, "apply_async", apply_async)
    monkeypatch.setattr(intake, "_broker_reachable", broker_up.is_set)
    monkeypatch.setattr(intake, "REQUEUE_EVERY_S", 0.05)
    raw = swift_packet("BAT_GRB_Pos", 100777, 1, NIGHT, 10.0, 20.0, 0.05)
    alert_id = services.alert_receive(raw=raw)
    assert alert_id is not None and sent == [] and Alert.objects.get(pk=alert_id).status == "received"
    stop = threading.Event()
    thread = intake.start_requeue_thread(stop)
    try:
        time.sleep(0.3)
        assert sent == []  # still down: nothing sent, nothing lost
        broker_up.set()
        deadline = time.monotonic() + 5
        while not sent and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sent == [alert_id]  # queued within a fraction of a second of the broker's return
    finally:
        stop.set()
        thread.join(5)
