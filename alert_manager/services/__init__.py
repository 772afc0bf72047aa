"""Writes of the alert manager, one module per topic: ``intake`` (store a packet, queue it, recover what
an outage left), ``processing`` (parse, triage, group, act; the bulk path), ``grouping`` (one event per
burst), ``follow_up`` (point, request, pre-empt, retract), ``tiled_follow_up`` (sky maps and wide error circles
observed as tiles), ``strategy_admin``, ``test_packets``.

Latency path (``alert_process``): claim the row -> parse (~0.1 ms) -> store the parsed fields ->
group under the grouping lock -> (actionable, observable now) point the telescope -> build the request
-> pre-empt -> replan. Timestamps of each step go into ``Alert.timings`` (unix seconds) for the benchmark.
Commits of processing do not wait for the disk (``_asynchronous_commits``).

Bulk path (``_process_quiet``): consecutive alerts that cannot point the telescope by themselves (test
packets, not-a-GRB, no usable position, error beyond the strategy...) are grouped and decided together in
one transaction, with the same outcome as alert by alert (tested over the whole corpus).

Concurrency: the alerts worker runs 4 threads and a burst of one event brings several notices
within seconds. Grouping runs in a transaction holding one global lock (a PostgreSQL advisory
lock; SQLite's IMMEDIATE transactions already hold the write lock from BEGIN), because a notice
may join an event through another mission's time coincidence: no narrower key exists. It lasts a
few milliseconds. The request of an event is built under ``select_for_update`` of the event row,
so two notices of one burst never build two requests.
"""


from alert_manager.services._constants import OVERSIZE_KEEP_BYTES, PENDING_AFTER_S, STUCK_AFTER_S, VISIBILITY_HOURS
from alert_manager.services.follow_up import event_retract
from alert_manager.services.intake import (
    PROCESS_CHUNK,
    alert_process_pending,
    alert_queue,
    alert_queue_many,
    alert_receive,
    alert_receive_many,
    alerts_queue_override,
    extract_ivorn,
)
from alert_manager.services.processing import alert_process, alert_process_many
from alert_manager.services.strategy_admin import strategy_activate
from alert_manager.services.streams import kafka_topics_choose
from alert_manager.services.test_packets import packet_publish_to_kafka, packet_send_to_broker, zenith_ra_dec

__all__ = [
    "OVERSIZE_KEEP_BYTES", "PENDING_AFTER_S", "PROCESS_CHUNK", "STUCK_AFTER_S", "VISIBILITY_HOURS",
    "alert_process", "alert_process_many", "alert_process_pending", "alert_queue", "alert_queue_many",
    "alert_receive", "alert_receive_many", "alerts_queue_override", "event_retract", "extract_ivorn",
    "kafka_topics_choose",
    "packet_publish_to_kafka", "packet_send_to_broker", "strategy_activate", "zenith_ra_dec",
]
