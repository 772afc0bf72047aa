"""alert_manager.grouping: notices of one burst end up in one event; re-pointing only when useful."""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from alert_manager.grouping import (
    CandidateEvent,
    SkyPosition,
    best_position,
    event_from_notice,
    event_with_notice,
    group_notice,
    needs_repoint,
)
from alert_manager.tests.packets import make_packet
from alert_manager.voevent import ParsedNotice, parse_voevent


class InMemoryEventStore:
    """What the lead's AlertEvent table does, in memory: feed notices, keep events."""

    def __init__(self) -> None:
        self.events: dict[int, CandidateEvent] = {}
        self.event_of: dict[str, int] = {}  # ivorn -> event id
        self.reasons: list[str] = []
        self._ids = itertools.count(1)

    def feed(self, notice: ParsedNotice) -> int:
        decision = group_notice(notice, self.events.values())
        self.reasons.append(decision.reason)
        if decision.opens_new_event:
            event_id = next(self._ids)
            self.events[event_id] = event_from_notice(notice, event_id)
        else:
            event_id = decision.event_id
            self.events[event_id] = event_with_notice(self.events[event_id], notice)
        self.event_of[notice.ivorn] = event_id
        return event_id


def _arrival_order(notice: ParsedNotice) -> tuple[datetime, str]:
    far_past = datetime(1970, 1, 1, tzinfo=UTC)
    return (notice.authored_utc or notice.event_time_utc or far_past, notice.ivorn)


def test_each_trigger_series_of_the_corpus_ends_in_one_event(
    corpus: list[dict[str, Any]], corpus_bytes: dict[str, bytes]
) -> None:
    notices = sorted((parse_voevent(corpus_bytes[e["file"]]) for e in corpus), key=_arrival_order)
    store = InMemoryEventStore()
    events_of_series: dict[tuple[str | None, str, bool], set[int]] = defaultdict(set)
    for notice in notices:
        event_id = store.feed(notice)
        if notice.trigger_id is not None:
            events_of_series[(notice.trigger_scope, notice.trigger_id, notice.is_test)].add(event_id)
    split = {series: ids for series, ids in events_of_series.items() if len(ids) != 1}
    assert split == {}
    multi = [s for s in events_of_series if sum(1 for n in notices if n.trigger_id == s[1]) > 1]
    assert len(multi) >= 90  # the corpus has 93 multi-notice series: the test exercises real grouping
    # Real coincidences of the corpus are found: GRB seen by Swift BAT (TrigID 772052) and Fermi GBM
    # (TrigID 526890831) 0.2 s apart on 2017-09-12, and GBM/SVOM pairs of 2026.
    swift = next(e for e in store.events.values() if e.trigger_ids.get("Swift") == "772052")
    assert swift.trigger_ids.get("Fermi-GBM") == "526890831"
    assert sum(1 for e in store.events.values() if {"Fermi-GBM", "SVOM"} <= e.trigger_ids.keys()) >= 10
    # Test packets and real ones never share an event.
    for event in store.events.values():
        members = [n for n in notices if n.ivorn in event.ivorns]
        assert len({n.is_test for n in members}) == 1


def test_svom_and_lvk_retractions_join_the_events_they_retract(corpus_bytes: dict[str, bytes]) -> None:
    store = InMemoryEventStore()
    trigger = parse_voevent(corpus_bytes["gcn-notice-parser/grm_285.xml"])  # sb26020402 grm-trigger
    retraction = parse_voevent(corpus_bytes["gcn-notice-parser/grm_286.xml"])
    assert trigger.trigger_id == retraction.trigger_id == "sb26020402"
    first = store.feed(trigger)
    assert store.feed(retraction) == first
    assert trigger.ivorn in retraction.retracted_ivorns

    # LVK: a retraction citing preliminaries joins their event through the citation even without GraceID.
    prelim = make_packet(
        "ivo://gwnet/LVC#S260301a-1-Preliminary",
        params={"Packet_Type": "150", "GraceID": "S260301a", "AlertType": "Preliminary"},
        time_utc=datetime(2026, 3, 1, 4, 0, 0, tzinfo=UTC),
    )
    retract = make_packet(
        "ivo://gwnet/LVC#S260301a-2-Retraction",
        params={"Packet_Type": "164", "AlertType": "Retraction"},
        time_utc=datetime(2026, 3, 1, 4, 0, 0, tzinfo=UTC),
        citations=[("ivo://gwnet/LVC#S260301a-1-Preliminary", "retraction")],
    )
    lvk_event = store.feed(parse_voevent(prelim))
    notice = parse_voevent(retract)
    assert notice.is_retraction and notice.trigger_id is None
    decision = group_notice(notice, store.events.values())
    assert decision.event_id == lvk_event and "cites ivo://gwnet/LVC#S260301a-1-Preliminary" in decision.reason


def _swift(kind: str, serial: int, ra: float, dec: float, err: float, *, t: datetime, cites: list[str]) -> ParsedNotice:
    packet_type = {"BAT_GRB_Pos": "61", "XRT_Pos": "67"}[kind]
    return parse_voevent(
        make_packet(
            f"ivo://nasa.gsfc.gcn/SWIFT#{kind}_1234567-{serial:03d}",
            params={"Packet_Type": packet_type, "TrigID": "1234567"},
            time_utc=t,
            ra_deg=ra,
            dec_deg=dec,
            error_deg=err,
            citations=[(c, "followup") for c in cites],
        )
    )


def test_swift_bat_then_xrt_one_event_position_refined_repoint_only_when_leaving_field() -> None:
    t0 = datetime(2026, 3, 1, 2, 3, 4, tzinfo=UTC)
    bat = _swift("BAT_GRB_Pos", 1, 150.0, 20.0, 0.05, t=t0, cites=[])
    xrt = _swift("XRT_Pos", 2, 150.02, 20.01, 0.0015, t=t0, cites=[bat.ivorn])
    store = InMemoryEventStore()
    event_id = store.feed(bat)
    assert store.feed(xrt) == event_id
    event = store.events[event_id]
    assert event.position is not None and event.position.source_ivorn == xrt.ivorn  # smallest error wins
    pointing = SkyPosition(bat.ra_deg, bat.dec_deg, bat.error_deg)
    stay = needs_repoint(pointing, event.position, field_radius_deg=0.15)
    assert not stay.repoint and stay.separation_deg < 0.05

    far_xrt = SkyPosition(150.0, 20.25, 0.0015)  # 0.25 deg away: outside a 21'x17' field
    assert needs_repoint(pointing, far_xrt, field_radius_deg=0.15).repoint
    # inside the field but its error circle sticks out: re-centring covers it
    edge = SkyPosition(150.0, 20.12, 0.05)
    decision = needs_repoint(pointing, edge, field_radius_deg=0.15)
    assert decision.repoint and "not covered" in decision.reason
    # an error circle larger than the field cannot be covered by moving: stay
    assert not needs_repoint(pointing, SkyPosition(150.0, 20.05, 0.5), field_radius_deg=0.15).repoint
    assert needs_repoint(None, far_xrt).repoint


def _gbm(trig: str, t: datetime, ra: float, dec: float, err: float) -> ParsedNotice:
    return parse_voevent(
        make_packet(
            f"ivo://nasa.gsfc.gcn/Fermi#GBM_Flt_Pos_{t:%Y-%m-%dT%H:%M:%S}.00_{trig}_46-001",
            params={"Packet_Type": "111", "TrigID": trig},
            time_utc=t,
            ra_deg=ra,
            dec_deg=dec,
            error_deg=err,
        )
    )


def _svom(burst: str, kind: str, t: datetime, ra: float | None, dec: float | None, err: float | None) -> ParsedNotice:
    packet_type = {"grm-trigger": "201", "eclairs-wakeup": "202", "mxt-initial": "209"}[kind]
    return parse_voevent(
        make_packet(
            f"ivo://org.svom/fsc#{burst}_{kind}",
            params={"Packet_Type": packet_type},
            groups={"Svom_Identifiers": {"Burst_Id": burst}},
            time_utc=t,
            ra_deg=ra,
            dec_deg=dec,
            error_deg=err,
        )
    )


def test_cross_mission_coincidence() -> None:
    t0 = datetime(2026, 3, 2, 3, 0, 0, tzinfo=UTC)
    store = InMemoryEventStore()
    gbm_event = store.feed(_gbm("800000001", t0, 120.0, -10.0, 5.0))
    # SVOM sees the same burst 8 s later, 6 deg from the coarse GBM position: same event
    assert store.feed(_svom("sb26030201", "eclairs-wakeup", t0 + timedelta(seconds=8), 126.0, -10.0, 0.1)) == gbm_event
    # its GRM trigger without position, T0 25 s later: same Burst_Id -> same event anyway
    assert store.feed(_svom("sb26030201", "grm-trigger", t0 + timedelta(seconds=25), None, None, None)) == gbm_event
    assert store.events[gbm_event].missions == {"Fermi", "SVOM"}
    assert store.events[gbm_event].burst_time_utc == t0

    # two minutes later: another burst
    assert store.feed(_svom("sb26030202", "eclairs-wakeup", t0 + timedelta(minutes=2), 126.0, -10.0, 0.1)) != gbm_event
    # simultaneous but 60 deg away given a 5 deg GBM error: another burst
    other = _gbm("800000002", t0 + timedelta(hours=1), 10.0, 10.0, 5.0)
    other_event = store.feed(other)
    far = _svom("sb26030203", "eclairs-wakeup", t0 + timedelta(hours=1, seconds=5), 70.0, 10.0, 0.1)
    assert store.feed(far) != other_event
    # a second GBM trigger 5 s after the first is never merged into the first GBM trigger's event
    assert store.feed(_gbm("800000003", t0 + timedelta(seconds=5), 121.0, -10.0, 5.0)) != gbm_event


def test_mxt_detection_time_does_not_move_burst_time() -> None:
    t0 = datetime(2026, 3, 3, 3, 0, 0, tzinfo=UTC)
    store = InMemoryEventStore()
    event_id = store.feed(_svom("sb26030301", "eclairs-wakeup", t0, 50.0, 5.0, 0.1))
    assert store.feed(_svom("sb26030301", "mxt-initial", t0 + timedelta(minutes=40), 50.05, 5.02, 0.01)) == event_id
    assert store.events[event_id].burst_time_utc == t0
    assert store.events[event_id].position.error_deg == 0.01


def test_best_position() -> None:
    a, b, c = SkyPosition(1, 1, 5.0), SkyPosition(2, 2, 0.1), SkyPosition(3, 3, 0.1)
    assert best_position([a, None, b]) == b
    assert best_position([a, b, c]) == c  # tie: the latest
    assert best_position([None]) is None


# --- Follow-ups: another mission's precise position of a localised transient, hours later -------------------
def _ep_notice(when: datetime, ra: float, dec: float, error_deg: float = 0.05) -> ParsedNotice:
    import json

    from alert_manager.notices_json import parse_json_notice

    body = {"$schema": "https://gcn.nasa.gov/schema/v4.1.0/gcn/notices/einstein_probe/wxt/alert.schema.json",
            "instrument": "WXT", "trigger_time": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "id": ["01709131025"],
            "ra": ra, "dec": dec, "ra_dec_error": error_deg, "image_energy_range": [0.5, 4.0],
            "net_count_rate": 1.0, "image_snr": 12.0}
    return parse_json_notice(json.dumps(body).encode(), topic="gcn.notices.einstein_probe.wxt.alert")


def test_a_swift_position_hours_after_an_einstein_probe_transient_follows_it_up():
    from alert_manager.tests.helpers import swift_packet

    t0 = datetime(2026, 12, 3, 20, 0, tzinfo=UTC)
    store = InMemoryEventStore()
    ep = store.feed(_ep_notice(t0, 150.0, 20.0))
    xrt = parse_voevent(swift_packet("XRT_Pos", 1240001, 1, t0 + timedelta(hours=5), 150.02, 20.01, 0.002))
    assert store.feed(xrt) == ep
    assert "follow-up of the Einstein Probe source 1.3' away, 5.0 h after its burst" == store.reasons[-1]
    # a coarse circle (Fermi GBM) a day later near it is not a follow-up; nor a precise source 2 degrees away,
    # nor one before the burst, nor after three days
    gbm = parse_voevent(make_packet("ivo://nasa.gsfc.gcn/Fermi#GBM_Gnd_Pos_2026-12-04T20:00:00.00_777777777-0-1",
                                    params={"Packet_Type": "112", "TrigID": "777777777"},
                                    time_utc=t0 + timedelta(days=1), ra_deg=150.0, dec_deg=20.0, error_deg=5.0))
    assert store.feed(gbm) != ep
    for when, ra in ((t0 + timedelta(hours=2), 152.0), (t0 - timedelta(hours=1), 150.0),
                     (t0 + timedelta(days=4), 150.0)):
        other = parse_voevent(swift_packet("XRT_Pos", 1240100 + int(ra), 1, when, ra, 20.0, 0.002))
        assert store.feed(other) != ep, (when, ra)
