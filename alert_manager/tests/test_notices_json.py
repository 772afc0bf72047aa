"""GCN Kafka JSON notices (``alert_manager.notices_json``): every message of the shared corpus
``../shared/data/gcn-kafka`` (read in place through its index.json, dispatched on its topic), plus hostile
and hand-made payloads. Plain functions: no database."""

from __future__ import annotations

import base64
import json
import random
import subprocess
import sys
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from alert_manager.grouping import event_from_notice, group_notice
from alert_manager.notices_json import (
    MAX_MESSAGE_BYTES,
    HeartbeatMessage,
    NoticeRejected,
    is_heartbeat_topic,
    parse_json_notice,
    parse_kafka_message,
    skymap_bytes,
)
from alert_manager.tests.packets import make_packet
from alert_manager.triage import triage
from alert_manager.voevent import (
    CITE_RETRACTION,
    FLAG_KNOWN_SOURCE,
    FLAG_RETRACTION,
    ParsedNotice,
    VOEventRejected,
    parse_voevent,
)

# Repository root is parents[2] of this file; the shared corpus sits next to the repository.
KAFKA_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "gcn-kafka"
GUANO_EXAMPLE = "gcn-schema/swift.bat.guano.loc_arc_min.example.json"


@cache
def _entries() -> tuple[dict[str, Any], ...]:
    index = KAFKA_DIR / "index.json"
    if not index.exists():
        return ()
    return tuple(json.loads(index.read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def kafka_corpus() -> tuple[dict[str, Any], ...]:
    entries = _entries()
    if not entries:
        pytest.skip(f"GCN Kafka corpus absent: {KAFKA_DIR} (shared data not checked out)")
    return entries


@cache
def _raw(file: str) -> bytes:
    return (KAFKA_DIR / file).read_bytes()


@pytest.fixture(scope="module")
def parsed_corpus(kafka_corpus) -> dict[str, ParsedNotice | VOEventRejected]:  # noqa: ANN001
    """file -> ParsedNotice, or the rejection (any other exception fails the test here)."""
    out: dict[str, ParsedNotice | VOEventRejected] = {}
    for entry in kafka_corpus:
        try:
            out[entry["file"]] = parse_kafka_message(_raw(entry["file"]), topic=entry["topic"])
        except VOEventRejected as exc:
            out[entry["file"]] = exc
    return out


def _json_entries(corpus, **match: Any) -> list[dict[str, Any]]:  # noqa: ANN001
    return [e for e in corpus if e["format"] == "json" and all(e.get(k) == v for k, v in match.items())]


def _index_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --- The whole corpus ---------------------------------------------------------------------------------


def test_every_message_parses_or_is_rejected_with_a_reason(kafka_corpus, parsed_corpus) -> None:  # noqa: ANN001
    assert len(parsed_corpus) == len(kafka_corpus)
    rejected = {f: r for f, r in parsed_corpus.items() if isinstance(r, VOEventRejected)}
    for exc in rejected.values():
        assert exc.reason
    # The only message no parser can use: BOOM lists crossmatched ZTF targets, with no time and no position.
    assert set(rejected) == {"gcn-schema/boom.alert.example.json"}, rejected
    assert "neither trigger_time nor ra/dec" in rejected["gcn-schema/boom.alert.example.json"].reason


def test_voevent_topics_go_to_the_voevent_parser(kafka_corpus, parsed_corpus) -> None:  # noqa: ANN001
    for entry in kafka_corpus:
        if entry["format"] != "voevent":
            continue
        notice = parsed_corpus[entry["file"]]
        assert isinstance(notice, ParsedNotice), entry["file"]
        assert notice.ivorn.startswith("ivo://")
        assert notice.mission == entry["mission"]


def test_json_fields_agree_with_the_index(kafka_corpus, parsed_corpus) -> None:  # noqa: ANN001
    checked = 0
    for entry in _json_entries(kafka_corpus):
        notice = parsed_corpus[entry["file"]]
        if isinstance(notice, VOEventRejected):
            continue
        where = entry["file"]
        assert notice.mission == entry["mission"], where
        assert notice.stream == entry["topic"], where
        assert notice.ivorn.startswith(f"kafka://{entry['topic']}#"), where
        assert notice.packet_type is None
        expected_trigger = entry["trigger_id"]
        if entry["mission"] == "IceCube" and expected_trigger and "_" in expected_trigger:
            run, event = expected_trigger.split("_")  # the AMON VOEvent's run_id/event_id form
            expected_trigger = f"{int(run)}/{int(event)}"
        if entry["file"] == "gcn-schema/fermi.lat.flare.example.json":
            expected_trigger = None  # index: event_name (a catalogued blazar), not a trigger
        assert notice.trigger_id == expected_trigger, where
        assert (notice.trigger_scope is None) == (notice.trigger_id is None), where
        if entry["time"] is None:
            assert notice.event_time_utc is None, where
        else:
            assert notice.event_time_utc == _index_time(entry["time"]), where
        if notice.event_time_utc is not None:
            assert notice.event_time_utc.tzinfo is not None and notice.event_time_utc.utcoffset().total_seconds() == 0
        if entry["ra"] is not None and entry["error_deg"] not in (None, 0):
            assert notice.position_usable, where
            assert notice.ra_deg == pytest.approx(entry["ra"] % 360.0), where
            assert notice.dec_deg == pytest.approx(entry["dec"]), where
            assert notice.error_deg == pytest.approx(entry["error_deg"]), where
        if entry["ra"] is None:
            assert not notice.position_usable and notice.position_reason, where
        assert notice.is_retraction == (entry["notice_kind"] == "retraction"), where
        assert bool(notice.params["skymap"].get("field")) == entry["has_skymap"], where
        json.dumps(notice.params, allow_nan=False)  # stored in a JSONField
        checked += 1
    assert checked >= 90


def test_same_bytes_same_ivorn_and_distinct_notices_distinct_ivorns(kafka_corpus, parsed_corpus) -> None:  # noqa: ANN001
    by_ivorn: dict[str, set[str]] = {}
    for entry in _json_entries(kafka_corpus):
        notice = parsed_corpus[entry["file"]]
        if isinstance(notice, ParsedNotice):
            by_ivorn.setdefault(notice.ivorn, set()).add(notice.params["content_sha256"])
            again = parse_kafka_message(_raw(entry["file"]), topic=entry["topic"])
            assert again.ivorn == notice.ivorn and again.sha256 == notice.sha256
    assert all(len(contents) == 1 for contents in by_ivorn.values())
    # LVK sends PRELIMINARY twice, minutes apart: two notices, two IVORNs, one trigger.
    first = parsed_corpus["gwtm_cron/S230522a-Preliminary_alert.json"]
    second = parsed_corpus["gwtm_cron/S230522a-Preliminary1_alert.json"]
    assert first.ivorn != second.ivorn
    assert (first.trigger_scope, first.trigger_id) == (second.trigger_scope, second.trigger_id) == ("LVK", "S230522a")


def test_a_reformatted_notice_keeps_its_ivorn(kafka_corpus) -> None:  # noqa: ANN001
    entry = _json_entries(kafka_corpus, file="skyportal/EP240508.json")[0]
    raw = _raw(entry["file"])
    compact = json.dumps(json.loads(raw), separators=(",", ":")).encode()
    a = parse_json_notice(raw, topic=entry["topic"])
    b = parse_json_notice(compact, topic=entry["topic"])
    assert a.ivorn == b.ivorn and a.sha256 != b.sha256


# --- Families -----------------------------------------------------------------------------------------


def test_einstein_probe_positions_are_degrees_with_small_errors(kafka_corpus, parsed_corpus) -> None:  # noqa: ANN001
    entries = _json_entries(kafka_corpus, mission="Einstein Probe")
    assert len(entries) >= 40
    for entry in entries:
        notice = parsed_corpus[entry["file"]]
        assert notice.instrument == "WXT" and notice.notice_type == "WXT_Alert"
        assert notice.role == "observation" and not notice.flags
        assert notice.position_usable and notice.position_reason is None
        assert 0.0 <= notice.ra_deg < 360.0 and -90.0 <= notice.dec_deg <= 90.0
        assert 0.001 < notice.error_deg < 0.2  # WXT: ~3 arcmin
        assert notice.trigger_scope == ("EP-WXT" if notice.trigger_id else None)
        decision = triage(notice, max_error_deg=0.25)
        assert decision.actionable and decision.kind == "trigger"
    # v4.0.0 / main messages of May-June 2024 carry no id: no trigger, still a pointable alert.
    no_id = parsed_corpus["gtecs-alert/2024-06-18T05:44:19.949Z-WXT-no_id.json"]
    assert no_id.trigger_id is None and no_id.version == "v4.0.0" and no_id.position_usable


def test_lvk_mock_superevents_are_tests_and_real_ones_are_not(kafka_corpus, parsed_corpus) -> None:  # noqa: ANN001
    for entry in _json_entries(kafka_corpus, topic="igwn.gwalert"):
        notice = parsed_corpus[entry["file"]]
        mock = entry["trigger_id"].startswith(("M", "T"))
        assert notice.is_test == mock, entry["file"]
        assert notice.role == ("test" if mock else "observation")
        assert notice.trigger_scope == "LVK" and notice.trigger_id == entry["trigger_id"]
        assert not notice.position_usable
        if mock:
            assert not triage(notice, max_error_deg=180.0).actionable
    types = {parsed_corpus[f"userguide/MS181101ab-{k}.json"].notice_type for k in
             ("earlywarning", "preliminary", "initial", "update", "retraction")}
    assert types == {"EarlyWarning", "Preliminary", "Initial", "Update", "Retraction"}


def test_lvk_retraction(parsed_corpus) -> None:  # noqa: ANN001
    for file in ("userguide/MS181101ab-retraction.json", "skyportal/igwn_gwalert_retraction.json"):
        notice = parsed_corpus[file]
        assert notice.is_retraction and FLAG_RETRACTION in notice.flags
        assert notice.event_time_utc is None and notice.params["skymap"] == {"present": False}
        assert notice.retracted_ivorns == (f"kafka://igwn.gwalert#{notice.trigger_id}",)
        assert notice.position_reason == "retraction: no position"


def test_lvk_sky_map_stays_out_of_params_and_decodes(parsed_corpus) -> None:  # noqa: ANN001
    notice = parsed_corpus["userguide/MS181101ab-ext-update.json"]
    assert notice.position_reason == "sky map only (no single position in the notice)"
    skymap = notice.params["skymap"]
    assert skymap["present"] and skymap["format"] == "base64-moc-fits" and skymap["field"] == "event.skymap"
    assert notice.params["json"]["event"]["skymap"].startswith("<omitted: base64")
    assert notice.params["json"]["external_coinc"]["combined_skymap"].startswith("<omitted: base64")
    assert len(json.dumps(notice.params)) < 20_000
    data = skymap_bytes(_raw("userguide/MS181101ab-ext-update.json"), topic="igwn.gwalert")
    assert data is not None and len(data) == 777_600 and data.startswith(b"SIMPLE  =")
    retraction = _raw("userguide/MS181101ab-retraction.json")
    assert skymap_bytes(retraction, topic="igwn.gwalert") is None


def test_guano_kinds(parsed_corpus) -> None:  # noqa: ANN001
    alert = parsed_corpus["gcn-schema/swift.bat.Guano.example.json"]
    position = parsed_corpus[GUANO_EXAMPLE]
    skymap = parsed_corpus["gcn-schema/swift.bat.guano.loc_map.example.json"]
    retraction = parsed_corpus["gcn-schema/swift.bat.Guano.Retraction.example.json"]
    for notice in (alert, position, skymap, retraction):
        assert (notice.mission, notice.trigger_scope, notice.trigger_id) == ("Swift", "Swift", "694215995")
    assert alert.notice_type == "GUANO_Alert" and not alert.position_usable
    assert position.notice_type == "GUANO_Pos" and position.position_usable
    assert position.params["position"]["systematic_included"] is True
    assert position.params["position"]["containment_probability"] == 0.9
    assert skymap.notice_type == "GUANO_Map" and skymap.position_reason.startswith("sky map only")
    assert skymap.params["skymap"]["invalid_field"] == "healpix_file"  # the example's placeholder "hhhh..."
    assert skymap_bytes(_raw("gcn-schema/swift.bat.guano.loc_map.example.json"),
                        topic="gcn.notices.swift.bat.guano") is None
    assert retraction.notice_type == "GUANO_Retraction" and retraction.is_retraction
    assert retraction.retracted_ivorns == ("kafka://gcn.notices.swift.bat.guano#694215995",)
    assert triage(retraction, max_error_deg=1.0).kind == "retraction"


def test_guano_and_swift_bat_voevent_share_the_trigger(kafka_corpus, parsed_corpus) -> None:  # noqa: ANN001
    guano = parsed_corpus[GUANO_EXAMPLE]
    bat = parse_voevent(make_packet(
        f"ivo://nasa.gsfc.gcn/SWIFT#BAT_GRB_Pos_{guano.trigger_id}-259",
        params={"Packet_Type": "61", "TrigID": guano.trigger_id},
        time_utc=guano.event_time_utc, ra_deg=336.25, dec_deg=25.14, error_deg=0.05,
    ))
    assert (bat.mission, bat.trigger_scope, bat.trigger_id) == (guano.mission, guano.trigger_scope, guano.trigger_id)
    event = event_from_notice(bat, event_id=1)
    assert group_notice(guano, [event]).event_id == 1


def test_gbm_json_and_voevent_share_the_trigger_scope(parsed_corpus) -> None:  # noqa: ANN001
    kinds = {parsed_corpus[f"gcn-schema/fermi.gbm.trigger.{k}.example.json"].notice_type
             for k in ("alert", "flight1", "ground1", "final")}
    assert kinds == {"GBM_Alert", "GBM_Flt_Pos", "GBM_Gnd_Pos", "GBM_Fin_Pos"}
    flight = parsed_corpus["gcn-schema/fermi.gbm.trigger.flight1.example.json"]
    assert (flight.trigger_scope, flight.trigger_id, flight.instrument) == ("Fermi-GBM", "745121685", "GBM")
    assert flight.params["position"]["containment_probability"] == 0.68
    final = parsed_corpus["gcn-schema/fermi.gbm.trigger.final.example.json"]
    assert final.params["skymap"]["format"] == "url" and final.params["skymap"]["url"].endswith(".fit")
    voevent = parse_voevent(make_packet(
        "ivo://nasa.gsfc.gcn/Fermi#GBM_Flt_Pos_2024-08-24T02:14:40.43_745121685_1-001",
        params={"Packet_Type": "111", "TrigID": "745121685"},
        time_utc=flight.event_time_utc, ra_deg=136.9, dec_deg=-78.1, error_deg=8.3,
    ))
    assert (voevent.trigger_scope, voevent.trigger_id) == (flight.trigger_scope, flight.trigger_id)


def test_svom_json_uses_the_voevent_notice_types(parsed_corpus) -> None:  # noqa: ANN001
    types = {}
    for kind in ("grm.trigger", "eclairs.trigger.wakeup", "eclairs.trigger.slewing",
                 "eclairs.trigger.not-slewing", "eclairs.trigger.catalog"):
        notice = parsed_corpus[f"gcn-schema/svom.{kind}.example.json"]
        assert (notice.trigger_scope, notice.trigger_id) == ("SVOM", "sb24022203")
        assert notice.role == "test"  # alert_tense "test"
        types[kind] = notice.notice_type
    assert types == {"grm.trigger": "grm-trigger", "eclairs.trigger.wakeup": "eclairs-wakeup",
                     "eclairs.trigger.slewing": "slewing", "eclairs.trigger.not-slewing": "not-slewing",
                     "eclairs.trigger.catalog": "eclairs-catalog"}
    assert FLAG_KNOWN_SOURCE in parsed_corpus["gcn-schema/svom.eclairs.trigger.catalog.example.json"].flags


def test_icecube_maxi_and_other_families(parsed_corpus) -> None:  # noqa: ANN001
    gold = parsed_corpus["gcn-schema/icecube.single_neutrino_alerts.gold_bronze_track_alerts.example.json"]
    assert (gold.notice_type, gold.trigger_scope, gold.trigger_id) == ("ICECUBE_BRONZE_Event", "IceCube",
                                                                       "137840/57034692")
    search = parsed_corpus["gcn-schema/icecube.lvk_nu_track_search.example.json"]
    assert (search.trigger_scope, search.trigger_id) == ("LVK", "S230914ak")  # joins the GW event
    assert search.cited_ivorns == ("ivo://gwnet/LVC#S230914ak-2-Preliminary",)
    assert parsed_corpus["gcn-schema/icecube.LvkNuTrackSearch.example.2023-06-29.json"].is_test  # MS230427r
    known = parsed_corpus["gcn-schema/maxi.gsc.known.example.json"]
    assert FLAG_KNOWN_SOURCE in known.flags and not triage(known, max_error_deg=180).actionable
    assert parsed_corpus["gcn-schema/maxi.gsc.unknown.ellipse.example.json"].error_deg == pytest.approx(0.22)
    rectangle = parsed_corpus["gcn-schema/maxi.gsc.unknown.rectangle.example.json"]
    assert rectangle.params["position"]["error_shape"] == "rectangle" and 1.0 < rectangle.error_deg < 1.5
    noerror = parsed_corpus["gcn-schema/maxi.gsc.unknown.noerror.example.json"]
    assert not noerror.position_usable and noerror.position_reason == "no error radius in the notice"
    assert parsed_corpus["gcn-schema/chime.frb.detection.example.json"].error_deg == pytest.approx(0.598921231135782)
    assert parsed_corpus["gcn-schema/burstcube.test.example.json"].is_test
    assert not parsed_corpus["gcn-schema/burstcube.alert.example.json"].is_test
    assert parsed_corpus["gcn-schema/superk.sn_alert.test.example.json"].is_test
    flare = parsed_corpus["gcn-schema/fermi.lat.flare.example.json"]
    assert (flare.mission, flare.instrument, flare.trigger_id) == ("Fermi", "LAT", None)
    assert FLAG_KNOWN_SOURCE in flare.flags
    for kind in ("chime.frb", "dsa110.frb", "maxi.gsc.unknown", "maxi.gsc.known"):
        retraction = parsed_corpus[f"gcn-schema/{kind}.retraction.example.json"]
        assert retraction.is_retraction and retraction.retracted_ivorns[0].endswith(f"#{retraction.trigger_id}")
        assert all(c.cite == CITE_RETRACTION for c in retraction.citations)


# --- Dispatcher ----------------------------------------------------------------------------------------


def test_heartbeat_is_not_a_notice() -> None:
    assert is_heartbeat_topic("gcn.heartbeat") and not is_heartbeat_topic("igwn.gwalert")
    with pytest.raises(HeartbeatMessage) as info:
        parse_kafka_message(b'{"alert_datetime": "2026-12-01T00:00:00Z"}', topic="gcn.heartbeat")
    assert info.value.reason == "heartbeat" and isinstance(info.value, NoticeRejected)


def test_dispatch_on_topic_and_content() -> None:
    packet = make_packet("ivo://nasa.gsfc.gcn/SWIFT#BAT_GRB_Pos_1234567-259", params={"TrigID": "1234567"})
    assert parse_kafka_message(b"\n  " + packet, topic="some.json.topic").trigger_id == "1234567"
    with pytest.raises(VOEventRejected):
        parse_kafka_message(b'{"ra": 1}', topic="gcn.classic.voevent.SWIFT_BAT_GRB_POS_ACK")
    with pytest.raises(NoticeRejected, match="text/binary"):
        parse_kafka_message(b"TITLE: GCN/SWIFT NOTICE", topic="gcn.classic.text.SWIFT_BAT_GRB_POS_ACK")
    with pytest.raises(NoticeRejected, match="invalid Kafka topic"):
        parse_kafka_message(b"{}", topic="bad topic!")
    with pytest.raises(NoticeRejected, match="XML where a JSON notice"):
        parse_json_notice(packet, topic="gcn.notices.swift.bat.guano")


# --- Hostile and odd payloads --------------------------------------------------------------------------

EP_TOPIC = "gcn.notices.einstein_probe.wxt.alert"


def _ep(**changes: Any) -> dict[str, Any]:
    doc = {
        "$schema": "https://gcn.nasa.gov/schema/v4.1.0/gcn/notices/einstein_probe/wxt/alert.schema.json",
        "instrument": "WXT", "trigger_time": "2026-05-13T08:45:48.699Z", "id": ["01709262036"],
        "ra": 202.316, "dec": 11.321, "ra_dec_error": 0.05117076,
    }
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not None}


def _lvk(**changes: Any) -> dict[str, Any]:
    fits = base64.b64encode(b"SIMPLE  =                    T" + b" " * 2850).decode()
    doc: dict[str, Any] = {
        "alert_type": "PRELIMINARY", "time_created": "2026-06-05T12:01:07Z", "superevent_id": "S260605a",
        "urls": {"gracedb": "https://gracedb.ligo.org/superevents/S260605a/view/"},
        "event": {"time": "2026-06-05T11:57:26.395Z", "far": 1e-10, "significant": True, "search": "AllSky",
                  "group": "CBC", "pipeline": "gstlal", "instruments": ["H1", "L1"], "skymap": fits},
        "external_coinc": None,
    }
    doc.update(changes)
    return doc


def _reason(raw: bytes, topic: str = EP_TOPIC) -> str:
    with pytest.raises(NoticeRejected) as info:
        parse_kafka_message(raw, topic=topic)
    assert info.value.reason
    return info.value.reason


def _dump(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def test_hand_made_notices_parse() -> None:
    ep = parse_kafka_message(_dump(_ep()), topic=EP_TOPIC)
    assert ep.position_usable and ep.trigger_id == "01709262036"
    lvk = parse_kafka_message(_dump(_lvk()), topic="igwn.gwalert")
    assert lvk.role == "observation" and lvk.params["skymap"]["present"] and lvk.notice_type == "Preliminary"
    assert skymap_bytes(_dump(_lvk()), topic="igwn.gwalert").startswith(b"SIMPLE")
    old = parse_kafka_message(_dump(_lvk(alert_type="EARLY_WARNING", time_created="2023-03-01 10:00:00")),
                              topic="igwn.gwalert")
    assert old.notice_type == "EarlyWarning" and old.authored_utc == datetime(2023, 3, 1, 10, tzinfo=UTC)
    arcmin = parse_kafka_message(_dump(_ep(ra_dec_error=3.0, ra_dec_error_unit="arcmin")), topic=EP_TOPIC)
    assert arcmin.error_deg == pytest.approx(0.05)
    svom_minus_one = parse_kafka_message(_dump({"instrument": "GRM", "id": ["sb26050405"], "alert_type": "initial",
                                                "trigger_time": "2026-05-04T10:00:00", "ra": 10.0, "dec": 5.0,
                                                "ra_dec_error": -1}), topic="gcn.notices.svom")
    assert not svom_minus_one.position_usable and "negative error radius" in svom_minus_one.position_reason


@pytest.mark.parametrize(
    ("raw", "topic", "expected"),
    [
        (_dump(_ep())[:-20], EP_TOPIC, "malformed or truncated JSON"),
        (b"", EP_TOPIC, "empty message"),
        (b"\xff\xfe{}", EP_TOPIC, "not UTF-8"),
        (b"[1, 2]", EP_TOPIC, "must be a JSON object"),
        (b'"just a string"', EP_TOPIC, "must be a JSON object"),
        (b"[" * 100_000 + b"]" * 100_000, EP_TOPIC, "nested too deeply"),
        (_dump(_ep(extra=json.loads("[" * 40 + "]" * 40))), EP_TOPIC, "nested too deeply"),
        (_dump(_ep()).replace(b"202.316", b"NaN"), EP_TOPIC, "NaN"),
        (_dump(_ep()).replace(b"202.316", b"Infinity"), EP_TOPIC, "NaN/Infinity"),
        (_dump(_ep()).replace(b"202.316", b"1e999"), EP_TOPIC, "overflows"),
        (_dump(_ep(ra=400)), EP_TOPIC, "RA 400 out of range"),
        (_dump(_ep(ra=-1)), EP_TOPIC, "RA -1 out of range"),
        (_dump(_ep(dec=91)), EP_TOPIC, "Dec 91 out of range"),
        (_dump(_ep(ra="202.3")), EP_TOPIC, "'ra' must be a number"),
        (_dump(_ep(ra=True)), EP_TOPIC, "'ra' must be a number"),
        (_dump(_ep(dec=None)), EP_TOPIC, "ra given without dec"),
        (_dump(_ep(ra_dec_error=[1, 2, 3, 4])), EP_TOPIC, "1 to 3 values"),
        (_dump(_ep(ra_dec_error=500)), EP_TOPIC, "larger than 180"),
        (_dump(_ep(ra_dec_error=1, ra_dec_error_unit="parsec")), EP_TOPIC, "unknown ra_dec_error unit"),
        (_dump(_ep(trigger_time=None)), EP_TOPIC, "trigger_time"),
        (_dump(_ep(trigger_time="yesterday")), EP_TOPIC, "unreadable time"),
        (_dump(_ep(trigger_time="2026-02-30T00:00:00Z")), EP_TOPIC, "unreadable time"),
        (_dump(_ep(trigger_time=1700000000)), EP_TOPIC, "must be a string"),
        (_dump(_ep(id={"a": 1})), EP_TOPIC, "strings or integers"),
        (_dump(_ep(alert_tense="maybe")), EP_TOPIC, "unknown alert_tense"),
        (_dump(_ep(containment_probability=2)), EP_TOPIC, "containment_probability"),
        (b'{"ra": 1, "ra": 2, "dec": 0, "trigger_time": "2026-01-01T00:00:00Z"}', EP_TOPIC, "duplicate key 'ra'"),
        (b"{" + b'"a": 1' + b"0" * 5000 + b"}", EP_TOPIC, "malformed JSON"),
        (_dump(_ep(additional_info="a\u0000b")), EP_TOPIC, "NUL character"),
        (_dump(_ep(additional_info="\ud800")), EP_TOPIC, "lone surrogate"),
        (b" " * (MAX_MESSAGE_BYTES + 1), EP_TOPIC, "message too large"),
        (b'{"x": "' + b"A" * (9 * 1024 * 1024) + b'"}', EP_TOPIC, "message too large"),
        (_dump(_ep(**{"$schema": "https://gcn.nasa.gov/schema/main/gcn/notices/fermi/gbm/trigger.schema.json"})),
         EP_TOPIC, "belongs to the gbm family"),
        (_dump(_lvk(alert_type="PANIC")), "igwn.gwalert", "unknown LVK alert_type"),
        (_dump(_lvk(event=None)), "igwn.gwalert", "without 'event'"),
        (_dump(_lvk(event="x")), "igwn.gwalert", "'event' must be an object"),
        (_dump(_lvk(superevent_id="../../etc")), "igwn.gwalert", "not an LVK superevent id"),
        (_dump(_lvk(superevent_id=None)), "igwn.gwalert", "superevent_id"),
        (_dump(_lvk(event={"time": "2026-06-05T11:57:26Z", "skymap": 12})), "igwn.gwalert", "base64 string"),
        (_dump({"mission": "BOOM", "data": {}}), "gcn.notices.boom.alert", "neither trigger_time nor ra/dec"),
        (_dump({"instrument": "GRM", "trigger_time": "2026-05-04T10:00:00"}), "gcn.notices.svom", "'id'"),
        (_dump(_ep(rectangular_error_corners=[[1, 2]], ra_dec_error=None)), EP_TOPIC, "rectangular_error_corners"),
    ],
    ids=lambda value: value[:40] if isinstance(value, str) else None,
)
def test_hostile_and_odd_messages_are_rejected_with_a_reason(raw: bytes, topic: str, expected: str) -> None:
    assert expected in _reason(raw, topic)


def test_nothing_but_the_rejection_escapes_mutated_messages(kafka_corpus) -> None:  # noqa: ANN001
    """Every top-level field of every small JSON message replaced by values of every JSON type, plus random
    byte damage: a ParsedNotice or a NoticeRejected, never anything else."""
    odd_values: list[Any] = [None, True, 0, -1, 1e308, "", "x" * 5000, [], [None], {}, {"a": [1]}, [[1, 2]] * 3]
    entries = [e for e in _json_entries(kafka_corpus) if e["bytes"] < 20_000]
    entries.append({"file": None, "topic": "igwn.gwalert"})
    rng = random.Random(20261204)
    count = 0
    for entry in entries:
        doc = _lvk() if entry["file"] is None else json.loads(_raw(entry["file"]))
        for key in list(doc):
            for value in odd_values:
                mutated = dict(doc)
                mutated[key] = value
                _parse_or_reject(_dump(mutated), entry["topic"])
                count += 1
        raw = _dump(doc)
        for _ in range(5):
            damaged = bytearray(raw)
            for _ in range(rng.randint(1, 4)):
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
            _parse_or_reject(bytes(damaged[: rng.randrange(1, len(damaged) + 1)]), entry["topic"])
            count += 1
    assert count > 5000


def _parse_or_reject(raw: bytes, topic: str) -> None:
    try:
        notice = parse_kafka_message(raw, topic=topic)
    except NoticeRejected as exc:
        assert exc.reason
        return
    assert isinstance(notice, ParsedNotice)
    json.dumps(notice.params, allow_nan=False)
    if notice.error_deg is not None:
        assert notice.error_deg > 0 and notice.position_usable


def test_module_stays_light() -> None:
    # No Django, no astropy at import: the Kafka consumer imports this on the latency path.
    code = ("import sys, alert_manager.notices_json; "
            "print(sorted(m for m in ('django', 'astropy') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2],
                            capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"
