"""Durable GCN Kafka intake: settings, consumer factory, the store-then-commit loop, health.

Pure module: no Django here. Storage is a callback (`store`) written by the integrator; health goes
to another callback (`on_health`). confluent-kafka / gcn-kafka are imported lazily, so settings and
health helpers work (e.g. for a web page) where those packages are missing.

Delivery guarantee: at least once. A message's offset is committed only after `store()` returned,
i.e. after its row is committed to the database. A crash between the two means the message comes
again after the restart, so `store()` must deduplicate on (topic, partition, offset).

Start position of a new consumer group (`auto.offset.reset="earliest"`): a new installation, a new
group name or a topic added to the list starts at the oldest message the cluster still retains, and
so does a group whose committed offset expired. Nothing published after the group first subscribed can
be skipped (with "latest", a crash before the first commit would skip what arrived in between), at
the cost of a backlog on the first start: old alerts are stored (useful history), and the triage
that decides observations must judge an alert by its own trigger time (`KafkaRecord.timestamp_ms` is
when Kafka got it), never by "it just arrived".
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from common.formats import utc

logger = logging.getLogger("pyros.alert_manager.kafka")
librdkafka_logger = logging.getLogger("pyros.alert_manager.kafka.librdkafka")

HEARTBEAT_TOPIC = "gcn.heartbeat"
GCN_DOMAINS = ("gcn.nasa.gov", "test.gcn.nasa.gov")
DEFAULT_DOMAIN = "gcn.nasa.gov"
DEFAULT_GROUP = "pyros"
QUICKSTART_URL = "https://gcn.nasa.gov/quickstart"
DEFAULT_TOPICS: tuple[str, ...] = (
    "gcn.classic.voevent.SWIFT_BAT_GRB_POS_ACK",
    "gcn.classic.voevent.SWIFT_XRT_POSITION",
    "gcn.classic.voevent.SWIFT_UVOT_POS",
    "gcn.classic.voevent.FERMI_GBM_FLT_POS",
    "gcn.classic.voevent.FERMI_GBM_GND_POS",
    "gcn.classic.voevent.FERMI_GBM_FIN_POS",
    "gcn.notices.svom.voevent.grm",
    "gcn.notices.svom.voevent.eclairs",
    "gcn.notices.svom.voevent.mxt",
    "gcn.notices.einstein_probe.wxt.alert",
    "gcn.notices.swift.bat.guano",
    "gcn.notices.icecube.gold_bronze_track_alerts",
    "igwn.gwalert",
)
# A plain cluster given by PYROS_KAFKA_BOOTSTRAP is the librdkafka mock or a local drill cluster. The
# mock does not answer a waiting fetch early when data arrives, so each message waits up to
# fetch.wait.max.ms (default 500 ms): lower it there. Real Kafka brokers (GCN) answer a fetch as soon as
# data arrives (fetch.min.bytes=1), so there the default costs no latency and spares GCN's brokers.
BOOTSTRAP_FETCH_WAIT_MS = 5
HEARTBEAT_TIMEOUT_S = 60.0
STATS_INTERVAL_MS = 1000

_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_HOSTPORT_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$")


class KafkaConfigError(ValueError):
    """The Kafka settings are wrong (not merely absent)."""


class KafkaPublishError(RuntimeError):
    """A message given to `publish` was not acknowledged by the cluster."""


# --------------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------------
def _split_csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def normalize_topics(topics: Iterable[str]) -> tuple[str, ...]:
    result: list[str] = []
    for topic in topics:
        if not _TOPIC_RE.match(topic):
            raise KafkaConfigError(f"PYROS_KAFKA_TOPICS: {topic!r} is not a valid Kafka topic name")
        if topic not in result:
            result.append(topic)
    if HEARTBEAT_TOPIC not in result:
        result.append(HEARTBEAT_TOPIC)
    return tuple(result)


@dataclass(frozen=True)
class KafkaSettings:
    """Where to read alerts from. Build it with `KafkaSettings.from_env(os.environ)`.

    With `bootstrap` set, a plain unauthenticated cluster is used (the mock, a drill, a partner) and
    the GCN credentials are ignored. Otherwise GCN Kafka (kafka.<domain>) with the client credentials.
    """

    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    domain: str = DEFAULT_DOMAIN
    bootstrap: str = ""
    group: str = DEFAULT_GROUP
    topics: tuple[str, ...] = DEFAULT_TOPICS + (HEARTBEAT_TOPIC,)

    def __post_init__(self) -> None:
        if self.domain not in GCN_DOMAINS:
            raise KafkaConfigError(
                f"GCN_KAFKA_DOMAIN must be {' or '.join(GCN_DOMAINS)}, not {self.domain!r}")
        for item in _split_csv(self.bootstrap):
            match = _HOSTPORT_RE.match(item)
            if not match or not 0 < int(match.group(2)) < 65536:
                raise KafkaConfigError(
                    f"PYROS_KAFKA_BOOTSTRAP must be host:port[,host:port...], and {item!r} is not host:port")
        if not self.group.strip():
            raise KafkaConfigError("PYROS_KAFKA_GROUP must not be empty")
        object.__setattr__(self, "bootstrap", ",".join(_split_csv(self.bootstrap)))
        object.__setattr__(self, "topics", normalize_topics(self.topics))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KafkaSettings:
        """Read GCN_KAFKA_CLIENT_ID, GCN_KAFKA_CLIENT_SECRET, GCN_KAFKA_DOMAIN, PYROS_KAFKA_BOOTSTRAP,
        PYROS_KAFKA_GROUP and PYROS_KAFKA_TOPICS (blank = unset). Raises KafkaConfigError on a wrong
        value; missing credentials are not an error (see `configured`)."""
        import os

        env = os.environ if environ is None else environ

        def get(name: str) -> str:
            return (env.get(name) or "").strip()

        topics = _split_csv(get("PYROS_KAFKA_TOPICS"))
        return cls(
            client_id=get("GCN_KAFKA_CLIENT_ID"),
            client_secret=get("GCN_KAFKA_CLIENT_SECRET"),
            domain=get("GCN_KAFKA_DOMAIN") or DEFAULT_DOMAIN,
            bootstrap=get("PYROS_KAFKA_BOOTSTRAP"),
            group=get("PYROS_KAFKA_GROUP") or DEFAULT_GROUP,
            topics=tuple(topics) if topics else DEFAULT_TOPICS,
        )

    @property
    def mode(self) -> str | None:
        """"bootstrap" (plain cluster), "gcn" (GCN Kafka with credentials) or None (not configured)."""
        if self.bootstrap:
            return "bootstrap"
        if self.client_id and self.client_secret:
            return "gcn"
        return None

    @property
    def configured(self) -> bool:
        return self.mode is not None

    @property
    def why_not_configured(self) -> str:
        """A sentence for the log and the health page; "" when configured."""
        if self.configured:
            return ""
        if self.client_id:
            return ("GCN Kafka is not configured: GCN_KAFKA_CLIENT_ID is set but GCN_KAFKA_CLIENT_SECRET is "
                    f"missing (both come from {QUICKSTART_URL})")
        if self.client_secret:
            return ("GCN Kafka is not configured: GCN_KAFKA_CLIENT_SECRET is set but GCN_KAFKA_CLIENT_ID is "
                    f"missing (both come from {QUICKSTART_URL})")
        return ("GCN Kafka is not configured: set GCN_KAFKA_CLIENT_ID and GCN_KAFKA_CLIENT_SECRET "
                f"({QUICKSTART_URL}) or PYROS_KAFKA_BOOTSTRAP")

    @property
    def server(self) -> str:
        return self.bootstrap or f"kafka.{self.domain}"

    def describe(self) -> str:
        """One line for the log; never shows the secret."""
        who = "plain (no authentication)" if self.bootstrap else f"client {self.client_id or '-'}"
        return f"{self.server} as {who}, group {self.group!r}, {len(self.topics)} topics"


def consumer_config(settings: KafkaSettings, **overrides: Any) -> dict[str, Any]:
    """The librdkafka configuration `make_consumer` passes to gcn_kafka.Consumer (pure, for tests)."""
    config: dict[str, Any] = {
        "group.id": settings.group,  # fixed: gcn_kafka would pick a random one, losing the position
        "enable.auto.commit": False,  # committed by KafkaIntake after store() returned
        "auto.offset.reset": "earliest",  # see the module docstring
        "enable.partition.eof": False,
    }
    if settings.bootstrap:
        config.update({
            "bootstrap.servers": settings.bootstrap,
            "security.protocol": "plaintext",
            "fetch.wait.max.ms": BOOTSTRAP_FETCH_WAIT_MS,
        })
    config.update(overrides)
    return config


def make_consumer(settings: KafkaSettings, **overrides: Any):
    """A gcn_kafka.Consumer (a confluent_kafka.Consumer) for these settings, not yet subscribed.

    `overrides` are librdkafka properties or confluent-kafka callbacks, e.g.
    `make_consumer(s, error_cb=f, **{"session.timeout.ms": 10000})`; they win over the defaults.
    """
    from gcn_kafka import Consumer

    if not settings.configured:
        raise KafkaConfigError(settings.why_not_configured)
    config = consumer_config(settings, **overrides)
    if settings.bootstrap:
        return Consumer(config=config)
    return Consumer(config=config, client_id=settings.client_id, client_secret=settings.client_secret,
                    domain=settings.domain)


# --------------------------------------------------------------------------------------------------
# Records, store results, health
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KafkaRecord:
    """One Kafka message as received; `value` is the exact bytes (never decoded or reformatted)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes | None], ...] = ()

    @property
    def ident(self) -> tuple[str, int, int]:
        """(topic, partition, offset): unique within one cluster; the key to deduplicate on."""
        return (self.topic, self.partition, self.offset)

    @property
    def timestamp(self) -> datetime | None:
        """When Kafka got the message (producer create time on GCN), aware UTC."""
        if self.timestamp_ms is None:
            return None
        return datetime.fromtimestamp(self.timestamp_ms / 1000, tz=UTC)

    @classmethod
    def from_message(cls, message: Any) -> KafkaRecord:
        ts_type, ts = message.timestamp()
        return cls(
            topic=message.topic(),
            partition=message.partition(),
            offset=message.offset(),
            timestamp_ms=ts if ts_type != 0 and ts is not None and ts >= 0 else None,  # 0 = NOT_AVAILABLE
            key=message.key(),
            value=message.value() or b"",
            headers=tuple((name, value) for name, value in (message.headers() or ())),
        )


@dataclass(frozen=True)
class StoreResult:
    """What store() did with one record: `created` False means it was already stored (duplicate)."""

    topic: str
    partition: int
    offset: int
    created: bool = True
    object_id: int | str | None = None
    note: str = ""

    @classmethod
    def of(cls, record: KafkaRecord, created: bool = True, object_id: int | str | None = None,
           note: str = "") -> StoreResult:
        return cls(record.topic, record.partition, record.offset, created, object_id, note)


@dataclass(frozen=True)
class TopicHealth:
    topic: str
    messages: int = 0  # received (redeliveries included)
    stored: int = 0  # store() said created
    duplicates: int = 0  # store() said already there
    last_message_at: float | None = None  # epoch seconds (intake clock) of the last message received
    last_partition: int | None = None
    last_offset: int | None = None
    last_timestamp_ms: int | None = None  # Kafka timestamp of that message
    error: str | None = None  # topic-level error (unknown topic, not authorized...)


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    high: int | None  # high watermark: offset of the next message to be written
    committed: int | None  # next offset to read after a restart
    lag: int | None  # messages written but not yet committed (high - committed)


@dataclass(frozen=True)
class Outage:
    start: float
    end: float | None  # None while it lasts
    reason: str = ""

    def seconds(self, now: float) -> float:
        return (self.end if self.end is not None else now) - self.start


@dataclass(frozen=True)
class HealthSnapshot:
    at: float
    state: str  # "connecting" | "connected" | "disconnected" | "stopped"
    connected: bool
    server: str
    group: str
    started_at: float
    connected_since: float | None
    disconnected_since: float | None
    last_heartbeat_at: float | None
    heartbeat_age_s: float | None
    heartbeat_alarm: bool
    heartbeats: int
    messages: int
    stored: int
    duplicates: int
    store_failures: int
    store_failing: bool
    commits: int
    consumer_restarts: int
    last_error: str | None
    last_error_at: float | None
    topics: tuple[TopicHealth, ...] = ()
    partitions: tuple[PartitionLag, ...] = ()
    outages: tuple[Outage, ...] = ()

    @property
    def total_lag(self) -> int | None:
        lags = [p.lag for p in self.partitions if p.lag is not None and p.topic != HEARTBEAT_TOPIC]
        return sum(lags) if lags else None

    def as_dict(self) -> dict[str, Any]:
        return snapshot_to_dict(self)


def iso(ts: float | None) -> str | None:
    """Epoch seconds -> ISO 8601 UTC ("...+00:00"), None stays None."""
    return None if ts is None else datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds")


def _parse_iso(text: str | None) -> float | None:
    return None if not text else datetime.fromisoformat(text).timestamp()


def snapshot_to_dict(snap: HealthSnapshot) -> dict[str, Any]:
    """JSON-able dict (times as ISO 8601 UTC strings) for the database, a cache or a web page."""
    return {
        "at": iso(snap.at),
        "state": snap.state,
        "connected": snap.connected,
        "server": snap.server,
        "group": snap.group,
        "started_at": iso(snap.started_at),
        "connected_since": iso(snap.connected_since),
        "disconnected_since": iso(snap.disconnected_since),
        "last_heartbeat_at": iso(snap.last_heartbeat_at),
        "heartbeat_age_s": None if snap.heartbeat_age_s is None else round(snap.heartbeat_age_s, 3),
        "heartbeat_alarm": snap.heartbeat_alarm,
        "heartbeats": snap.heartbeats,
        "messages": snap.messages,
        "stored": snap.stored,
        "duplicates": snap.duplicates,
        "store_failures": snap.store_failures,
        "store_failing": snap.store_failing,
        "commits": snap.commits,
        "consumer_restarts": snap.consumer_restarts,
        "last_error": snap.last_error,
        "last_error_at": iso(snap.last_error_at),
        "total_lag": snap.total_lag,
        "topics": [
            {"topic": t.topic, "messages": t.messages, "stored": t.stored, "duplicates": t.duplicates,
             "last_message_at": iso(t.last_message_at), "last_partition": t.last_partition,
             "last_offset": t.last_offset,
             "last_timestamp": iso(None if t.last_timestamp_ms is None else t.last_timestamp_ms / 1000),
             "error": t.error}
            for t in snap.topics
        ],
        "partitions": [
            {"topic": p.topic, "partition": p.partition, "high": p.high, "committed": p.committed, "lag": p.lag}
            for p in snap.partitions
        ],
        "outages": [
            {"start": iso(o.start), "end": iso(o.end), "seconds": round(o.seconds(snap.at), 3), "reason": o.reason}
            for o in snap.outages
        ],
    }


def health_status(health: HealthSnapshot | Mapping[str, Any], now: float | None = None,
                  stale_after: float = 15.0) -> tuple[str, str]:
    """("ok" | "warning" | "error", one sentence) for a health snapshot or its dict.

    With a dict read back from storage, pass `now`: a snapshot older than `stale_after` seconds means
    the intake process is not running (it reports every second).
    """
    d = snapshot_to_dict(health) if isinstance(health, HealthSnapshot) else health
    at = _parse_iso(d.get("at"))
    now = time.time() if now is None else now
    server = d.get("server", "?")
    if at is not None and now - at > stale_after:
        return "error", f"the Kafka intake is not running (last report {now - at:.0f} s ago)"
    if d.get("state") == "stopped":
        return "error", "the Kafka intake has stopped"
    if d.get("state") == "disconnected":
        since = utc(d.get("disconnected_since")) if d.get("disconnected_since") else "?"
        return "error", f"disconnected from {server} since {since}: {d.get('last_error') or 'no broker reachable'}"
    if d.get("store_failing"):
        return "error", f"cannot store alerts: {d.get('last_error') or 'store failed'}"
    if d.get("heartbeat_alarm"):
        last = _parse_iso(d.get("last_heartbeat_at"))
        if last is None:
            return "error", f"no {HEARTBEAT_TOPIC} message received since start-up ({utc(d.get('started_at'))})"
        return "error", f"no {HEARTBEAT_TOPIC} message for {now - last:.0f} s"
    if d.get("state") == "connecting":
        return "warning", f"connecting to {server}"
    lag = d.get("total_lag")
    if lag:
        return "warning", f"connected to {server}; {lag} message(s) not yet stored"
    age = d.get("heartbeat_age_s")
    beat = f", last heartbeat {age:.0f} s ago" if age is not None else ""
    return "ok", f"connected to {server}{beat}; {d.get('stored', 0)} alert(s) stored since {utc(d.get('started_at'))}"


# --------------------------------------------------------------------------------------------------
# The intake loop
# --------------------------------------------------------------------------------------------------
class Backoff:
    """Exponential backoff: initial, initial*factor, ... capped at `cap`; reset() after a success."""

    def __init__(self, initial: float = 0.5, cap: float = 30.0, factor: float = 2.0) -> None:
        self.initial, self.cap, self.factor = initial, cap, factor
        self._next = initial

    def next(self) -> float:
        delay = self._next
        self._next = min(self.cap, self._next * self.factor)
        return delay

    def reset(self) -> None:
        self._next = self.initial


class _RdkafkaLog:
    """librdkafka's own log lines go to DEBUG (they repeat every reconnect attempt); the intake logs
    connection changes and errors itself, once per episode."""

    def log(self, level: int, fmt: str, *args: Any) -> None:  # level: already a Python logging level
        librdkafka_logger.log(logging.ERROR if level >= logging.CRITICAL else logging.DEBUG, fmt, *args)


def _error_code(name: str) -> int | None:
    try:
        from confluent_kafka import KafkaError
    except ImportError:
        return None
    return getattr(KafkaError, name, None)


@dataclass
class _TopicState:
    messages: int = 0
    stored: int = 0
    duplicates: int = 0
    last_message_at: float | None = None
    last_partition: int | None = None
    last_offset: int | None = None
    last_timestamp_ms: int | None = None
    error: str | None = None


StoreCallback = Callable[[list[KafkaRecord]], "list[StoreResult] | None"]
HealthCallback = Callable[[HealthSnapshot], None]


class KafkaIntake:
    """Consume, store (callback), then commit; report health. Run `run(stop_event)` in one thread.

    store(records) must persist every record (raw bytes included) and return only once the rows are
    committed; it must deduplicate on `record.ident`; it should raise only for a transient failure
    (database down): the same records then come again, after a backoff. A message it cannot parse
    must still be stored (as a failed parse), never raise, or it would block its partition forever.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        store: StoreCallback,
        on_health: HealthCallback | None = None,
        clock: Callable[[], float] = time.time,
        batch_size: int = 100,
        poll_timeout: float = 0.25,
        heartbeat_timeout: float = HEARTBEAT_TIMEOUT_S,
        health_interval: float = 1.0,
        heartbeat_commit_interval: float = 5.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        disconnected_wait_max: float = 2.0,
        recreate_after: float = 300.0,
        consumer_factory: Callable[..., Any] | None = None,
        consumer_overrides: Mapping[str, Any] | None = None,
    ) -> None:
        if not settings.configured:
            raise KafkaConfigError(settings.why_not_configured)
        self.settings = settings
        self.store = store
        self.on_health = on_health
        self.clock = clock
        self.batch_size = batch_size
        self.poll_timeout = poll_timeout
        self.heartbeat_timeout = heartbeat_timeout
        self.health_interval = health_interval
        self.heartbeat_commit_interval = heartbeat_commit_interval
        self.recreate_after = recreate_after
        self.consumer_factory = consumer_factory or make_consumer
        self.consumer_overrides = dict(consumer_overrides or {})
        self._open_backoff = Backoff(backoff_initial, backoff_max)
        self._store_backoff = Backoff(backoff_initial, backoff_max)
        self._disconnected_backoff = Backoff(min(backoff_initial, disconnected_wait_max), disconnected_wait_max)
        self._stop = threading.Event()
        self._consumer: Any = None
        self._client_errors: list[Any] = []
        self._pending: dict[tuple[str, int], int] = {}  # next offset to commit, per (topic, partition)
        self._last_commit_mono = 0.0
        self._last_recreate_mono = time.monotonic()
        self._warned: dict[Any, float] = {}
        # health state
        now = clock()
        self._started_at = now
        self._state = "connecting"
        self._connected_since: float | None = None
        self._disconnected_since: float | None = None
        self._last_heartbeat_at: float | None = None
        self._heartbeats = 0
        self._alarm = False
        self._store_failures = 0
        self._store_failing = False
        self._commits = 0
        self._restarts = 0
        self._opened = 0
        self._last_error: str | None = None
        self._last_error_at: float | None = None
        self._topics: dict[str, _TopicState] = {t: _TopicState() for t in settings.topics}
        self._partitions: dict[tuple[str, int], PartitionLag] = {}
        self._outages: list[Outage] = []
        self._last_emit_at: float | None = None
        self._last_emit_key: tuple | None = None
        self.last_health: HealthSnapshot = self.snapshot()

    # -- public --------------------------------------------------------------------------------------
    def run(self, stop_event: threading.Event | None = None) -> None:
        """Consume until stop_event is set. Returns after closing the consumer (leaving the group)."""
        if stop_event is not None:
            self._stop = stop_event
        logger.info("Kafka intake starting: %s", self.settings.describe())
        try:
            while not self._stop.is_set():
                if self._consumer is None:
                    if not self._open():
                        self._wait(self._open_backoff.next())
                        self._tick()
                        continue
                try:
                    self._step()
                except Exception as exc:  # a bug or an unexpected client failure: start afresh
                    logger.exception("Kafka intake error; recreating the consumer")
                    self._note_error(f"{type(exc).__name__}: {exc}")
                    self._close_consumer()
                    self._wait(self._open_backoff.next())
                self._tick()
        finally:
            if self._consumer is not None and self._state == "connected":
                try:
                    self._commit_pending(force=True)  # heartbeat offsets (alerts are committed as stored)
                except Exception as exc:
                    logger.debug("final commit: %s", exc)
            self._close_consumer()
            self._state = "stopped"
            self._tick(force=True)
            logger.info("Kafka intake stopped")

    def stop(self) -> None:
        self._stop.set()

    def snapshot(self) -> HealthSnapshot:
        now = self.clock()
        hb_age = None if self._last_heartbeat_at is None else max(0.0, now - self._last_heartbeat_at)
        return HealthSnapshot(
            at=now, state=self._state, connected=self._state == "connected", server=self.settings.server,
            group=self.settings.group, started_at=self._started_at, connected_since=self._connected_since,
            disconnected_since=self._disconnected_since, last_heartbeat_at=self._last_heartbeat_at,
            heartbeat_age_s=hb_age, heartbeat_alarm=self._alarm, heartbeats=self._heartbeats,
            messages=sum(t.messages for name, t in self._topics.items() if name != HEARTBEAT_TOPIC),
            stored=sum(t.stored for t in self._topics.values()),
            duplicates=sum(t.duplicates for t in self._topics.values()),
            store_failures=self._store_failures, store_failing=self._store_failing, commits=self._commits,
            consumer_restarts=self._restarts, last_error=self._last_error, last_error_at=self._last_error_at,
            topics=tuple(TopicHealth(name, t.messages, t.stored, t.duplicates, t.last_message_at, t.last_partition,
                                     t.last_offset, t.last_timestamp_ms, t.error)
                         for name, t in self._topics.items()),
            partitions=tuple(self._partitions[k] for k in sorted(self._partitions)),
            outages=tuple(self._outages[-20:]),
        )

    # -- consumer lifecycle ----------------------------------------------------------------------------
    def _open(self) -> bool:
        config = {
            "error_cb": self._on_client_error,
            "stats_cb": self._on_stats,
            "statistics.interval.ms": STATS_INTERVAL_MS,
            "logger": _RdkafkaLog(),
            **self.consumer_overrides,
        }
        try:
            consumer = self.consumer_factory(self.settings, **config)
            consumer.subscribe(list(self.settings.topics), on_assign=self._on_assign, on_revoke=self._on_revoke,
                               on_lost=self._on_lost)
        except Exception as exc:
            self._note_error(f"cannot create the Kafka consumer: {exc}")
            logger.error("Cannot create the Kafka consumer for %s: %s", self.settings.server, exc)
            return False
        self._consumer = consumer
        self._restarts += 1 if self._opened else 0
        self._opened += 1
        self._last_recreate_mono = time.monotonic()  # the backoff is reset only once connected
        if self._state != "disconnected":
            self._state = "connecting"
        return True

    def _close_consumer(self) -> None:
        consumer, self._consumer = self._consumer, None
        self._pending.clear()  # not committed: redelivered to whoever owns the partitions next
        self._partitions.clear()
        if consumer is not None:
            try:
                consumer.close()  # leaves the group (a restarted intake gets the partitions at once)
            except Exception as exc:
                logger.debug("closing the Kafka consumer: %s", exc)

    def _wait(self, seconds: float) -> None:
        self._stop.wait(seconds)

    # -- librdkafka callbacks (called from consume(), in the intake thread) ----------------------------
    def _on_client_error(self, err: Any) -> None:
        self._client_errors.append(err)

    def _on_stats(self, stats_json: str) -> None:
        try:
            stats = json.loads(stats_json)
        except ValueError:
            return
        now = self.clock()
        brokers = stats.get("brokers") or {}
        up = any(b.get("nodeid", -1) >= 0 and b.get("state") == "UP" for b in brokers.values())
        if up:
            self._mark_connected(now)
        elif self._state == "connected":
            self._mark_disconnected(now, self._last_error or "no broker connection is up")
        partitions: dict[tuple[str, int], PartitionLag] = {}
        for topic, tstats in (stats.get("topics") or {}).items():
            for pid, p in (tstats.get("partitions") or {}).items():
                part = int(pid)
                if part < 0 or p.get("fetch_state") in (None, "none", "stopped"):
                    continue  # -1 is librdkafka's internal UA partition; "none" = not assigned to us
                high = p.get("hi_offset", -1)
                committed = p.get("committed_offset", -1)
                high = high if high >= 0 else None
                committed = committed if committed >= 0 else None
                lag = high - committed if high is not None and committed is not None else None
                partitions[(topic, part)] = PartitionLag(topic, part, high, committed, lag)
        self._partitions = partitions

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        logger.info("Kafka partitions assigned: %s", ", ".join(f"{p.topic}[{p.partition}]" for p in partitions))

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        revoked = {(p.topic, p.partition) for p in partitions}
        if self._state == "connected":
            self._commit_pending(force=True, only=revoked)
        for key in revoked:
            self._pending.pop(key, None)
            self._partitions.pop(key, None)

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        logger.warning("Kafka partitions lost (session expired): %d; uncommitted messages will come again",
                       len(partitions))
        for p in partitions:
            self._pending.pop((p.topic, p.partition), None)
            self._partitions.pop((p.topic, p.partition), None)

    # -- one iteration -----------------------------------------------------------------------------------
    def _step(self) -> None:
        if self._state == "disconnected":
            self._wait(self._disconnected_backoff.next())
        messages = self._receive()
        self._handle_client_errors()
        if self._consumer is None:  # closed by an error handler
            return
        now = self.clock()
        alerts: list[KafkaRecord] = []
        for message in messages:
            err = message.error()
            if err is not None:
                self._handle_message_error(message, err)
                continue
            record = KafkaRecord.from_message(message)
            self._mark_connected(now)
            topic = self._topics.setdefault(record.topic, _TopicState())
            topic.messages += 1
            topic.last_message_at = now
            topic.last_partition, topic.last_offset = record.partition, record.offset
            topic.last_timestamp_ms = record.timestamp_ms
            topic.error = None
            if record.topic == HEARTBEAT_TOPIC:
                self._on_heartbeat(now)
                self._advance((record.topic, record.partition), record.offset + 1)
            else:
                alerts.append(record)
        if alerts and not self._store_batch(alerts):
            return
        self._commit_pending(force=bool(alerts))
        if self._state == "disconnected" and self._disconnected_since is not None:
            if time.monotonic() - self._last_recreate_mono > self.recreate_after:
                logger.warning("Kafka disconnected for more than %.0f s: recreating the consumer", self.recreate_after)
                self._close_consumer()

    def _receive(self) -> list[Any]:
        # consume(n, timeout) waits for n messages or the whole timeout: poll() returns as soon as one
        # message is there, then consume(timeout=0) takes what else is already fetched (a batch).
        first = self._consumer.poll(self.poll_timeout)
        if first is None:
            return []
        if self.batch_size <= 1:
            return [first]
        return [first, *self._consumer.consume(num_messages=self.batch_size - 1, timeout=0)]

    def _advance(self, key: tuple[str, int], next_offset: int) -> None:
        if next_offset > self._pending.get(key, -1):
            self._pending[key] = next_offset

    def _store_batch(self, alerts: list[KafkaRecord]) -> bool:
        try:
            results = self.store(list(alerts))
        except Exception as exc:
            self._store_failures += 1
            self._store_failing = True
            self._note_error(f"store failed: {type(exc).__name__}: {exc}")
            delay = self._store_backoff.next()
            logger.error("Storing %d Kafka message(s) failed (%s); not committed, retrying in %.1f s",
                         len(alerts), exc, delay, exc_info=self._store_failures == 1)
            self._rewind(alerts)
            self._tick(force=True)
            self._wait(delay)
            return False
        self._store_backoff.reset()
        if self._store_failing:
            logger.info("Storing Kafka messages works again")
        self._store_failing = False
        by_ident = {(r.topic, r.partition, r.offset): r for r in (results or [])}
        for record in alerts:
            result = by_ident.get(record.ident)
            topic = self._topics[record.topic]
            if result is not None and not result.created:
                topic.duplicates += 1
            else:
                topic.stored += 1
            self._advance((record.topic, record.partition), record.offset + 1)
        return True

    def _rewind(self, alerts: list[KafkaRecord]) -> None:
        """Position each partition on its first unstored offset, so the batch comes again."""
        from confluent_kafka import TopicPartition

        first: dict[tuple[str, int], int] = {}
        for r in alerts:
            key = (r.topic, r.partition)
            first[key] = min(first.get(key, r.offset), r.offset)
        try:
            for (topic, partition), offset in first.items():
                self._consumer.seek(TopicPartition(topic, partition, offset))
        except Exception as exc:
            logger.warning("Cannot seek back after a store failure (%s); recreating the consumer", exc)
            self._close_consumer()

    def _commit_pending(self, force: bool, only: set[tuple[str, int]] | None = None) -> None:
        pending = {k: v for k, v in self._pending.items() if only is None or k in only}
        if not pending or self._consumer is None:
            return
        if self._state != "connected":
            return  # a synchronous commit would wait for the coordinator (up to session.timeout.ms)
        if not force and time.monotonic() - self._last_commit_mono < self.heartbeat_commit_interval:
            return
        from confluent_kafka import TopicPartition

        offsets = [TopicPartition(t, p, o) for (t, p), o in sorted(pending.items())]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except Exception as exc:  # stays pending: retried next time; a restart would redeliver (dedup)
            self._note_error(f"commit failed: {exc}")
            self._warn_once(("commit", str(exc)), "Kafka commit failed (will retry): %s", exc)
            return
        self._commits += 1
        self._last_commit_mono = time.monotonic()
        for key, offset in pending.items():
            if self._pending.get(key) == offset:
                del self._pending[key]

    # -- errors ------------------------------------------------------------------------------------------
    def _handle_client_errors(self) -> None:
        errors, self._client_errors = self._client_errors, []
        if not errors:
            return
        now = self.clock()
        transport = {_error_code(n) for n in ("_TRANSPORT", "_ALL_BROKERS_DOWN", "_RESOLVE", "_TIMED_OUT")}
        auth = {_error_code(n) for n in ("_AUTHENTICATION", "SASL_AUTHENTICATION_FAILED", "_SSL",
                                         "GROUP_AUTHORIZATION_FAILED")}
        recreate = False
        for err in errors:
            code, text = err.code(), err.str()
            self._note_error(text, now)
            if code == _error_code("_ALL_BROKERS_DOWN"):
                self._mark_disconnected(now, text)
            elif code in transport:
                if self._state != "connected":
                    self._mark_disconnected(now, text)
                logger.debug("Kafka transport error: %s", text)
            elif code in auth or err.fatal():
                logger.error("Kafka authentication/fatal error (%s): recreating the consumer", text)
                recreate = True
            else:
                self._warn_once(("client", code), "Kafka client error: %s", text)
        if recreate:
            self._mark_disconnected(now, errors[-1].str())
            self._close_consumer()
            self._wait(self._open_backoff.next())

    def _handle_message_error(self, message: Any, err: Any) -> None:
        topic = message.topic()
        text = err.str()
        self._note_error(text)
        if topic and topic in self._topics:
            self._topics[topic].error = text
        level = logging.ERROR if err.code() == _error_code("TOPIC_AUTHORIZATION_FAILED") else logging.WARNING
        hint = f" (subscribe these credentials to it at {QUICKSTART_URL})" if level == logging.ERROR else ""
        self._warn_once(("topic", topic, err.code()), "Kafka topic %s: %s%s", topic, text, hint, level=level)

    def _note_error(self, text: str, now: float | None = None) -> None:
        self._last_error = text
        self._last_error_at = self.clock() if now is None else now

    def _warn_once(self, key: Any, msg: str, *args: Any, level: int = logging.WARNING, every: float = 300.0) -> None:
        mono = time.monotonic()
        if mono - self._warned.get(key, -1e18) >= every:
            self._warned[key] = mono
            logger.log(level, msg, *args)

    # -- connection and heartbeat state ------------------------------------------------------------------
    def _mark_connected(self, now: float) -> None:
        if self._state == "connected":
            return
        if self._state == "disconnected" and self._outages and self._outages[-1].end is None:
            outage = self._outages[-1]
            self._outages[-1] = Outage(outage.start, now, outage.reason)
            logger.warning("Kafka connection to %s is back after %.1f s", self.settings.server, now - outage.start)
        else:
            logger.info("Kafka connected to %s", self.settings.server)
        self._state = "connected"
        self._connected_since = now
        self._disconnected_since = None
        self._disconnected_backoff.reset()
        self._open_backoff.reset()

    def _mark_disconnected(self, now: float, reason: str) -> None:
        if self._state == "disconnected":
            return
        logger.warning("Kafka disconnected from %s: %s", self.settings.server, reason)
        self._state = "disconnected"
        self._connected_since = None
        self._disconnected_since = now
        self._outages.append(Outage(now, None, reason))
        del self._outages[:-50]

    def _on_heartbeat(self, now: float) -> None:
        if self._alarm:
            silent = now - (self._last_heartbeat_at or self._started_at)
            logger.warning("GCN Kafka heartbeat back after %.0f s of silence", silent)
            self._alarm = False
        self._last_heartbeat_at = now
        self._heartbeats += 1

    def _tick(self, force: bool = False) -> None:
        now = self.clock()
        if self._state != "stopped":
            silent = now - (self._last_heartbeat_at or self._started_at)
            if not self._alarm and silent >= self.heartbeat_timeout:
                self._alarm = True
                logger.error("GCN Kafka: no heartbeat for %.0f s on %s (connection %s)", silent, HEARTBEAT_TOPIC,
                             self._state)
        # reported at once when one of these changes, otherwise every health_interval (errors can come in
        # bursts of dozens a second while a broker is down: they wait for the next periodic report)
        key = (self._state, self._alarm, self._restarts, self._store_failing)
        due = self._last_emit_at is None or now - self._last_emit_at >= self.health_interval
        if not (force or due or key != self._last_emit_key):
            return
        snap = self.snapshot()
        self.last_health = snap
        self._last_emit_at, self._last_emit_key = now, key
        if self.on_health is not None:
            try:
                self.on_health(snap)
            except Exception:
                logger.exception("Kafka intake: the health callback failed")


# --------------------------------------------------------------------------------------------------
# Producer helper (replays, drills)
# --------------------------------------------------------------------------------------------------
def publish(bootstrap: str, topic: str, values: Sequence[bytes], *, timeout: float = 30.0,
            config: Mapping[str, Any] | None = None) -> list[tuple[int, int]]:
    """Produce `values` (bytes, unchanged) to `topic` on a plain cluster; wait for every acknowledgement.

    Returns [(partition, offset)] in order. Raises KafkaPublishError if any message is not delivered
    within `timeout` seconds (unreachable cluster, message too large for the topic, ...).
    """
    from confluent_kafka import KafkaException, Producer

    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "security.protocol": "plaintext",
        "linger.ms": 0,
        "message.max.bytes": 16 * 1024 * 1024,  # LVK alerts with sky maps are 1-2 MB
        "message.timeout.ms": max(1, int(timeout * 1000)),
        "logger": _RdkafkaLog(),
        **(config or {}),
    }
    producer = Producer(conf)
    results: list[tuple[int, int] | None] = [None] * len(values)
    failures: list[str] = []

    def delivered(index: int) -> Callable[[Any, Any], None]:
        def callback(err: Any, msg: Any) -> None:
            if err is not None:
                failures.append(f"message #{index}: {err.str()}")
            else:
                results[index] = (msg.partition(), msg.offset())
        return callback

    deadline = time.monotonic() + timeout
    for index, value in enumerate(values):
        while True:
            try:
                producer.produce(topic, value=bytes(value), on_delivery=delivered(index))
                break
            except BufferError:
                if time.monotonic() > deadline:
                    raise KafkaPublishError(f"publishing to {topic} at {bootstrap}: local queue full") from None
                producer.poll(0.1)
            except KafkaException as exc:
                raise KafkaPublishError(f"publishing to {topic} at {bootstrap}: {exc}") from exc
        producer.poll(0)
    remaining = producer.flush(max(0.0, deadline - time.monotonic()) + 1.0)
    if remaining:
        raise KafkaPublishError(f"{remaining} of {len(values)} message(s) to {topic} at {bootstrap} "
                                f"not acknowledged within {timeout:.0f} s (is the cluster reachable?)")
    if failures:
        raise KafkaPublishError(f"publishing to {topic} at {bootstrap} failed: {'; '.join(failures[:5])}")
    return [r for r in results if r is not None]
