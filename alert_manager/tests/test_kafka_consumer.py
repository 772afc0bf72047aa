"""The GCN Kafka intake (alert_manager.kafka_consumer) against librdkafka's in-process mock cluster.

No database and no network: the store callbacks write to memory or to a throw-away sqlite3 file.
Tests that need the mock cluster skip when confluent-kafka / gcn-kafka are not installed.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from alert_manager.kafka_consumer import (
    DEFAULT_GROUP,
    DEFAULT_TOPICS,
    HEARTBEAT_TOPIC,
    Backoff,
    HealthSnapshot,
    KafkaConfigError,
    KafkaIntake,
    KafkaPublishError,
    KafkaRecord,
    KafkaSettings,
    StoreResult,
    consumer_config,
    health_status,
    publish,
)

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO.parent / "shared" / "data" / "gcn-kafka"
TOPIC_A, TOPIC_B = "test.alerts.a", "test.alerts.b"
FAST = {"reconnect.backoff.max.ms": 500}  # librdkafka default: up to 10 s between reconnect attempts
# The mock makes a member joining a group that another member just left wait one session timeout
# (45 s by default; a real broker does not wait): short sessions for the tests that restart a group.
RESTART = {**FAST, "session.timeout.ms": 1500, "heartbeat.interval.ms": 300}
LOGGER = "pyros.alert_manager.kafka"


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def wait_until(predicate: Callable[[], object], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class MemoryStore:
    """store() callback: keeps one row per (topic, partition, offset), as the Django one must."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, int, int], KafkaRecord] = {}
        self.calls: list[list[tuple[str, int, int]]] = []
        self.lock = threading.Lock()

    def __call__(self, records: list[KafkaRecord]) -> list[StoreResult]:
        results = []
        with self.lock:
            self.calls.append([r.ident for r in records])
            for r in records:
                created = r.ident not in self.rows
                self.rows.setdefault(r.ident, r)
                results.append(StoreResult.of(r, created=created))
        return results

    def values(self, topic: str | None = None) -> list[bytes]:
        with self.lock:
            return [r.value for k, r in sorted(self.rows.items()) if topic is None or k[0] == topic]

    @property
    def delivered(self) -> list[tuple[str, int, int]]:
        with self.lock:
            return [ident for call in self.calls for ident in call]


class Running:
    """An intake running in a thread; close() stops and joins it (bounded)."""

    def __init__(self, intake: KafkaIntake) -> None:
        self.intake = intake
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="test-kafka-intake", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.intake.run(self.stop)
        except BaseException as exc:  # SystemExit from a "killed" store, or a failure to report
            self.error = exc

    @property
    def health(self) -> HealthSnapshot:
        return self.intake.last_health

    def close(self, timeout: float = 20.0) -> None:
        self.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the intake did not stop"


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, level: int) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno == level]


@pytest.fixture(autouse=True)
def kafka_log():
    """The intake's log records, kept away from the project's console/database handlers (no database here)."""
    log = logging.getLogger(LOGGER)
    saved = (log.handlers[:], log.propagate, log.level)
    handler = ListHandler()
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.DEBUG)
    yield handler
    log.handlers[:], log.propagate = saved[0], saved[1]
    log.setLevel(saved[2])


@pytest.fixture
def cluster(kafka_log):
    pytest.importorskip("confluent_kafka", reason="confluent-kafka is not installed")
    pytest.importorskip("gcn_kafka", reason="gcn-kafka is not installed")
    from alert_manager.kafka_mock import MockCluster

    mock = MockCluster([TOPIC_A, TOPIC_B, HEARTBEAT_TOPIC])
    yield mock
    mock.stop()


@pytest.fixture
def start():
    """start(settings, store, **kwargs) -> Running; everything started is stopped at teardown."""
    running: list[Running] = []

    def _start(settings: KafkaSettings, store, **kwargs) -> Running:
        kwargs.setdefault("consumer_overrides", FAST)
        run = Running(KafkaIntake(settings, store=store, **kwargs))
        running.append(run)
        return run

    yield _start
    for run in running:
        run.close()


def settings_for(cluster, topics=(TOPIC_A, TOPIC_B), group: str | None = None) -> KafkaSettings:
    return KafkaSettings(bootstrap=cluster.bootstrap, topics=tuple(topics), group=group or f"g-{uuid.uuid4().hex[:8]}")


def committed(bootstrap: str, group: str, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """The group's committed offsets (an OffsetFetch; does not join the group)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        result = consumer.committed([TopicPartition(t, p) for t, p in partitions], timeout=10)
    finally:
        consumer.close()
    return {(tp.topic, tp.partition): tp.offset for tp in result}


class CommitSpy:
    """Wraps the real consumer and records each commit, interleaved with the store calls."""

    def __init__(self, inner, events: list) -> None:
        self._inner = inner
        self._events = events

    def commit(self, *args, **kwargs):
        offsets = kwargs.get("offsets") or (args[1] if len(args) > 1 else None)
        result = self._inner.commit(*args, **kwargs)
        self._events.append(("commit", {(tp.topic, tp.partition): tp.offset for tp in offsets}))
        return result

    def __getattr__(self, name):
        return getattr(self._inner, name)


# --------------------------------------------------------------------------------------------------
# settings (no Kafka needed)
# --------------------------------------------------------------------------------------------------
def test_from_env_with_credentials():
    s = KafkaSettings.from_env({"GCN_KAFKA_CLIENT_ID": "abc", "GCN_KAFKA_CLIENT_SECRET": "s3cret"})
    assert s.configured and s.mode == "gcn" and s.why_not_configured == ""
    assert s.domain == "gcn.nasa.gov" and s.server == "kafka.gcn.nasa.gov" and s.group == DEFAULT_GROUP
    assert s.topics == DEFAULT_TOPICS + (HEARTBEAT_TOPIC,)
    assert "s3cret" not in repr(s) and "s3cret" not in s.describe()
    t = KafkaSettings.from_env({"GCN_KAFKA_CLIENT_ID": "abc", "GCN_KAFKA_CLIENT_SECRET": "x",
                                "GCN_KAFKA_DOMAIN": "test.gcn.nasa.gov", "PYROS_KAFKA_GROUP": "ohp"})
    assert t.server == "kafka.test.gcn.nasa.gov" and t.group == "ohp"


def test_from_env_bootstrap_needs_no_credentials():
    s = KafkaSettings.from_env({"PYROS_KAFKA_BOOTSTRAP": " 127.0.0.1:9092, localhost:9093 ",
                                "PYROS_KAFKA_TOPICS": "a.b, c_d ,a.b,,"})
    assert s.configured and s.mode == "bootstrap"
    assert s.bootstrap == "127.0.0.1:9092,localhost:9093"
    assert s.topics == ("a.b", "c_d", HEARTBEAT_TOPIC)  # heartbeat always added, duplicates dropped
    # the plain cluster wins over credentials
    both = KafkaSettings.from_env({"PYROS_KAFKA_BOOTSTRAP": "h:1", "GCN_KAFKA_CLIENT_ID": "a",
                                   "GCN_KAFKA_CLIENT_SECRET": "b"})
    assert both.mode == "bootstrap"


def test_from_env_neither_is_not_configured():
    s = KafkaSettings.from_env({"GCN_KAFKA_CLIENT_ID": "  ", "PYROS_KAFKA_BOOTSTRAP": ""})
    assert not s.configured and s.mode is None
    assert s.why_not_configured == (
        "GCN Kafka is not configured: set GCN_KAFKA_CLIENT_ID and GCN_KAFKA_CLIENT_SECRET "
        "(https://gcn.nasa.gov/quickstart) or PYROS_KAFKA_BOOTSTRAP")
    half = KafkaSettings.from_env({"GCN_KAFKA_CLIENT_ID": "abc"})
    assert not half.configured and "GCN_KAFKA_CLIENT_SECRET is missing" in half.why_not_configured
    with pytest.raises(KafkaConfigError, match="not configured"):
        KafkaIntake(s, store=MemoryStore())


@pytest.mark.parametrize("env, message", [
    ({"GCN_KAFKA_DOMAIN": "dev.gcn.nasa.gov"}, "GCN_KAFKA_DOMAIN must be gcn.nasa.gov or test.gcn.nasa.gov"),
    ({"GCN_KAFKA_DOMAIN": "kafka.gcn.nasa.gov", "PYROS_KAFKA_BOOTSTRAP": "h:1"}, "GCN_KAFKA_DOMAIN"),
    ({"PYROS_KAFKA_BOOTSTRAP": "localhost"}, "PYROS_KAFKA_BOOTSTRAP must be host:port"),
    ({"PYROS_KAFKA_BOOTSTRAP": "h:99999"}, "PYROS_KAFKA_BOOTSTRAP"),
    ({"PYROS_KAFKA_TOPICS": "ok,not ok"}, "not a valid Kafka topic"),
])
def test_from_env_rejects_bad_values(env, message):
    with pytest.raises(KafkaConfigError, match=message):
        KafkaSettings.from_env(env)


def test_consumer_config():
    plain = consumer_config(KafkaSettings(bootstrap="127.0.0.1:1", group="g"))
    assert plain["group.id"] == "g" and plain["enable.auto.commit"] is False
    assert plain["auto.offset.reset"] == "earliest" and plain["enable.partition.eof"] is False
    assert plain["security.protocol"] == "plaintext" and plain["bootstrap.servers"] == "127.0.0.1:1"
    assert plain["fetch.wait.max.ms"] <= 10
    assert consumer_config(KafkaSettings(bootstrap="h:1"), **{"fetch.wait.max.ms": 7})["fetch.wait.max.ms"] == 7
    gcn = consumer_config(KafkaSettings(client_id="a", client_secret="b"))
    assert "bootstrap.servers" not in gcn and "fetch.wait.max.ms" not in gcn  # gcn_kafka fills in GCN's
    gcn_kafka = pytest.importorskip("gcn_kafka.core", reason="gcn-kafka is not installed")
    full = gcn_kafka.get_config("consumer", gcn, client_id="a", client_secret="b", domain="test.gcn.nasa.gov")
    assert full["bootstrap.servers"] == "kafka.test.gcn.nasa.gov" and full["group.id"] == DEFAULT_GROUP
    assert full["security.protocol"] == "sasl_ssl" and full["sasl.mechanisms"] == "OAUTHBEARER"


def test_backoff_is_exponential_and_capped():
    b = Backoff(0.5, 4.0)
    assert [b.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    b.reset()
    assert b.next() == 0.5


# --------------------------------------------------------------------------------------------------
# with the mock cluster
# --------------------------------------------------------------------------------------------------
def test_messages_stored_once_and_committed_only_after_store(cluster, start):
    from alert_manager.kafka_consumer import make_consumer

    a_values = [f"alert a{i}".encode() for i in range(5)]
    b_values = [b"<?xml version='1.0'?><voe:VOEvent/>\n", b"\x00\xffbinary", b"{}"]
    assert publish(cluster.bootstrap, TOPIC_A, a_values) == [(0, i) for i in range(5)]
    publish(cluster.bootstrap, TOPIC_B, b_values)
    events: list = []
    store = MemoryStore()

    def recording_store(records):
        result = store(records)
        events.append(("store", [r.ident for r in records]))
        return result

    settings = settings_for(cluster)
    run = start(settings, recording_store,
                consumer_factory=lambda s, **kw: CommitSpy(make_consumer(s, **kw), events))
    wait_until(lambda: len(store.rows) == 8, what="8 stored messages")
    publish(cluster.bootstrap, TOPIC_A, [b"live 1", b"live 2"])  # while running
    wait_until(lambda: len(store.rows) == 10, what="10 stored messages")
    wait_until(lambda: run.health.commits and not run.health.total_lag, what="commits caught up")
    run.close()

    assert store.values(TOPIC_A) == [*a_values, b"live 1", b"live 2"]
    assert store.values(TOPIC_B) == b_values  # bytes unchanged
    assert sorted(store.delivered) == sorted(store.rows)  # each delivered (and stored) once
    # never commit past what was stored: replay the event log
    stored_max: dict[tuple[str, int], int] = {}
    commits = 0
    for kind, payload in events:
        if kind == "store":
            for topic, part, offset in payload:
                stored_max[(topic, part)] = max(stored_max.get((topic, part), -1), offset)
        else:
            commits += 1
            for key, next_offset in payload.items():
                if key[0] != HEARTBEAT_TOPIC:
                    assert next_offset - 1 <= stored_max.get(key, -1), f"commit {key}@{next_offset} before store"
    assert commits >= 2
    assert committed(cluster.bootstrap, settings.group, [(TOPIC_A, 0), (TOPIC_B, 0)]) == {
        (TOPIC_A, 0): 7, (TOPIC_B, 0): 3}
    snap = run.health
    assert snap.state == "stopped" and snap.stored == 10 and snap.duplicates == 0 and snap.messages == 10
    topics = {t.topic: t for t in snap.topics}
    assert topics[TOPIC_A].messages == 7 and topics[TOPIC_A].last_offset == 6
    assert topics[TOPIC_B].last_message_at is not None and topics[HEARTBEAT_TOPIC].messages == 0
    json.dumps(snap.as_dict())


def test_killed_after_store_before_commit_is_redelivered(cluster, start):
    values = [b"one", b"two", b"three"]
    publish(cluster.bootstrap, TOPIC_A, values)
    settings = settings_for(cluster)
    store = MemoryStore()

    def store_then_die(records):
        store(records)  # rows committed...
        raise SystemExit("killed between store and commit")  # ...offsets never committed

    first = start(settings, store_then_die, consumer_overrides=RESTART)
    wait_until(lambda: not first.thread.is_alive(), what="the first intake to die")
    assert isinstance(first.error, SystemExit)
    assert len(store.rows) == 3
    assert committed(cluster.bootstrap, settings.group, [(TOPIC_A, 0)])[(TOPIC_A, 0)] < 0  # nothing committed

    second = start(settings, store, consumer_overrides=RESTART)  # same group: a restarted process
    wait_until(lambda: second.health.duplicates == 3, what="redelivery of the 3 stored messages")
    wait_until(lambda: committed(cluster.bootstrap, settings.group, [(TOPIC_A, 0)])[(TOPIC_A, 0)] == 3,
               what="offsets committed after the redelivery")
    assert store.values() == values  # exactly one copy of each
    assert sorted(store.delivered) == sorted([*store.rows, *store.rows])  # each came twice
    assert second.health.stored == 0


CHILD = textwrap.dedent("""
    import pathlib, sqlite3, sys, time
    from alert_manager.kafka_consumer import KafkaIntake, KafkaSettings, StoreResult

    db, marker = sys.argv[1], pathlib.Path(sys.argv[2])

    def store(records):
        con = sqlite3.connect(db)
        with con:
            con.executemany("INSERT OR IGNORE INTO alert VALUES (?, ?, ?, ?)",
                            [(r.topic, r.partition, r.offset, r.value) for r in records])
        con.close()
        marker.write_text("stored")
        time.sleep(120)  # SIGKILL arrives here: rows stored, offsets not committed
        return [StoreResult.of(r) for r in records]

    KafkaIntake(KafkaSettings.from_env(), store=store,
                consumer_overrides={"session.timeout.ms": 2000, "heartbeat.interval.ms": 500}).run()
""")


@pytest.mark.slow
def test_kill_9_between_store_and_commit_then_restart_keeps_one_copy(cluster, start, tmp_path):
    db = tmp_path / "alerts.sqlite3"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE alert (topic TEXT, part INTEGER, offs INTEGER, value BLOB, "
                    "UNIQUE (topic, part, offs))")
    con.close()
    values = [f"msg {i}".encode() for i in range(4)]
    publish(cluster.bootstrap, TOPIC_A, values)
    group = f"g-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "PYROS_KAFKA_BOOTSTRAP": cluster.bootstrap, "PYROS_KAFKA_GROUP": group,
           "PYROS_KAFKA_TOPICS": TOPIC_A}
    marker = tmp_path / "stored"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(db), str(marker)], cwd=REPO, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(marker.exists, timeout=30, what="the child to store")
        os.kill(child.pid, signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(10)

    def sqlite_store(records):
        con = sqlite3.connect(db)
        with con:
            results = []
            for r in records:
                cur = con.execute("INSERT OR IGNORE INTO alert VALUES (?, ?, ?, ?)", (r.topic, r.partition, r.offset,
                                                                                  r.value))
                results.append(StoreResult.of(r, created=cur.rowcount == 1))
        con.close()
        return results

    settings = KafkaSettings(bootstrap=cluster.bootstrap, group=group, topics=(TOPIC_A,))
    run = start(settings, sqlite_store, consumer_overrides=RESTART)
    # the killed member holds the partition until its session (2 s) expires
    wait_until(lambda: run.health.duplicates == 4, timeout=40, what="redelivery after kill -9")
    wait_until(lambda: committed(cluster.bootstrap, group, [(TOPIC_A, 0)])[(TOPIC_A, 0)] == 4, what="commit")
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT topic, part, offs, value FROM alert ORDER BY offs").fetchall()
    con.close()
    assert rows == [(TOPIC_A, 0, i, v) for i, v in enumerate(values)]


def test_store_failure_is_not_committed_and_comes_again(cluster, start):
    publish(cluster.bootstrap, TOPIC_A, [b"x1", b"x2", b"x3"])
    store = MemoryStore()
    failures = []

    def flaky_store(records):
        if len(failures) < 2:
            failures.append([r.ident for r in records])
            raise ConnectionError("database is down")
        return store(records)

    run = start(settings_for(cluster), flaky_store, backoff_initial=0.05)
    wait_until(lambda: len(store.rows) == 3, what="store to succeed after 2 failures")
    wait_until(lambda: not run.health.total_lag, what="commit")
    assert store.values() == [b"x1", b"x2", b"x3"]
    assert failures[0][0] == (TOPIC_A, 0, 0) and failures[1][0] == (TOPIC_A, 0, 0)  # re-seeked
    assert sorted(store.delivered) == sorted(store.rows)
    assert run.health.store_failures == 2 and not run.health.store_failing
    assert "database is down" in (run.health.last_error or "")


def test_heartbeats_update_health_and_are_not_stored(cluster, start):
    from alert_manager.kafka_mock import heartbeat_value

    settings = settings_for(cluster)
    store = MemoryStore()
    run = start(settings, store, heartbeat_commit_interval=0.1)
    publish(cluster.bootstrap, HEARTBEAT_TOPIC, [heartbeat_value() for _ in range(3)])
    publish(cluster.bootstrap, TOPIC_B, [b"alert"])
    wait_until(lambda: run.health.heartbeats == 3 and run.health.stored == 1, what="3 heartbeats and 1 alert")
    assert [k[0] for k in store.rows] == [TOPIC_B]
    snap = run.health
    assert snap.last_heartbeat_at is not None and not snap.heartbeat_alarm and snap.heartbeat_age_s < 30
    assert snap.messages == 1  # heartbeats are not counted as alerts
    wait_until(lambda: committed(cluster.bootstrap, settings.group, [(HEARTBEAT_TOPIC, 0)])[(HEARTBEAT_TOPIC, 0)] == 3,
               what="heartbeat offsets committed (so a restart does not read them all again)")
    assert health_status(run.health)[0] == "ok"


class FakeClock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def test_heartbeat_silence_raises_the_alarm_once_per_episode(cluster, start, kafka_log):
    from alert_manager.kafka_mock import heartbeat_value

    clock = FakeClock()
    snapshots: list[HealthSnapshot] = []
    run = start(settings_for(cluster), MemoryStore(), clock=clock, on_health=snapshots.append)
    publish(cluster.bootstrap, HEARTBEAT_TOPIC, [heartbeat_value()])
    wait_until(lambda: run.health.heartbeats == 1, what="a heartbeat")
    assert not run.health.heartbeat_alarm

    def alarms() -> list[str]:
        return [m for m in kafka_log.messages(logging.ERROR) if "no heartbeat for" in m]

    clock.advance(61)
    wait_until(lambda: run.health.heartbeat_alarm, what="the alarm")
    time.sleep(0.6)  # several more loop turns: still one log line
    assert len(alarms()) == 1 and re.search(r"no heartbeat for 6\d s", alarms()[0])
    level, sentence = health_status(run.health, now=clock())
    assert level == "error" and re.search(r"no gcn.heartbeat message for 6\d s", sentence)

    publish(cluster.bootstrap, HEARTBEAT_TOPIC, [heartbeat_value()])
    wait_until(lambda: not run.health.heartbeat_alarm, what="the alarm to clear")
    assert any("heartbeat back" in m for m in kafka_log.messages(logging.WARNING))
    clock.advance(120)
    wait_until(lambda: len(alarms()) == 2, what="a second episode")
    assert any(s.heartbeat_alarm for s in snapshots) and snapshots[-1].heartbeat_alarm
    # on_health: at most about once a second, plus on changes (a few seconds of running here)
    assert len(snapshots) < 40


@pytest.mark.parametrize("down_s", [1.0, pytest.param(30.0, marks=pytest.mark.slow, id="30s")])
def test_broker_down_then_back(cluster, start, kafka_log, down_s):
    if not cluster.controllable:
        pytest.skip("this librdkafka has no usable mock broker control")
    settings = settings_for(cluster)
    store = MemoryStore()
    snapshots: list[HealthSnapshot] = []
    run = start(settings, store, on_health=snapshots.append, disconnected_wait_max=0.5)
    publish(cluster.bootstrap, TOPIC_A, [b"before"])
    wait_until(lambda: store.values() == [b"before"] and run.health.connected, what="first message")

    cluster.broker_down(1)
    wait_until(lambda: run.health.state == "disconnected", what="disconnected state")
    down = run.health
    assert not down.connected and down.disconnected_since is not None and down.outages[-1].end is None
    assert health_status(down)[0] == "error"
    time.sleep(down_s)
    cluster.broker_up(1)
    publish(cluster.bootstrap, TOPIC_A, [b"after"], timeout=20)
    wait_until(lambda: store.values() == [b"before", b"after"], what="message after reconnection")
    wait_until(lambda: run.health.connected, what="connected again")
    snap = run.health
    assert len(snap.outages) == 1 and snap.outages[0].end is not None
    assert snap.outages[0].seconds(snap.at) >= down_s  # the gap is on record
    assert snap.as_dict()["outages"][0]["seconds"] >= down_s
    assert any(s.state == "disconnected" for s in snapshots)
    assert sum("disconnected from" in m for m in kafka_log.messages(logging.WARNING)) == 1  # once per episode
    assert any("is back after" in m for m in kafka_log.messages(logging.WARNING))


def test_auth_error_recreates_the_consumer(kafka_log):
    confluent_kafka = pytest.importorskip("confluent_kafka", reason="confluent-kafka is not installed")
    KafkaError = confluent_kafka.KafkaError

    class FakeConsumer:
        def __init__(self, config, fail: bool) -> None:
            self.error_cb, self.fail, self.closed = config["error_cb"], fail, False

        def subscribe(self, topics, **kwargs):
            self.topics = topics

        def poll(self, timeout):
            if self.fail:
                self.error_cb(KafkaError(KafkaError._AUTHENTICATION, "OAUTHBEARER token expired"))
            time.sleep(0.01)
            return None

        def consume(self, num_messages=1, timeout=-1):
            return []

        def close(self):
            self.closed = True

    made: list[FakeConsumer] = []

    def factory(settings, **config):
        made.append(FakeConsumer(config, fail=not made))
        return made[-1]

    run = Running(KafkaIntake(KafkaSettings(client_id="id", client_secret="secret"), store=MemoryStore(),
                              consumer_factory=factory, backoff_initial=0.01))
    try:
        wait_until(lambda: len(made) >= 2, what="a new consumer")
    finally:
        run.close()
    assert made[0].closed and made[0].topics[-1] == HEARTBEAT_TOPIC
    assert run.health.consumer_restarts == 1 and "token expired" in run.health.last_error
    assert any("recreating the consumer" in m for m in kafka_log.messages(logging.ERROR))


def test_real_corpus_messages_arrive_byte_for_byte(cluster, start):
    index = CORPUS / "index.json"
    if not index.exists():
        pytest.skip(f"GCN Kafka corpus not found at {CORPUS}")
    entries = json.loads(index.read_text())
    wanted = ["userguide/MS181101ab-ext-update.json"]  # 2.07 MB, two sky maps
    for topic in ("gcn.notices.einstein_probe.wxt.alert", "gcn.notices.svom.voevent.grm",
                  "gcn.classic.voevent.FERMI_GBM_FLT_POS"):
        wanted.append(next(e["file"] for e in entries if e["topic"] == topic))
    chosen = [e for e in entries if e["file"] in wanted]
    cluster.create_topics({e["topic"] for e in chosen})
    for e in chosen:
        publish(cluster.bootstrap, e["topic"], [(CORPUS / e["file"]).read_bytes()])
    store = MemoryStore()
    start(settings_for(cluster, topics=sorted({e["topic"] for e in chosen})), store)
    wait_until(lambda: len(store.rows) == len(chosen), what="corpus messages")
    got = {r.topic: r.value for r in store.rows.values()}
    for e in chosen:
        assert got[e["topic"]] == (CORPUS / e["file"]).read_bytes(), e["file"]


def test_publish_to_an_unreachable_cluster_fails_clearly():
    pytest.importorskip("confluent_kafka", reason="confluent-kafka is not installed")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(KafkaPublishError, match=f"127.0.0.1:{port}"):
        publish(f"127.0.0.1:{port}", "t", [b"x"], timeout=1.5)


def test_mock_cluster_with_producer_backend():
    pytest.importorskip("confluent_kafka", reason="confluent-kafka is not installed")
    from confluent_kafka import Consumer

    from alert_manager.kafka_mock import MockCluster

    with MockCluster(["solo"], backend="producer") as mock:
        assert mock.backend == "producer" and not mock.controllable and mock.bootstrap.startswith("127.0.0.1:")
        publish(mock.bootstrap, "solo", [b"hello"])
        consumer = Consumer({"bootstrap.servers": mock.bootstrap, "group.id": "p", "auto.offset.reset": "earliest",
                             "fetch.wait.max.ms": 10})
        try:
            consumer.subscribe(["solo"])
            deadline, got = time.monotonic() + 20, None
            while got is None and time.monotonic() < deadline:
                message = consumer.poll(0.2)
                if message is not None and message.error() is None:
                    got = message.value()
        finally:
            consumer.close()
        assert got == b"hello"
    assert not mock.running


def test_mock_cluster_command_line(tmp_path):
    pytest.importorskip("confluent_kafka", reason="confluent-kafka is not installed")
    address_file = tmp_path / "bootstrap"
    proc = subprocess.Popen([sys.executable, "-m", "alert_manager.kafka_mock", "--topics", "cli.topic", "--heartbeat",
                             "--bootstrap-file", str(address_file)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        wait_until(address_file.exists, timeout=20, what="the bootstrap file")
        address = address_file.read_text().strip()
        assert proc.stdout.readline().strip() == address
        assert publish(address, "cli.topic", [b"drill"]) == [(0, 0)]  # another process uses the address
        store = MemoryStore()
        intake = KafkaIntake(KafkaSettings(bootstrap=address, topics=("cli.topic",), group="cli"), store=store)
        run = Running(intake)
        try:
            wait_until(lambda: store.values() == [b"drill"] and intake.last_health.heartbeats >= 1,
                       what="message and heartbeat from the command-line cluster")
        finally:
            run.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
