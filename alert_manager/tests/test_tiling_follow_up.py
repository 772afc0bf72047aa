"""Large localisations observed as tiles: a real LVK sky map, a Swift BAT-GUANO map and a wide Fermi GBM circle go
through the whole pipeline (stored as Kafka/VTP messages, parsed, grouped, acted upon) and become one request whose
sequences are the tiles, most probable first; bad maps are rejected with a reason; an update re-plans the tiles not
observed; a retraction cancels; the event page shows the plot and the table."""

from __future__ import annotations

import base64
import io
import itertools
import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import time_machine
from django.urls import reverse

from alert_manager import services, tiling
from alert_manager.demo import TILING_STRATEGY_NAME
from alert_manager.kafka_consumer import KafkaRecord
from alert_manager.services import follow_up, intake, kafka_intake, processing, tiled_follow_up
from alert_manager.services.kafka_intake import alert_receive_kafka
from alert_manager.tests.helpers import NIGHT, swift_packet, zenith_ra_dec
from alert_manager.tests.packets import make_packet
from alert_manager.tests.test_tiling import _flat_map_fits, _inside_any_tile
from alert_manager.tile_entries import tile_from_entry
from pyrosapp.models import Alert, AlertEvent, Log, ObservatoryState, Request, Sequence, Strategy
from pyrosapp.tests.factories import UserFactory
from routine_manager import services as routine_services

KAFKA_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "gcn-kafka"
LVK_TOPIC = "igwn.gwalert"
GUANO_TOPIC = "gcn.notices.swift.bat.guano"
S230522A = "gwtm_cron/S230522a-Preliminary_alert.json"  # real, significant, one detector: ~24,000 deg2 at 90 %
S230522A_AGAIN = "gwtm_cron/S230522a-Preliminary1_alert.json"  # the same map, sent again 5 minutes later
S230525A = "gwtm_cron/S230525a-preliminary.json"  # real, significant = false
GUANO_EXAMPLE = "gcn-schema/swift.bat.guano.loc_map.example.json"  # its healpix_file is a placeholder "hhhh..."
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _corpus(name: str) -> bytes:
    path = KAFKA_DIR / name
    if not path.exists():
        pytest.skip(f"GCN Kafka corpus absent: {path} (shared data not checked out)")
    return path.read_bytes()


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _lvk_time(raw: bytes) -> datetime:
    return datetime.fromisoformat(json.loads(raw)["event"]["time"].replace("Z", "+00:00"))


def _lvk_with_map(raw: bytes, fits: bytes, **changes) -> bytes:
    doc = json.loads(raw)
    doc["event"]["skymap"] = base64.b64encode(fits).decode()
    doc.update(changes)
    return json.dumps(doc).encode()


def _guano(trig: str, when: datetime, fits: bytes | None, *, alert_type: str = "initial", record: int = 2) -> bytes:
    """A Swift BAT-GUANO notice shaped as gcn-schema's loc_map example, with a real HEALPix map embedded."""
    doc = json.loads(_corpus(GUANO_EXAMPLE))
    doc.update(id=[trig], trigger_time=_iso(when), alert_datetime=_iso(when + timedelta(minutes=5 * record)),
               alert_type=alert_type, record_number=record)
    if fits is not None:
        doc["healpix_file"] = base64.b64encode(fits).decode()
    return json.dumps(doc).encode()


def _gbm(trig: int, when: datetime, ra: float, dec: float, error_deg: float, serial: int = 1) -> bytes:
    return make_packet(f"ivo://nasa.gsfc.gcn/Fermi#GBM_Flt_Pos_{when:%Y-%m-%dT%H:%M:%S}.00_{trig}_{serial}-001",
                       params={"Packet_Type": "111", "TrigID": str(trig)}, time_utc=when, ra_deg=ra, dec_deg=dec,
                       error_deg=error_deg)


@pytest.fixture
def pipeline(alert_observatory, observing_night, telescope, monkeypatch):  # noqa: ANN001, ANN201
    """The alert pipeline with the demo tiling strategy active; the majordome runs for real (night, safe,
    automatic) and the commands it sends the devices are recorded (``telescope``), so are the scheduler's
    replan messages."""
    calls: dict[str, list[dict]] = {"replan": []}
    monkeypatch.setattr(kafka_intake, "alert_queue_many", lambda *, alert_ids: True)
    monkeypatch.setattr(intake, "alert_queue", lambda *, alert_id: True)
    monkeypatch.setattr(follow_up, "_request_replan", lambda **kw: calls["replan"].append(kw))
    strategy = services.strategy_activate(strategy=Strategy.objects.get(name=TILING_STRATEGY_NAME))
    offsets = itertools.count()

    def kafka(raw: bytes, topic: str, when: datetime) -> Alert:
        with time_machine.travel(when, tick=False):
            (result,) = alert_receive_kafka(records=[KafkaRecord(topic=topic, partition=0, offset=next(offsets),
                                                                 timestamp_ms=None, key=None, value=raw)])
            processing.alert_process(alert_id=result.object_id)
        return Alert.objects.get(pk=result.object_id)

    def voevent(raw: bytes, when: datetime) -> Alert:
        with time_machine.travel(when, tick=False):
            alert_id = services.alert_receive(raw=raw)
            processing.alert_process(alert_id=alert_id)
        return Alert.objects.get(pk=alert_id)

    return SimpleNamespace(kafka=kafka, voevent=voevent, calls=calls, strategy=strategy, obs=alert_observatory,
                           telescope=telescope)


def _event(alert: Alert) -> AlertEvent:
    return AlertEvent.objects.get(pk=alert.event_id)


def _check_tiled(event: AlertEvent, strategy: Strategy, *, now: datetime) -> list[Sequence]:
    """The event's request holds its tiles in rank order, each sequence at its tile's centre, tonight."""
    request = event.request
    assert request is not None and request.is_alert and request.alert_event_id == event.pk
    sequences = list(request.sequences.order_by("order"))
    entries = sorted(event.tiles, key=lambda e: e["rank"])
    assert [e["rank"] for e in entries] == list(range(1, len(entries) + 1))
    assert [s.pk for s in sequences] == [e["sequence"] for e in entries]
    assert all(e["request"] == request.pk for e in entries)
    for entry, sequence in zip(entries, sequences, strict=True):
        assert sequence.name.startswith(f"{event.name} tile {entry['rank']} (P=")
        assert (sequence.ra_deg, sequence.dec_deg) == pytest.approx((entry["ra_deg"] % 360.0, entry["dec_deg"]),
                                                                    abs=1e-6)
        assert sequence.window_start == now and sequence.window_end - now < timedelta(hours=24)
        assert sequence.min_altitude_deg == strategy.min_altitude_deg
        plans = [(p.filter.name, p.exposure_s, p.count) for a in sequence.albums.all() for p in a.plans.all()]
        assert plans == [("R", 60.0, 3)]  # the template's first sequence
    # an event observed now pre-empted: its first tile runs next (planned), the others wait for the scheduler
    first_status = Sequence.Status.PLANNED if event.status == AlertEvent.Status.OBSERVING else Sequence.Status.PENDING
    assert [s.status for s in sequences] == [first_status] + [Sequence.Status.PENDING] * (len(sequences) - 1)
    # most probable first: cumulative coverage grows, preferred starts follow the ranks
    cumulative = [e["cumulative_probability"] for e in entries]
    assert cumulative == sorted(cumulative)
    starts = [s.preferred_start for s in sequences]
    assert None not in starts and starts == sorted(starts)
    assert len({e["index"] for e in entries}) == len(entries)
    return sequences


# --- A real LVK map ------------------------------------------------------------------------------------------
def test_real_lvk_map_becomes_a_tiled_request_most_probable_first(pipeline) -> None:  # noqa: ANN001
    raw = _corpus(S230522A)
    now = _lvk_time(raw) + timedelta(minutes=1)  # 09:39 UTC: daytime at OHP, tiles for the coming night
    alert = pipeline.kafka(raw, LVK_TOPIC, now)
    event = _event(alert)
    assert alert.status == Alert.Status.PROCESSED and f"request {event.request_id} built" in alert.status_reason
    assert event.status == AlertEvent.Status.AWAITING_VISIBILITY, event.status_reason
    assert "sky map: 10 tiles" in event.status_reason and "max_tiles=10" in event.status_reason
    assert event.skymap_alert_id == alert.pk and event.strategy_id == pipeline.strategy.pk
    sequences = _check_tiled(event, pipeline.strategy, now=now)
    assert len(sequences) == pipeline.strategy.max_tiles  # a wide map: the tile budget is reached first
    # the tiles are the plan of the map itself, recomputed here
    skymap = tiling.load_skymap(base64.b64decode(json.loads(raw)["event"]["skymap"]))
    site = pipeline.obs.site
    night_end = sequences[0].window_end
    plan = tiling.plan_tiles(skymap=skymap, fov_width_deg=1280 / 3600, fov_height_deg=1024 / 3600,
                             site=(site.latitude_deg, site.longitude_deg, site.elevation_m), start_utc=now,
                             end_utc=night_end, min_altitude_deg=25.0, max_tiles=10, coverage=0.9,
                             sun_max_alt_deg=site.twilight_deg)
    assert [t.index for t in plan] == [e["index"] for e in sorted(event.tiles, key=lambda e: e["rank"])]
    assert all(night_end > s.preferred_start >= tile.observable_from_utc for s, tile in zip(sequences, plan,
                                                                                            strict=True))
    # not observable now (the majordome would allow it: night, safe, automatic): no slew, no pre-emption
    assert pipeline.telescope.commands == [] and ObservatoryState.objects.get().preempt_sequence_id is None
    assert pipeline.calls["replan"]  # the scheduler is told

    # The same map sent again 5 minutes later: the same tiles, no new request.
    again = pipeline.kafka(_corpus(S230522A_AGAIN), LVK_TOPIC, now + timedelta(minutes=5))
    assert again.event_id == event.pk and "the same tiles" in again.status_reason
    assert Request.objects.filter(alert_event=event).count() == 1

    # A retraction (LVK shape, event: null) cancels the request.
    retraction = json.dumps({"alert_type": "RETRACTION", "time_created": _iso(now + timedelta(hours=1)),
                             "superevent_id": "S230522a", "urls": {"gracedb": "https://example.org/S230522a"},
                             "event": None, "external_coinc": None}).encode()
    gone = pipeline.kafka(retraction, LVK_TOPIC, now + timedelta(hours=1))
    assert gone.event_id == event.pk and gone.decision == "retraction"
    event.refresh_from_db()
    assert event.status == AlertEvent.Status.RETRACTED
    assert event.request.status == Request.Status.CANCELLED
    assert set(event.request.sequences.values_list("status", flat=True)) == {Sequence.Status.CANCELLED}


def test_lvk_event_not_significant_is_not_tiled(pipeline) -> None:  # noqa: ANN001
    raw = _corpus(S230525A)
    alert = pipeline.kafka(raw, LVK_TOPIC, _lvk_time(raw) + timedelta(minutes=1))
    event = _event(alert)
    assert event.status == AlertEvent.Status.NOT_ACTIONABLE and "not significant" in event.status_reason
    assert event.request is None and event.tiles == []


# --- Bad maps ----------------------------------------------------------------------------------------------------
def _not_healpix() -> bytes:
    from astropy.io import fits

    out = io.BytesIO()
    fits.PrimaryHDU(np.zeros((32, 32), dtype=np.float32)).writeto(out)
    return out.getvalue()


@pytest.mark.parametrize(("case", "expected"), [
    ("truncated", "truncated"),
    ("not healpix", "not a HEALPix map"),
    ("huge", "larger than the limit"),
])
def test_a_bad_map_makes_the_event_not_actionable_with_the_reason(pipeline, monkeypatch, case, expected):  # noqa: ANN001
    raw = _corpus(S230522A)
    fits = base64.b64decode(json.loads(raw)["event"]["skymap"])
    if case == "truncated":
        fits = fits[:len(fits) - 2880 * 3 - 100]
    elif case == "not healpix":
        fits = _not_healpix()
    else:
        monkeypatch.setattr(tiled_follow_up, "MAP_MAX_BYTES", 100_000)
    alert = pipeline.kafka(_lvk_with_map(raw, fits), LVK_TOPIC, _lvk_time(raw) + timedelta(minutes=1))
    event = _event(alert)
    assert alert.status == Alert.Status.PROCESSED and "sky map rejected" in alert.status_reason
    assert event.status == AlertEvent.Status.NOT_ACTIONABLE
    assert "sky map rejected" in event.status_reason and expected in event.status_reason
    assert event.request is None and not Request.objects.exists() and event.tiles == []


def test_a_placeholder_guano_map_is_rejected_with_the_reason(pipeline) -> None:  # noqa: ANN001
    when = NIGHT
    alert = pipeline.kafka(_guano("700000001", when, None), GUANO_TOPIC, when + timedelta(minutes=1))
    event = _event(alert)
    assert alert.notice_type == "GUANO_Map"
    assert event.status == AlertEvent.Status.NOT_ACTIONABLE
    assert "healpix_file is not a base64 FITS file" in event.status_reason
    assert not Request.objects.exists()


# --- A GUANO map: coverage, pre-emption, re-plan, page --------------------------------------------------------------
def _wide_camera(pipeline) -> None:  # noqa: ANN001
    """3"/px: a 1.07 x 0.85 deg field, for maps of a few square degrees."""
    detector = pipeline.obs.detector
    detector.pixel_scale_arcsec = 3.0
    detector.save()


def _guano_map(pipeline, trig: str, ra: float, dec: float, *, record: int = 2, alert_type: str = "initial",  # noqa: ANN001
               when: datetime = NIGHT) -> tuple[Alert, np.ndarray]:
    fits, prob = _flat_map_fits(nside=256, ra0=ra, dec0=dec, sigma_deg=0.4, gzipped=True)
    alert = pipeline.kafka(_guano(trig, when, fits, alert_type=alert_type, record=record), GUANO_TOPIC,
                           when + timedelta(minutes=record))
    return alert, prob


def _independent_coverage(prob: np.ndarray, entries: list[dict]) -> float:
    ra, dec = tiling.ring2ang(8, np.flatnonzero(prob))
    inside = _inside_any_tile([tile_from_entry(e) for e in entries], np.degrees(ra), np.degrees(dec))
    return float(prob[prob > 0][inside].sum())


def test_guano_map_becomes_tiles_covering_the_stated_probability_and_preempts(pipeline) -> None:  # noqa: ANN001
    _wide_camera(pipeline)
    site = pipeline.obs.site
    ra, dec = zenith_ra_dec(site.latitude_deg, site.longitude_deg, NIGHT)
    alert, prob = _guano_map(pipeline, "700000002", ra, dec - 5.0)
    event = _event(alert)
    assert alert.notice_type == "GUANO_Map" and event.skymap_alert_id == alert.pk
    assert event.status == AlertEvent.Status.OBSERVING, event.status_reason
    sequences = _check_tiled(event, pipeline.strategy, now=NIGHT + timedelta(minutes=2))
    entries = sorted(event.tiles, key=lambda e: e["rank"])
    # the budget is the coverage: stopped at the first tile reaching 90 %, within max_tiles
    assert 1 < len(entries) < pipeline.strategy.max_tiles
    assert entries[-1]["cumulative_probability"] >= 0.9 > entries[-2]["cumulative_probability"]
    assert _independent_coverage(prob, entries) >= 0.9 - 0.015
    # the first tile pre-empts, like a point alert: slew first, then the sequence
    first = entries[0]
    assert pipeline.telescope.commands == [("abort",), ("unpark",), ("slew", pytest.approx(first["ra_deg"]),
                                                                     pytest.approx(first["dec_deg"]))]
    assert ObservatoryState.objects.get().preempt_sequence_id == sequences[0].pk  # one slew: already pointed
    assert Log.objects.filter(message__contains=f"pre-emption by sequence {sequences[0].pk}: "
                                                f"alert {event.name} tile 1").exists()
    assert (event.pointed_ra_deg, event.pointed_dec_deg) == pytest.approx((first["ra_deg"], first["dec_deg"]))


def test_an_update_map_replans_the_tiles_not_observed(pipeline) -> None:  # noqa: ANN001
    _wide_camera(pipeline)
    site = pipeline.obs.site
    ra, dec = zenith_ra_dec(site.latitude_deg, site.longitude_deg, NIGHT)
    first_alert, _ = _guano_map(pipeline, "700000003", ra, dec - 5.0)
    event = _event(first_alert)
    old_request = event.request
    sequences = list(old_request.sequences.order_by("order"))
    assert len(sequences) >= 3
    # tile 1 was observed, tile 2 is being observed
    with time_machine.travel(NIGHT + timedelta(minutes=3), tick=False):
        assert routine_services.sequence_claim_for_execution(sequence_id=sequences[0].pk, token="t1")
        routine_services.sequence_end_execution(sequence_id=sequences[0].pk, token="t1", status="completed")
        assert routine_services.sequence_claim_for_execution(sequence_id=sequences[1].pk, token="t2")
    observed = {e["index"] for e in event.tiles if e["sequence"] in (sequences[0].pk, sequences[1].pk)}

    update, prob = _guano_map(pipeline, "700000003", ra + 0.6, dec - 5.3, record=4, alert_type="update")
    assert update.event_id == event.pk, update.status_reason
    event.refresh_from_db()
    assert "re-planned" in event.status_reason and event.skymap_alert_id == update.pk
    new_request = event.request
    assert new_request.pk != old_request.pk and new_request.name == f"{event.name} tiling, re-plan 1"
    # the waiting tiles of the first plan are cancelled, the observed and running ones are not
    statuses = dict(old_request.sequences.values_list("pk", "status"))
    assert statuses[sequences[0].pk] == "completed" and statuses[sequences[1].pk] == "executing"
    assert {statuses[s.pk] for s in sequences[2:]} == {"cancelled"}
    # the event keeps the observed tiles (plan 1) and the new plan's tiles (plan 2), none observed twice
    kept = [e for e in event.tiles if e["plan"] == 1]
    replanned = sorted((e for e in event.tiles if e["plan"] == 2), key=lambda e: e["rank"])
    assert {e["index"] for e in kept} == observed and all(e["request"] == old_request.pk for e in kept)
    assert replanned and not observed & {e["index"] for e in replanned}
    assert [e["sequence"] for e in replanned] == list(new_request.sequences.order_by("order")
                                                      .values_list("pk", flat=True))
    # coverage counts the observed tiles: with them, the new tiles reach 90 % of the new map
    assert replanned[-1]["cumulative_probability"] >= 0.9
    assert _independent_coverage(prob, kept + replanned) >= 0.9 - 0.015

    # a retraction cancels what waits or runs, in both requests
    retraction = json.loads(_corpus("gcn-schema/swift.bat.Guano.Retraction.example.json"))
    retraction.update(id=["700000003"], trigger_time=_iso(NIGHT), alert_datetime=_iso(NIGHT + timedelta(hours=1)))
    gone = pipeline.kafka(json.dumps(retraction).encode(), GUANO_TOPIC, NIGHT + timedelta(hours=1))
    assert gone.event_id == event.pk and gone.decision == "retraction"
    event.refresh_from_db()
    assert event.status == AlertEvent.Status.RETRACTED
    assert Request.objects.get(pk=new_request.pk).status == Request.Status.CANCELLED
    assert Sequence.objects.get(pk=sequences[1].pk).status == "cancelled"  # the running tile is aborted
    assert Sequence.objects.get(pk=sequences[0].pk).status == "completed"


def test_event_page_shows_the_tiles_and_their_plot(pipeline, client) -> None:  # noqa: ANN001
    _wide_camera(pipeline)
    site = pipeline.obs.site
    ra, dec = zenith_ra_dec(site.latitude_deg, site.longitude_deg, NIGHT)
    alert, _ = _guano_map(pipeline, "700000004", ra, dec - 5.0)
    event = _event(alert)
    url = reverse("alert_manager:event_tiles_png", args=[event.pk])
    assert client.get(url).status_code == 302  # login first
    for role in ("astronomer", "operator"):
        client.force_login(UserFactory(role=role))
        response = client.get(url)
        assert response.status_code == 200 and response["Content-Type"] == "image/png"
        assert response.content.startswith(PNG_SIGNATURE)
    page = client.get(reverse("alert_manager:event_detail", args=[event.pk])).content.decode()
    assert url in page and 'id="tile-table"' in page
    assert page.count("<tr data-tile=") == len(event.tiles)
    # a point event has no plot
    point = AlertEvent.objects.create(name="no tiles")
    assert client.get(reverse("alert_manager:event_tiles_png", args=[point.pk])).status_code == 404
    assert client.get(reverse("alert_manager:event_tiles_png", args=[99999])).status_code == 404
    # the same access as the event page: an account not validated is sent to the login page, never the picture
    client.force_login(UserFactory(role="astronomer", account_state="pending"))
    for forbidden in (url, reverse("alert_manager:event_detail", args=[event.pk])):
        response = client.get(forbidden)
        assert response.status_code in (302, 403) and response.get("Content-Type") != "image/png"


# --- A wide error circle ----------------------------------------------------------------------------------------
def test_a_wide_gbm_circle_becomes_tiles_and_a_precise_position_supersedes_them(pipeline) -> None:  # noqa: ANN001
    site = pipeline.obs.site
    ra, dec = zenith_ra_dec(site.latitude_deg, site.longitude_deg, NIGHT)
    gbm = pipeline.voevent(_gbm(790000101, NIGHT, ra, dec, 3.0), NIGHT + timedelta(seconds=15))
    event = _event(gbm)
    assert gbm.notice_type == "GBM_Flt_Pos" and event.skymap_alert_id == gbm.pk
    assert event.status == AlertEvent.Status.OBSERVING, event.status_reason
    assert "3 deg error circle: 10 tiles" in event.status_reason
    sequences = _check_tiled(event, pipeline.strategy, now=NIGHT + timedelta(seconds=15))
    assert len(sequences) == pipeline.strategy.max_tiles
    offsets = [math.degrees(tiling._angle_rad(math.radians(ra), math.radians(dec), math.radians(e["ra_deg"]),
                                              math.radians(e["dec_deg"])))
               for e in sorted(event.tiles, key=lambda e: e["rank"])]
    assert max(offsets) < 1.5  # a Gaussian circle (R90 = 3 deg, nearly flat at its core): fields of its core first
    first = min(event.tiles, key=lambda e: e["rank"])
    assert pipeline.telescope.slews == [(pytest.approx(first["ra_deg"]), pytest.approx(first["dec_deg"]))]
    assert ObservatoryState.objects.get().preempt_sequence_id == sequences[0].pk

    # Swift BAT sees the burst: a 3' position supersedes the tiling (waiting tiles cancelled, pointed at)
    bat = pipeline.voevent(swift_packet("BAT_GRB_Pos", 990101, 1, NIGHT + timedelta(seconds=1), ra + 0.5, dec,
                                        0.05), NIGHT + timedelta(seconds=30))
    assert bat.event_id == event.pk
    event.refresh_from_db()
    assert event.request.pk not in {s.request_id for s in sequences}
    assert not event.request.name.endswith("tiling")
    assert (event.pointed_ra_deg, event.pointed_dec_deg) == pytest.approx((ra + 0.5, dec))
    assert {s.status for s in Sequence.objects.filter(pk__in=[s.pk for s in sequences])} == {"cancelled"}
    # the telescope left the tile for the burst, whose first sequence runs next
    assert pipeline.telescope.slews[-1] == (pytest.approx(ra + 0.5), pytest.approx(dec))
    assert ObservatoryState.objects.get().preempt_sequence_id == event.request.sequences.order_by("order").first().pk


def test_without_a_tiling_strategy_nothing_changes(pipeline, monkeypatch) -> None:  # noqa: ANN001
    services.strategy_activate(strategy=pipeline.strategy, active=False)

    def boom(**kwargs):  # noqa: ANN003, ANN202
        raise AssertionError("a notice without a tiling strategy must not reach the tiling code")

    monkeypatch.setattr(tiled_follow_up, "follow_up_tiles", boom)
    site = pipeline.obs.site
    ra, dec = zenith_ra_dec(site.latitude_deg, site.longitude_deg, NIGHT)
    gbm = pipeline.voevent(_gbm(790000102, NIGHT, ra, dec, 3.0), NIGHT + timedelta(seconds=15))
    assert _event(gbm).status == AlertEvent.Status.NOT_ACTIONABLE and not Request.objects.exists()
    point = pipeline.voevent(swift_packet("BAT_GRB_Pos", 990102, 1, NIGHT + timedelta(hours=1), ra, dec, 0.05),
                             NIGHT + timedelta(hours=1, seconds=20))
    assert _event(point).request is not None and _event(point).tiles == []
