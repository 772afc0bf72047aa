"""End to end over GCN Kafka: a librdkafka mock cluster (``python -m alert_manager.kafka_mock --heartbeat``), the
real alert-kafka process (``python -m alert_manager.kafka_process`` pointed at it by PYROS_KAFKA_BOOTSTRAP), a real
Celery worker consuming alerts, the INDI simulators at night and the test database. An Einstein Probe WXT notice
of the shared corpus produced to the cluster makes the simulated mount slew to its position (seen by an
independent INDI client) and the follow-up request is built; the same notice published again is one notice.

The notice is a real message of ``../shared/data/gcn-kafka`` whose error circle fits the default strategy,
rewritten in memory (the corpus file is only read): id, position (near the zenith now) and trigger time (now);
the same keys and value types, so still a message of its schema. Broker outages and restarts are covered by
test_kafka_consumer.py and test_kafka_intake.py; latency is measured by scripts/bench/bench_kafka.py.

Broker: RabbitMQ when CELERY_BROKER_URL is AMQP (CI), else the filesystem broker in a temp folder, as
test_end_to_end.py. The worker consumes its own queue (PYROS_ALERTS_QUEUE) and alert-kafka uses its own group.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

pytest.importorskip("confluent_kafka", reason="confluent-kafka is not installed")
pytest.importorskip("gcn_kafka", reason="gcn-kafka is not installed")

from alert_manager.tests.mount_watcher import MountWatcher  # noqa: E402
from alert_manager.tests.test_end_to_end import _wait_for_log  # noqa: E402
from pyrosapp.models import Alert, AlertEvent  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.services]

REPO = Path(__file__).resolve().parents[2]
KAFKA_DIR = REPO.parent / "shared" / "data" / "gcn-kafka"
TOPIC = "gcn.notices.einstein_probe.wxt.alert"
# Bound that catches a broken path (a cold worker, a consumer that waits its whole poll, a new INDI connection per
# alert) without failing on a loaded machine; the goal (p50 <= 30 ms) is measured by bench_kafka.py.
ASSERTED_MS = 1000.0


def _corpus_notice(max_error_deg: float) -> tuple[str, bytes]:
    """(file, bytes) of a real Einstein Probe WXT alert with an id and an error circle within the strategy's."""
    index = KAFKA_DIR / "index.json"
    if not index.exists():
        pytest.skip(f"GCN Kafka corpus absent: {KAFKA_DIR} (shared data not checked out)")
    for entry in json.loads(index.read_text(encoding="utf-8")):
        if entry["topic"] == TOPIC and entry.get("trigger_id") and 0 < (entry.get("error_deg") or 99) < max_error_deg:
            return entry["file"], (KAFKA_DIR / entry["file"]).read_bytes()
    pytest.skip(f"no Einstein Probe alert with an error below {max_error_deg} deg in {KAFKA_DIR}")


def _rewritten(raw: bytes, *, trigger_id: str, ra: float, dec: float, error_deg: float | None = None) -> bytes:
    """The notice with a new id, position and trigger time (now), and error radius if given: the same keys, each
    value of the same JSON type (numbers stay numbers, the id a list of one string)."""
    doc = json.loads(raw)
    new = dict(doc, id=[trigger_id], ra=round(ra, 4), dec=round(dec, 4),
               trigger_time=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"))
    if error_deg is not None:
        new["ra_dec_error"] = error_deg
    numbers = ("ra", "dec", "ra_dec_error")
    assert list(new) == list(doc) and all(type(new[k]) is type(doc[k]) for k in doc if k not in numbers)
    assert all(isinstance(new[k], float | int) for k in numbers)
    return json.dumps(new).encode()


@contextlib.contextmanager
def _process(cmd: list[str], env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen]:
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def _wait_alert(offset: int, timeout_s: float = 30.0) -> Alert:
    """The alert of this Kafka offset once processed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alert = Alert.objects.filter(kafka_topic=TOPIC, kafka_offset=offset).first()
        if alert is not None and alert.status not in (Alert.Status.RECEIVED, Alert.Status.PROCESSING):
            return alert
        time.sleep(0.05)
    raise AssertionError(f"{TOPIC}@{offset} not stored and processed within {timeout_s} s")


def test_an_einstein_probe_notice_produced_to_kafka_slews_the_mount(night_observatory, request, tmp_path):  # noqa: ANN001, PLR0915
    from alert_manager.demo import seed_strategies
    from alert_manager.kafka_consumer import publish
    from alert_manager.notices_json import parse_json_notice
    from common.testing import celery_worker, scaled_s, test_database_url, zenith_target
    from majordome.device_link import get_observatory, reset_observatory

    seed, indi_port = night_observatory
    strategy = seed_strategies()[0]
    name, original = _corpus_notice(strategy.max_error_deg)
    broker = os.environ.get("CELERY_BROKER_URL", "")
    broker = request.getfixturevalue("rabbitmq_url") if broker.startswith("amqp") else "filesystem://"
    queue = f"alerts-kafka-e2e-{os.getpid()}-{time.time_ns()}"
    env = {"CELERY_BROKER_URL": broker, "PYROS_ALERTS_QUEUE": queue, "PYROS_VAR_DIR": str(tmp_path / "var"),
           "PYROS_INDI_HOST": "127.0.0.1", "PYROS_INDI_PORT": str(indi_port), "DATABASE_URL": test_database_url()}
    full_env = {**os.environ, "DJANGO_SETTINGS_MODULE": "pyros.settings", **env}
    worker_log, kafka_log, mock_log = tmp_path / "worker.log", tmp_path / "alert-kafka.log", tmp_path / "mock.log"
    bootstrap_file = tmp_path / "bootstrap"
    watcher = MountWatcher(indi_port)
    watcher.start()
    time.sleep(1.0)  # let the watcher's getProperties settle before other clients connect
    get_observatory().mount.unpark()  # at night the telescope is out of its park position
    reset_observatory()

    with _process([sys.executable, "-m", "alert_manager.kafka_mock", "--topics", TOPIC, "--heartbeat",
                   "--bootstrap-file", str(bootstrap_file)], full_env, mock_log) as mock:
        deadline = time.monotonic() + 30
        while not bootstrap_file.exists():
            assert mock.poll() is None and time.monotonic() < deadline, mock_log.read_text(errors="replace")
            time.sleep(0.05)
        bootstrap = bootstrap_file.read_text().strip()
        kafka_env = {**full_env, "PYROS_KAFKA_BOOTSTRAP": bootstrap, "PYROS_KAFKA_GROUP": f"pyros-{queue}",
                     "PYROS_KAFKA_TOPICS": TOPIC}
        with celery_worker(queue, env=env, concurrency=4, log_path=worker_log), \
                _process([sys.executable, "-m", "alert_manager.kafka_process"], kafka_env, kafka_log) as intake:
            _wait_for_log(worker_log, "alert worker warmed up", 60)
            # Warm-up (and the intake's group join): a notice whose error circle (2 deg) is larger than the
            # strategy allows: stored, processed, no slew, no request.
            ra0, dec0 = zenith_target(seed.site)
            warm = _rewritten(original, trigger_id="01700000001", ra=(ra0 + 180.0) % 360.0, dec=-dec0, error_deg=2.0)
            (warm_offset,) = [offset for _, offset in publish(bootstrap, TOPIC, [warm])]
            warm_alert = _wait_alert(warm_offset, timeout_s=60)
            assert intake.poll() is None, kafka_log.read_text(errors="replace")[-3000:]
            assert warm_alert.transport == "kafka" and warm_alert.payload_format == "json", warm_alert.status_reason

            ra, dec = zenith_target(seed.site, dec_offset_deg=-5.0)
            notice = _rewritten(original, trigger_id="01700000002", ra=ra, dec=dec)
            parsed = parse_json_notice(notice, topic=TOPIC)  # still a valid notice of its schema
            assert parsed.error_deg < strategy.max_error_deg and parsed.role == "observation"
            watcher.wait_not_slewing()
            sent = time.time()
            ((_, offset),) = publish(bootstrap, TOPIC, [notice])
            busy = watcher.first_busy_after(sent, timeout_s=scaled_s(20))
            assert busy is not None, (f"the mount never slewed for {name}: {kafka_log.read_text()[-2000:]}"
                                      f"{worker_log.read_text()[-3000:]}")
            alert = _wait_alert(offset)
            assert bytes(alert.raw_xml) == notice and alert.kafka_partition == 0
            assert (alert.mission, alert.trigger_id, alert.status) == ("Einstein Probe", "01700000002", "processed")
            event = AlertEvent.objects.get(pk=alert.event_id)
            assert event.status == AlertEvent.Status.OBSERVING and event.request is not None, event.status_reason
            assert event.request.sequences.exists()

            # The mount ends at the notice's position (EOD coordinates are apparent: within precession of J2000).
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and (watcher.last_position is None
                                                   or abs(watcher.last_position[1] - dec) > 1.0
                                                   or watcher.last_state == "Busy"):
                time.sleep(0.2)
            assert watcher.last_position is not None and abs(watcher.last_position[1] - dec) < 1.0
            assert abs((watcher.last_position[0] - ra + 180.0) % 360.0 - 180.0) < 1.0

            # The same notice published again (a new offset, the same content): one notice, counted as a repeat.
            publish(bootstrap, TOPIC, [notice])
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and Alert.objects.get(pk=alert.pk).repeats == 0:
                time.sleep(0.05)
            assert Alert.objects.get(pk=alert.pk).repeats == 1
            assert Alert.objects.filter(kafka_topic=TOPIC).count() == 2
            assert AlertEvent.objects.filter(notices__kafka_topic=TOPIC).exclude(request=None).count() == 1
    watcher.close()

    slew_ms = (busy - sent) * 1e3
    timings = alert.timings
    marks = ["received", "task_started", "parsed", "grouped", "visibility", "pointed"]
    print(f"\nKafka produce -> mount Busy ({broker.partition(':')[0]} broker, {name} rewritten): {slew_ms:.1f} ms; "
          f"produce -> stored {(timings['received'] - sent) * 1e3:.1f} ms; worker steps (ms): " + ", ".join(
              f"{b} {(timings[b] - timings[a]) * 1e3:.1f}" for a, b in zip(marks, marks[1:], strict=False)
              if a in timings and b in timings))
    assert slew_ms < scaled_s(ASSERTED_MS), f"{slew_ms:.0f} ms from the produce to the slew: the path is broken"
