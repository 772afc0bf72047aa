"""Alert pages and API: what astronomers and operators see and may do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.urls import reverse

from alert_manager import selectors, services
from alert_manager.packet_rewrite import as_fresh_burst
from alert_manager.services import intake
from alert_manager.tests.conftest import CORPUS_DIR, corpus_entries
from alert_manager.tests.helpers import NIGHT, swift_packet, zenith_ra_dec
from alert_manager.tests.packets import make_packet
from alert_manager.voevent import parse_voevent
from alert_manager.vtp import VTPTestServer
from pyrosapp.models import Alert, AlertEvent, Strategy
from pyrosapp.tests.factories import UserFactory


@pytest.fixture
def pipeline(alert_observatory, telescope, monkeypatch):  # noqa: ANN001, ANN201
    """Intake and processing; the majordome runs for real (the observatory state is the default, daytime: it
    moves nothing) and its device connection is the recorder ``telescope``."""
    monkeypatch.setattr(intake, "alert_queue", lambda *, alert_id: True)

    def ingest(raw: bytes, when: datetime) -> Alert:
        with time_machine.travel(when, tick=False):
            alert_id = services.alert_receive(raw=raw)
            services.alert_process(alert_id=alert_id)
        return Alert.objects.get(pk=alert_id)

    return ingest


@pytest.fixture
def astronomer_client(client, db):  # noqa: ANN001, ANN201
    client.force_login(UserFactory(role="astronomer"))
    return client


@pytest.fixture
def operator_client(client, db):  # noqa: ANN001, ANN201
    client.force_login(UserFactory(role="operator"))
    return client


def _burst(pipeline, alert_observatory, trig: int, *, role: str = "observation") -> AlertEvent:  # noqa: ANN001
    site = alert_observatory.site
    ra, dec = zenith_ra_dec(site.latitude_deg, site.longitude_deg, NIGHT)
    pipeline(swift_packet("BAT_GRB_Pos", trig, 1, NIGHT, ra, dec, 0.05, role=role), NIGHT + timedelta(seconds=20))
    alert = pipeline(swift_packet("XRT_Pos", trig, 2, NIGHT, ra + 0.01, dec, 0.001, role=role, packet_type=67),
                     NIGHT + timedelta(seconds=60))
    return AlertEvent.objects.get(pk=alert.event_id)


def test_alert_list_shows_bursts_newest_first_with_their_notices(astronomer_client, pipeline,  # noqa: ANN001
                                                                  alert_observatory) -> None:
    older = _burst(pipeline, alert_observatory, 300001)
    newer = _burst(pipeline, alert_observatory, 300002)
    test_event = _burst(pipeline, alert_observatory, 300003, role="test")
    page = astronomer_client.get(reverse("alert_manager:event_list")).content.decode()
    assert page.index(newer.name) < page.index(older.name)
    assert "BAT_GRB_Pos" in page and "XRT_Pos" in page and "Swift" in page
    assert test_event.name not in page  # test events only on demand
    assert test_event.name in astronomer_client.get(reverse("alert_manager:event_list") + "?tests=1").content.decode()
    with time_machine.travel(NIGHT + timedelta(minutes=2), tick=False):
        page = astronomer_client.get(reverse("alert_manager:event_list")).content.decode()
    assert "Alert in progress" in page


def test_event_detail_has_the_timeline_raw_xml_params_and_request(astronomer_client, pipeline,  # noqa: ANN001
                                                                  alert_observatory) -> None:
    event = _burst(pipeline, alert_observatory, 300004)
    page = astronomer_client.get(reverse("alert_manager:event_detail", args=[event.pk])).content.decode()
    assert page.index("BAT_GRB_Pos_300004-1") < page.index("XRT_Pos_300004-2")  # timeline order
    assert "&lt;What&gt;" in page  # raw XML shown as text
    assert "&quot;TrigID&quot;: &quot;300004&quot;" in page  # parsed params
    assert f"#{event.request_id}" in page and reverse("routine_manager:request_detail", args=[event.request_id]) in page


def test_a_hostile_packet_is_shown_escaped(astronomer_client, pipeline, alert_observatory) -> None:  # noqa: ANN001
    raw = make_packet("ivo://pyros/tests#xss", params={"Packet_Type": "61", "TrigID": "1",
                                                       "Comment": "<script>alert(1)</script>"},
                      time_utc=NIGHT, ra_deg=1.0, dec_deg=1.0, error_deg=0.1)
    alert = pipeline(raw, NIGHT)
    page = astronomer_client.get(reverse("alert_manager:alert_detail", args=[alert.pk])).content.decode()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page


def test_api_alerts_list_has_the_documented_shape(astronomer_client, pipeline, alert_observatory) -> None:  # noqa: ANN001
    event = _burst(pipeline, alert_observatory, 300005)
    data = astronomer_client.get("/api/alerts/").json()
    assert [item["id"] for item in data] == [event.pk]
    item = data[0]
    assert set(item) == {"id", "name", "missions", "trigger_ids", "burst_time", "ra_deg", "dec_deg", "error_deg",
                         "status", "request", "notices"}
    assert item["missions"] == ["Swift"] and item["trigger_ids"] == {"Swift": "300005"}
    assert item["request"] == event.request_id and item["status"] == "observing"
    assert item["error_deg"] == pytest.approx(0.001)
    assert [n["ivorn"] for n in item["notices"]] == ["ivo://nasa.gsfc.gcn/SWIFT#BAT_GRB_Pos_300005-1",
                                                     "ivo://nasa.gsfc.gcn/SWIFT#XRT_Pos_300005-2"]
    assert set(item["notices"][0]) == {"ivorn", "role", "packet_type", "received"}
    assert astronomer_client.get(f"/api/alerts/{event.pk}/").json()["notices"][1]["params"]["toplevel"]["TrigID"] == \
        "300005"
    with time_machine.travel(NIGHT + timedelta(minutes=2), tick=False):
        assert astronomer_client.get("/api/alerts/in-progress/").json()["id"] == event.pk


def test_api_requires_login(client, db) -> None:  # noqa: ANN001
    assert client.get("/api/alerts/").status_code in (401, 403)


def test_operators_switch_strategies_astronomers_cannot(client, alert_observatory) -> None:  # noqa: ANN001
    deep = Strategy.objects.get(name="GRB deep follow-up")
    client.force_login(UserFactory(role="astronomer"))
    assert client.post(reverse("alert_manager:strategy_switch", args=[deep.pk]), {"active": "1"}).status_code == 403
    client.force_login(UserFactory(role="operator"))
    page = client.get(reverse("alert_manager:strategy_list")).content.decode()
    assert "GRB deep follow-up" in page and "10×60" in page
    client.post(reverse("alert_manager:strategy_switch", args=[deep.pk]), {"active": "1"})
    assert list(Strategy.objects.filter(is_active=True).values_list("name", flat=True)) == ["GRB deep follow-up"]


def test_send_test_packet_page_sends_a_fresh_copy_over_vtp(client, alert_observatory, settings) -> None:  # noqa: ANN001
    entries = [e for e in corpus_entries() if "BAT_GRB_Pos" in e["ivorn"] and e["role"] == "observation"]
    if not entries:
        pytest.skip("VOEvent corpus absent")
    client.force_login(UserFactory(role="astronomer"))
    assert client.get(reverse("alert_manager:send_test")).status_code == 403
    client.force_login(UserFactory(role="operator"))
    assert entries[0]["file"] in client.get(reverse("alert_manager:send_test")).content.decode()
    with VTPTestServer() as server:
        settings.PYROS_COMET_PORT = server.port
        response = client.post(reverse("alert_manager:send_test"),
                               {"corpus_file": entries[0]["file"], "fresh": "on", "zenith": "on"}, follow=True)
        assert "Comet accepted the packet" in response.content.decode()
        sent = parse_voevent(server.received[0])
    assert sent.ivorn != entries[0]["ivorn"] and sent.notice_type == "BAT_GRB_Pos"
    assert abs((sent.event_time_utc - datetime.now(UTC)).total_seconds()) < 60
    assert sent.trigger_id != entries[0]["trig"].split("=")[1] and sent.position_usable
    # Paths outside the corpus index are refused.
    response = client.post(reverse("alert_manager:send_test"), {"corpus_file": "../../etc/passwd"}, follow=True)
    assert "Unknown corpus packet" in response.content.decode()


def test_fresh_burst_rewrite_keeps_the_mission_format(corpus_bytes) -> None:  # noqa: ANN001
    svom = next(raw for name, raw in corpus_bytes.items() if b"eclairs-wakeup" in raw and b"Burst_Id" in raw)
    now = datetime(2026, 2, 1, 12, 0, tzinfo=UTC)
    fresh = parse_voevent(as_fresh_burst(svom, now=now, ra_deg=12.5, dec_deg=-30.25))
    original = parse_voevent(svom)
    assert fresh.mission == "SVOM" and fresh.trigger_id.startswith(original.trigger_id + "p")
    assert fresh.event_time_utc == now and (fresh.ra_deg, fresh.dec_deg) == (12.5, -30.25)
    assert fresh.error_deg == original.error_deg and fresh.notice_type == original.notice_type
    assert CORPUS_DIR.is_dir()


def test_in_progress_is_none_without_an_active_burst(db) -> None:  # noqa: ANN001
    assert selectors.alert_in_progress() is None
