"""The Alert streams page and the dashboard alarm: what the alert-kafka process reported, judged now."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from alert_manager import selectors
from alert_manager.kafka_consumer import KafkaSettings
from alert_manager.kafka_process import kafka_settings
from pyrosapp.models import AlertStreamHealth
from pyrosapp.tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _report(**snapshot):
    base = {"at": timezone.now().isoformat(), "state": "connected", "connected": True, "server": "127.0.0.1:9092",
            "group": "pyros", "started_at": timezone.now().isoformat(), "heartbeat_age_s": 0.8, "heartbeats": 42,
            "heartbeat_alarm": False, "last_heartbeat_at": timezone.now().isoformat(), "messages": 3, "stored": 3,
            "duplicates": 0, "total_lag": 0,
            "topics": [{"topic": "gcn.notices.einstein_probe.wxt.alert", "messages": 3, "stored": 3, "duplicates": 0,
                        "last_message_at": None, "last_offset": 2, "error": None}], "outages": []}
    base.update(snapshot)
    AlertStreamHealth.objects.update_or_create(source="kafka", defaults={
        "configured": True, "detail": "127.0.0.1:9092", "connected": base["connected"], "snapshot": base})


@pytest.fixture
def operator(client):  # noqa: ANN001, ANN201
    client.force_login(UserFactory(role="operator"))
    return client


def test_a_healthy_stream_is_shown_with_its_topics_and_no_alarm(operator):
    _report()
    page = operator.get(reverse("alert_manager:streams")).content.decode()
    assert 'data-level="ok"' in page and "gcn.notices.einstein_probe.wxt.alert" in page and "42 received" in page
    assert selectors.alert_stream_alarms() == []


def test_a_silent_heartbeat_is_an_alarm_on_the_dashboard(operator):
    _report(heartbeat_alarm=True, heartbeat_age_s=75.0,
            last_heartbeat_at=(timezone.now() - timedelta(seconds=75)).isoformat())
    alarms = selectors.alert_stream_alarms()
    assert alarms and "no gcn.heartbeat message for 7" in alarms[0]
    banner = operator.get(reverse("dashboard:alert_banner")).content.decode()
    assert "stream-alarm" in banner and "gcn.heartbeat" in banner


def test_an_intake_that_stopped_reporting_is_an_alarm(operator):
    _report()
    AlertStreamHealth.objects.filter(source="kafka").update(updated=timezone.now() - timedelta(seconds=60))
    assert "not running" in selectors.alert_stream_alarms()[0]


def test_not_configured_says_why_and_is_no_alarm(operator):
    AlertStreamHealth.objects.create(source="kafka", configured=False,
                                     detail=KafkaSettings.from_env({}).why_not_configured)
    page = operator.get(reverse("alert_manager:streams")).content.decode()
    assert "GCN_KAFKA_CLIENT_ID" in page and 'data-level="off"' in page
    assert selectors.alert_stream_alarms() == []


def test_operators_choose_topics_and_the_intake_reads_them(operator, monkeypatch, settings):
    monkeypatch.delenv("PYROS_KAFKA_TOPICS", raising=False)
    settings.PYROS_KAFKA_TOPICS_ENV = ""
    response = operator.post(reverse("alert_manager:streams_topics"),
                             {"topics": ["igwn.gwalert"], "extra": "gcn.notices.maxi.gsc.unknown"})
    assert response.status_code == 302
    assert AlertStreamHealth.objects.get(source="kafka").topics == ["igwn.gwalert", "gcn.notices.maxi.gsc.unknown"]
    monkeypatch.setenv("PYROS_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    assert kafka_settings().topics == ("igwn.gwalert", "gcn.notices.maxi.gsc.unknown", "gcn.heartbeat")
    # a bad name or an empty choice changes nothing
    operator.post(reverse("alert_manager:streams_topics"), {"extra": "bad topic!"})
    operator.post(reverse("alert_manager:streams_topics"), {})
    assert AlertStreamHealth.objects.get(source="kafka").topics == ["igwn.gwalert", "gcn.notices.maxi.gsc.unknown"]


def test_astronomers_see_streams_but_cannot_choose_topics(client):
    client.force_login(UserFactory(role="astronomer"))
    assert client.get(reverse("alert_manager:streams")).status_code == 200
    assert client.post(reverse("alert_manager:streams_topics"), {"topics": ["igwn.gwalert"]}).status_code == 403
    assert list(AlertStreamHealth.objects.values_list("topics", flat=True)) in ([], [[]])


def test_the_test_page_publishes_a_corpus_message_to_the_local_cluster(operator, settings):
    pytest.importorskip("confluent_kafka")
    from alert_manager import selectors as sel
    from alert_manager.kafka_mock import MockCluster

    messages_ = sel.kafka_corpus_messages()
    if not messages_:
        pytest.skip("GCN Kafka corpus absent (../shared/data/gcn-kafka)")
    chosen = next(m for m in messages_ if m.topic == "gcn.notices.einstein_probe.wxt.alert")
    settings.PYROS_KAFKA_BOOTSTRAP = ""
    page = operator.get(reverse("alert_manager:send_test")).content.decode()
    assert 'id="kafka-not-configured"' in page
    response = operator.post(reverse("alert_manager:send_test_kafka"), {"kafka_file": chosen.file}, follow=True)
    assert "Not published: no local Kafka cluster" in response.content.decode()
    with MockCluster([chosen.topic]) as cluster:
        settings.PYROS_KAFKA_BOOTSTRAP = cluster.bootstrap
        assert 'id="send-kafka-form"' in operator.get(reverse("alert_manager:send_test")).content.decode()
        response = operator.post(reverse("alert_manager:send_test_kafka"), {"kafka_file": chosen.file}, follow=True)
        assert f"Published to {chosen.topic}[0]@0" in response.content.decode()
        # a name outside the corpus index is refused
        response = operator.post(reverse("alert_manager:send_test_kafka"), {"kafka_file": "../../etc/passwd"},
                                 follow=True)
        assert "Unknown corpus message" in response.content.decode()
