"""End to end: a real Comet process with the PyROS plugin, a real Celery worker consuming alerts, the
INDI simulators and the test database. A Swift BAT notice sent over VTP makes the simulated mount
slew; the latency from the send to the mount going Busy is measured by an independent INDI client
(what the mount itself announces), next to Comet's own send -> handler latency.

Broker: RabbitMQ when CELERY_BROKER_URL is AMQP (CI), else the filesystem broker in a temp folder.
The worker consumes its own queue (PYROS_ALERTS_QUEUE) so that concurrent runs on one RabbitMQ do not
take each other's alerts.
"""

from __future__ import annotations

import os
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from alert_manager.tests.helpers import swift_packet
from alert_manager.tests.mount_watcher import MountWatcher
from alert_manager.tests.packets import make_packet
from alert_manager.tests.test_comet import comet_broker
from alert_manager.tests.test_services import BILLION_LAUGHS, XXE
from alert_manager.vtp import VTPError, send_voevent
from pyrosapp.models import Alert, AlertEvent

pytestmark = [pytest.mark.slow, pytest.mark.services]

N_ALERTS = 5
# Goal of the issue (RabbitMQ, PostgreSQL): p50 <= 50 ms from the VTP send to the slew received by the mount;
# it is printed in the test's log and measured properly by scripts/bench/bench_alerts.py. The test asserts a
# bound that catches a broken fast path (a new INDI connection or a cold worker per alert costs 0.5-1 s) without
# failing on a loaded CI machine (the filesystem broker polls every 50 ms: a wider bound).
GOAL_P50_MS = 50.0
ASSERTED_P50_MS = {"amqp": 200.0, "filesystem": 300.0}

def _wait_processed(ivorn: str, timeout_s: float = 20.0) -> Alert:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alert = Alert.objects.filter(ivorn=ivorn).first()
        if alert is not None and alert.status not in (Alert.Status.RECEIVED, Alert.Status.PROCESSING):
            return alert
        time.sleep(0.05)
    raise AssertionError(f"{ivorn} not processed within {timeout_s} s")


def _wait_for_log(path: Path, text: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in {path} after {timeout_s} s:\n{path.read_text(errors='replace')[-3000:]}")


def test_a_swift_notice_sent_to_comet_slews_the_mount(night_observatory, request, tmp_path: Path) -> None:  # noqa: ANN001
    from alert_manager.demo import seed_strategies
    from common.testing import celery_worker, test_database_url, zenith_target

    seed, indi_port = night_observatory
    seed_strategies()
    broker = os.environ.get("CELERY_BROKER_URL", "")
    if broker.startswith("amqp"):
        broker = request.getfixturevalue("rabbitmq_url")
        kind = "amqp"
    else:
        broker, kind = "filesystem://", "filesystem"
    queue = f"alerts-e2e-{os.getpid()}-{time.time_ns()}"
    env = {"CELERY_BROKER_URL": broker, "PYROS_ALERTS_QUEUE": queue, "PYROS_VAR_DIR": str(tmp_path / "var"),
           "PYROS_INDI_HOST": "127.0.0.1", "PYROS_INDI_PORT": str(indi_port), "DATABASE_URL": test_database_url()}
    worker_log = tmp_path / "worker.log"
    watcher = MountWatcher(indi_port)
    watcher.start()
    time.sleep(1.0)  # let the watcher's getProperties settle before other clients connect (see the report)
    # At night the telescope is observing when a burst arrives: leave the park position as a sequence would
    # (the majordome's pre-emption does not unpark a parked mount).
    from majordome.device_link import get_observatory, reset_observatory

    get_observatory().mount.unpark()
    reset_observatory()
    with celery_worker(queue, env=env, concurrency=4, log_path=worker_log), \
            comet_broker(tmp_path, {**env, "PYROS_COMET_PLUGIN_MODE": "spool"}) as comet_port:
        _wait_for_log(worker_log, "alert worker warmed up", 60)
        # Warm the Comet process (Django set-up, broker connection) with a test packet: stored, ignored.
        warm = make_packet(f"ivo://nasa.gsfc.gcn/SWIFT#BAT_GRB_Pos_999{os.getpid()}-1", role="test",
                           params={"Packet_Type": "61", "TrigID": f"999{os.getpid()}"}, time_utc=datetime.now(UTC),
                           ra_deg=10.0, dec_deg=10.0, error_deg=0.05)
        assert send_voevent("127.0.0.1", comet_port, warm, timeout_s=10).ack
        assert _wait_processed(f"ivo://nasa.gsfc.gcn/SWIFT#BAT_GRB_Pos_999{os.getpid()}-1").status == "ignored"

        slew_ms, comet_ms, worker_ms, steps = [], [], [], []
        for i in range(N_ALERTS):
            trig = 880000 + i
            ra, dec = zenith_target(seed.site, dec_offset_deg=-10.0 + 5.0 * i)
            packet = swift_packet("BAT_GRB_Pos", trig, 1, datetime.now(UTC), ra, dec, 0.05)
            watcher.wait_not_slewing()  # the previous burst's slew has ended: measure this one alone
            sent = time.time()
            response = send_voevent("127.0.0.1", comet_port, packet, timeout_s=10)
            assert response.ack, response.message
            busy = watcher.first_busy_after(sent)
            assert busy is not None, f"the mount never slewed for alert {i}: {worker_log.read_text()[-3000:]}"
            alert = _wait_processed(f"ivo://nasa.gsfc.gcn/SWIFT#BAT_GRB_Pos_{trig}-1")
            event = AlertEvent.objects.get(pk=alert.event_id)
            assert event.status == AlertEvent.Status.OBSERVING and event.request is not None, event.status_reason
            slew_ms.append((busy - sent) * 1e3)
            comet_ms.append((alert.timings["received"] - sent) * 1e3)
            worker_ms.append((alert.timings["preempt_called"] - alert.timings["task_started"]) * 1e3)
            marks = ["received", "task_started", "parsed", "grouped", "visibility", "request_built", "preempt_called"]
            steps.append([(alert.timings[b] - alert.timings[a]) * 1e3 for a, b in zip(marks, marks[1:], strict=False)])
            time.sleep(0.3)

        # The mount ends on the last burst (EOD coordinates are apparent: within precession of J2000).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (watcher.last_position is None
                                               or abs(watcher.last_position[1] - dec) > 1.0):
            time.sleep(0.2)
        assert watcher.last_position is not None and abs(watcher.last_position[1] - dec) < 1.0
        assert abs((watcher.last_position[0] - ra + 180.0) % 360.0 - 180.0) < 1.0

        # Bad input through the real broker: refused or stored rejected, and the broker keeps accepting.
        v11 = make_packet("ivo://pyros/tests#v11-e2e", version="1.1")
        for name, raw in (("malformed", b"<VOEvent this is not xml"), ("VOEvent 1.1", v11),
                          ("billion laughs", BILLION_LAUGHS), ("external entity", XXE),
                          ("truncated", packet[:200]), ("10 MB", b"<a>" + b"x" * (10 * 1024 * 1024) + b"</a>")):
            try:
                reply = send_voevent("127.0.0.1", comet_port, raw, timeout_s=10)
                accepted = reply.ack
            except VTPError:
                accepted = False
            if accepted:  # Comet passed it on: PyROS must have stored it rejected
                sha = __import__("hashlib").sha256(raw).hexdigest()
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and not Alert.objects.filter(
                        sha256=sha, status=Alert.Status.REJECTED).exists():
                    time.sleep(0.05)
                assert Alert.objects.filter(sha256=sha, status=Alert.Status.REJECTED).exists(), name
        after = swift_packet("BAT_GRB_Pos", 889999, 1, datetime.now(UTC), ra, dec, 0.05, role="test")
        assert send_voevent("127.0.0.1", comet_port, after, timeout_s=10).ack
        assert _wait_processed("ivo://nasa.gsfc.gcn/SWIFT#BAT_GRB_Pos_889999-1").status == "ignored"
    watcher.close()

    p50 = statistics.median(slew_ms)
    print(f"\nVTP send -> mount Busy ({kind} broker, {N_ALERTS} alerts): p50 {p50:.1f} ms, max {max(slew_ms):.1f} ms; "
          f"Comet send -> handler p50 {statistics.median(comet_ms):.1f} ms; "
          f"worker task start -> pre-emption call p50 {statistics.median(worker_ms):.1f} ms; "
          f"all: {', '.join(f'{v:.1f}' for v in slew_ms)} ms")
    names = ["queue", "parse", "group", "visibility", "request", "to preempt"]
    print("  worker steps p50 (ms): " + ", ".join(
        f"{name} {statistics.median(step[i] for step in steps):.1f}" for i, name in enumerate(names)))
    print(f"  goal p50 <= {GOAL_P50_MS:g} ms: {'met' if p50 <= GOAL_P50_MS else 'NOT met'} in this run")
    assert p50 <= ASSERTED_P50_MS[kind], f"p50 {p50:.1f} ms: the fast path is broken ({kind} broker)"
