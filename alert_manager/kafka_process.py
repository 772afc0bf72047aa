"""The `alert-kafka` process: GCN Kafka (or a local/partner cluster) into PyROS, durably.

    python -m alert_manager.kafka_process

Settings from the environment (README): GCN_KAFKA_CLIENT_ID / GCN_KAFKA_CLIENT_SECRET / GCN_KAFKA_DOMAIN,
or PYROS_KAFKA_BOOTSTRAP for a plain cluster; PYROS_KAFKA_GROUP; PYROS_KAFKA_TOPICS (else the topics
operators chose on the Alert streams page, else the GRB list). Each message is stored as an Alert row
(``alert_manager.services.kafka_intake``) before its offset is committed, then processed by the alerts
worker like any alert. The stream's health (connected, heartbeat age, per-topic counts, lag) is written
to ``AlertStreamHealth`` at most once a second and shown on the Alert streams page and the dashboard.

Without credentials nor bootstrap it says so in the log and on that page and waits (the rest of PyROS
runs as before; a supervisor must not see it crash-loop)."""

from __future__ import annotations

import logging
import os
import signal
import threading
from datetime import UTC, datetime

log = logging.getLogger("pyros.alert_manager.kafka")

# How often the process looks at the operators' topic choice.
TOPICS_CHECK_S = 5.0


def _ensure_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pyros.settings")
    import django
    from django.apps import apps

    if not apps.ready:
        django.setup()


def kafka_settings():
    """The consumer's settings: the environment, with the operators' topic choice when the environment
    does not fix the topics."""
    from alert_manager.kafka_consumer import KafkaSettings
    from pyrosapp.models import AlertStreamHealth

    environ = dict(os.environ)
    if not environ.get("PYROS_KAFKA_TOPICS"):
        chosen = AlertStreamHealth.objects.filter(source="kafka").values_list("topics", flat=True).first()
        if chosen:
            environ["PYROS_KAFKA_TOPICS"] = ",".join(chosen)
    return KafkaSettings.from_env(environ)


def save_health(snapshot, *, configured: bool = True, detail: str = "") -> None:  # noqa: ANN001
    from django.db import close_old_connections

    from alert_manager.kafka_consumer import snapshot_to_dict
    from pyrosapp.models import AlertStreamHealth

    close_old_connections()
    data = snapshot_to_dict(snapshot) if snapshot is not None else {}
    heartbeat = snapshot.last_heartbeat_at if snapshot is not None else None
    before = AlertStreamHealth.objects.filter(source="kafka").values_list("snapshot", flat=True).first() or {}
    if bool(data.get("heartbeat_alarm")) != bool(before.get("heartbeat_alarm")):
        notify_stream_silent(silent=bool(data.get("heartbeat_alarm")), data=data)
    AlertStreamHealth.objects.update_or_create(source="kafka", defaults={
        "configured": configured, "detail": detail[:500], "connected": bool(data.get("connected")),
        "last_heartbeat": datetime.fromtimestamp(heartbeat, tz=UTC) if heartbeat else None, "snapshot": data})


def notify_stream_silent(*, silent: bool, data: dict) -> None:
    """Operators who asked for observatory alarms hear when the alert stream falls silent and comes back."""
    from alert_manager.kafka_consumer import health_status
    from common import notifications

    verdict = health_status(data)[1]
    notifications.notify("observatory_alarm",
                         subject="alert stream silent: no GCN heartbeat" if silent else "alert stream back",
                         body=f"GCN Kafka: {verdict}.", link="/alerts/streams/")


def store(records):  # noqa: ANN001, ANN201
    from django.db import close_old_connections

    from alert_manager.services.kafka_intake import alert_receive_kafka

    close_old_connections()
    return alert_receive_kafka(records=records)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _ensure_django()
    from alert_manager.kafka_consumer import KafkaIntake

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    settings = kafka_settings()
    from alert_manager.services.intake import start_requeue_thread

    start_requeue_thread(stop)  # rows stored while the broker was down leave once it is back
    if not settings.configured:
        log.warning("%s; the Kafka intake waits (the rest of PyROS runs)", settings.why_not_configured)
        save_health(None, configured=False, detail=settings.why_not_configured)
        stop.wait()
        return
    while not stop.is_set():
        log.warning("GCN Kafka intake: %s", settings.describe())
        save_health(None, configured=True, detail=settings.describe())
        intake = KafkaIntake(settings, store=store,
                             on_health=lambda snap, s=settings: save_health(snap, detail=s.describe()))
        runner = threading.Thread(target=intake.run, args=(stop,), name="kafka-intake", daemon=True)
        runner.start()
        # Operators may choose other topics on the Alert streams page: re-subscribe when they do.
        while runner.is_alive() and not stop.wait(TOPICS_CHECK_S):
            chosen = kafka_settings()
            if chosen.topics != settings.topics:
                log.warning("GCN Kafka topics changed: %s", ", ".join(chosen.topics))
                intake.stop()
                runner.join(60)
                settings = chosen
                break
        else:
            runner.join(60)
            return


if __name__ == "__main__":
    main()
