"""An in-process librdkafka mock Kafka cluster, for tests, benchmarks and drills (no Django, no Java).

The confluent-kafka wheel bundles librdkafka, and librdkafka contains a mock cluster: real Kafka
protocol on 127.0.0.1 sockets, served by threads of the process that created it. Any client, in this
process or another one, can use its bootstrap address while the cluster lives. Two ways to get one:

* **native** (used when possible): librdkafka's public mock API (`rdkafka_mock.h`) through ctypes on
  the very library the wheel ships. It gives the bootstrap address directly
  (`rd_kafka_mock_cluster_bootstraps`), creates topics with an exact partition count, and can take a
  broker down and up again on the same port (`broker_down()` / `broker_up()`), which is how the
  tests simulate a broker outage.
* **producer** (fallback): a `confluent_kafka.Producer({"test.mock.num.brokers": N})` keeps the
  cluster alive; the address is read from `list_topics().brokers` (host:port of each mock broker).
  Topics are created on first use with the mock's defaults, and brokers cannot be taken down.

Mind the mock's latency: it does not wake a waiting fetch when data arrives, so a consumer waits up to
its `fetch.wait.max.ms` (librdkafka default 500 ms) for each message; `kafka_consumer.make_consumer`
lowers it for plain bootstrap clusters.

Command line (a mock cluster for `make run` drills; Ctrl-C or SIGTERM stops it)::

    python -m alert_manager.kafka_mock [--topics a,b,...] [--partitions 1] [--heartbeat]
                                       [--bootstrap-file PATH]

prints the bootstrap address alone on the first line of stdout; then point PyROS at it with
`PYROS_KAFKA_BOOTSTRAP=<address>`, and inject messages with `kafka_consumer.publish()`.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import glob
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

logger = logging.getLogger("pyros.alert_manager.kafka_mock")

HEARTBEAT_SCHEMA = "https://gcn.nasa.gov/schema/main/gcn/notices/core/Alert.schema.json"


class MockClusterError(RuntimeError):
    """The mock cluster could not be started or driven."""


def _find_librdkafka() -> str | None:
    """Path of the librdkafka that confluent_kafka itself loads (the wheel's copy), else a system one."""
    try:
        import confluent_kafka
    except ImportError:
        return None
    pkg = Path(confluent_kafka.__file__).resolve().parent
    candidates = [
        *glob.glob(str(pkg.parent / "confluent_kafka.libs" / "librdkafka*.so*")),  # manylinux wheels
        *glob.glob(str(pkg / ".dylibs" / "librdkafka*.dylib")),  # macOS wheels
        *glob.glob(str(pkg.parent / "confluent_kafka.libs" / "librdkafka*.dll")),
    ]
    if candidates:
        return sorted(candidates)[0]
    return ctypes.util.find_library("rdkafka")  # confluent-kafka built against the system library


class _Native:
    """ctypes binding of the few functions of rdkafka_mock.h used here."""

    _lib: ctypes.CDLL | None = None
    _lock = threading.Lock()

    @classmethod
    def lib(cls) -> ctypes.CDLL:
        with cls._lock:
            if cls._lib is None:
                path = _find_librdkafka()
                if not path:
                    raise MockClusterError("librdkafka not found (is confluent-kafka installed?)")
                lib = ctypes.CDLL(path)
                vp, cp, i32 = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int32
                sigs = {
                    "rd_kafka_conf_new": (vp, []),
                    "rd_kafka_conf_set": (ctypes.c_int, [vp, cp, cp, cp, ctypes.c_size_t]),
                    "rd_kafka_conf_destroy": (None, [vp]),
                    "rd_kafka_new": (vp, [ctypes.c_int, vp, cp, ctypes.c_size_t]),
                    "rd_kafka_destroy": (None, [vp]),
                    "rd_kafka_err2str": (cp, [ctypes.c_int]),
                    "rd_kafka_mock_cluster_new": (vp, [vp, ctypes.c_int]),
                    "rd_kafka_mock_cluster_destroy": (None, [vp]),
                    "rd_kafka_mock_cluster_bootstraps": (cp, [vp]),
                    "rd_kafka_mock_topic_create": (ctypes.c_int, [vp, cp, ctypes.c_int, ctypes.c_int]),
                    "rd_kafka_mock_broker_set_down": (ctypes.c_int, [vp, i32]),
                    "rd_kafka_mock_broker_set_up": (ctypes.c_int, [vp, i32]),
                    "rd_kafka_mock_broker_set_rtt": (ctypes.c_int, [vp, i32, ctypes.c_int]),
                    "rd_kafka_mock_group_initial_rebalance_delay_ms": (None, [vp, i32]),
                }
                for name, (restype, argtypes) in sigs.items():
                    fn = getattr(lib, name)  # AttributeError: a librdkafka without the mock API
                    fn.restype = restype
                    fn.argtypes = argtypes
                cls._lib = lib
            return cls._lib


class MockCluster:
    """A running librdkafka mock cluster. Use as a context manager, or call `stop()`.

    `bootstrap` is "127.0.0.1:port[,...]". Brokers are numbered 1..num_brokers. `controllable` tells
    whether `broker_down`/`broker_up`/`set_rtt` work (native backend only).
    """

    def __init__(
        self,
        topics: Iterable[str] = (),
        *,
        partitions: int = 1,
        num_brokers: int = 1,
        rebalance_delay_ms: int = 0,
        backend: str = "auto",
    ) -> None:
        if backend not in {"auto", "native", "producer"}:
            raise ValueError(f"backend must be auto, native or producer, not {backend!r}")
        self.num_brokers = num_brokers
        self.default_partitions = partitions
        self._lib: ctypes.CDLL | None = None
        self._rk: int | None = None
        self._mcluster: int | None = None
        self._producer = None
        self._topics: dict[str, int] = {}
        self.bootstrap = ""
        if backend in {"auto", "native"}:
            try:
                self._start_native(rebalance_delay_ms)
            except (MockClusterError, OSError, AttributeError) as exc:
                if backend == "native":
                    raise MockClusterError(f"native librdkafka mock API unavailable: {exc}") from exc
                logger.info("librdkafka mock API not usable through ctypes (%s); using a Producer", exc)
        if not self.bootstrap:
            self._start_with_producer()
        self.backend = "native" if self._mcluster else "producer"
        self.create_topics(topics, partitions)

    # -- start/stop ----------------------------------------------------------------------------------
    def _start_native(self, rebalance_delay_ms: int) -> None:
        lib = _Native.lib()
        errstr = ctypes.create_string_buffer(512)
        conf = lib.rd_kafka_conf_new()
        for key, value in (("log_level", "3"), ("client.id", "pyros-mock-cluster")):
            if lib.rd_kafka_conf_set(conf, key.encode(), value.encode(), errstr, len(errstr)) != 0:
                lib.rd_kafka_conf_destroy(conf)
                raise MockClusterError(errstr.value.decode(errors="replace"))
        rk = lib.rd_kafka_new(0, conf, errstr, len(errstr))  # 0 = RD_KAFKA_PRODUCER; takes conf
        if not rk:
            raise MockClusterError(f"rd_kafka_new failed: {errstr.value.decode(errors='replace')}")
        mcluster = lib.rd_kafka_mock_cluster_new(rk, self.num_brokers)
        if not mcluster:
            lib.rd_kafka_destroy(rk)
            raise MockClusterError("rd_kafka_mock_cluster_new failed")
        self._lib, self._rk, self._mcluster = lib, rk, mcluster
        lib.rd_kafka_mock_group_initial_rebalance_delay_ms(mcluster, rebalance_delay_ms)
        self.bootstrap = lib.rd_kafka_mock_cluster_bootstraps(mcluster).decode()

    def _start_with_producer(self) -> None:
        try:
            from confluent_kafka import Producer
        except ImportError as exc:
            raise MockClusterError("confluent-kafka is not installed") from exc
        self._producer = Producer({"test.mock.num.brokers": self.num_brokers, "log_level": 3})
        brokers = self._producer.list_topics(timeout=10).brokers
        self.bootstrap = ",".join(f"{b.host}:{b.port}" for _, b in sorted(brokers.items()))
        if not self.bootstrap:
            raise MockClusterError("the mock cluster reported no broker")

    def stop(self) -> None:
        """Stop the cluster (its sockets close; clients see the brokers go away). Idempotent."""
        if self._mcluster and self._lib:
            self._lib.rd_kafka_mock_cluster_destroy(self._mcluster)
            self._lib.rd_kafka_destroy(self._rk)
        self._mcluster = self._rk = None
        if self._producer is not None:
            self._producer.flush(1)
            self._producer = None  # the cluster dies with its owner
        self.bootstrap = ""

    @property
    def running(self) -> bool:
        return bool(self.bootstrap)

    def __enter__(self) -> MockCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:  # a forgotten cluster must not keep threads past the test
        if getattr(self, "_mcluster", None) is not None or getattr(self, "_producer", None) is not None:
            try:
                self.stop()
            except Exception:  # interpreter shutdown
                pass

    # -- topics and brokers --------------------------------------------------------------------------
    @property
    def controllable(self) -> bool:
        return self._mcluster is not None

    def _check(self, err: int, what: str) -> None:
        if err:
            assert self._lib is not None
            raise MockClusterError(f"{what}: {self._lib.rd_kafka_err2str(err).decode()}")

    def create_topics(self, topics: Iterable[str], partitions: int | None = None) -> None:
        """Create topics (idempotent for topics this object already created)."""
        partitions = partitions or self.default_partitions
        for topic in topics:
            if not topic or topic in self._topics:
                continue
            if self._mcluster and self._lib:
                self._check(self._lib.rd_kafka_mock_topic_create(self._mcluster, topic.encode(), partitions, 1),
                            f"creating topic {topic}")
            else:  # producer backend: a metadata request auto-creates it with the mock's defaults
                self._producer.list_topics(topic, timeout=10)
            self._topics[topic] = partitions

    def create_topic(self, topic: str, partitions: int | None = None) -> None:
        self.create_topics([topic], partitions)

    def _need_native(self) -> None:
        if not self.controllable:
            raise MockClusterError("broker control needs the native mock API (backend='native')")

    def broker_down(self, broker_id: int = 1) -> None:
        """Close the broker's connections and refuse new ones (its port stays reserved)."""
        self._need_native()
        self._check(self._lib.rd_kafka_mock_broker_set_down(self._mcluster, broker_id), "broker down")

    def broker_up(self, broker_id: int = 1) -> None:
        """Accept connections again on the same address; topics, messages and offsets are kept."""
        self._need_native()
        self._check(self._lib.rd_kafka_mock_broker_set_up(self._mcluster, broker_id), "broker up")

    def set_rtt(self, broker_id: int, rtt_ms: int) -> None:
        """Delay every response of a broker by rtt_ms."""
        self._need_native()
        self._check(self._lib.rd_kafka_mock_broker_set_rtt(self._mcluster, broker_id, rtt_ms), "set rtt")


def heartbeat_value(now: float | None = None) -> bytes:
    """A `gcn.heartbeat` message as GCN sends it (compact JSON, schema id and `alert_datetime`)."""
    moment = datetime.fromtimestamp(time.time() if now is None else now, tz=UTC)
    stamp = moment.isoformat(timespec="microseconds").replace("+00:00", "Z")
    return json.dumps({"$schema": HEARTBEAT_SCHEMA, "alert_datetime": stamp}, separators=(",", ":")).encode()


def _heartbeat_loop(bootstrap: str, stop: threading.Event, interval: float = 1.0) -> None:
    from confluent_kafka import Producer

    from alert_manager.kafka_consumer import HEARTBEAT_TOPIC

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "log_level": 3})
    while not stop.wait(interval):
        producer.produce(HEARTBEAT_TOPIC, heartbeat_value())
        producer.poll(0)
    producer.flush(2)


def main(argv: list[str] | None = None) -> int:
    from alert_manager.kafka_consumer import DEFAULT_TOPICS, HEARTBEAT_TOPIC

    parser = argparse.ArgumentParser(prog="python -m alert_manager.kafka_mock", description=__doc__.split("\n")[0])
    parser.add_argument("--topics", default=",".join(DEFAULT_TOPICS),
                        help="comma-separated topics to create (default: PyROS's GRB topics); gcn.heartbeat is added")
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--brokers", type=int, default=1)
    parser.add_argument("--heartbeat", action="store_true", help="produce a gcn.heartbeat message every second")
    parser.add_argument("--bootstrap-file", type=Path, help="also write the bootstrap address to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    topics = [t.strip() for t in args.topics.split(",") if t.strip()]
    if HEARTBEAT_TOPIC not in topics:
        topics.append(HEARTBEAT_TOPIC)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with MockCluster(topics, partitions=args.partitions, num_brokers=args.brokers) as cluster:
        print(cluster.bootstrap, flush=True)
        if args.bootstrap_file:
            tmp = args.bootstrap_file.with_name(args.bootstrap_file.name + ".tmp")
            tmp.write_text(cluster.bootstrap + "\n")
            os.replace(tmp, args.bootstrap_file)
        print(f"mock Kafka cluster ({cluster.backend}) with {len(topics)} topics; "
              f"run PyROS with PYROS_KAFKA_BOOTSTRAP={cluster.bootstrap}; Ctrl-C stops it", file=sys.stderr, flush=True)
        beat = None
        if args.heartbeat:
            beat = threading.Thread(target=_heartbeat_loop, args=(cluster.bootstrap, stop), daemon=True)
            beat.start()
        stop.wait()
        if beat:
            beat.join(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
