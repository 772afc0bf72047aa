"""The spool hand-over: Comet's plugin writes packets to files, the intake daemon stores them (and nothing
is lost or stored twice across a crash of either side)."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from alert_manager import intake_daemon, spool
from alert_manager.tests.helpers import NIGHT, swift_packet
from common.testing import scaled_s
from pyrosapp.models import Alert


def _start_and_stop(root: Path) -> intake_daemon.IntakeDaemon:
    """One daemon life: its start-up import, then (stop already asked) the final round."""
    daemon = intake_daemon.IntakeDaemon(root=root, scan_s=0.01)
    daemon.stop()
    daemon.run()
    return daemon


def test_files_left_while_the_daemon_was_down_are_imported_at_its_start(db, messages, tmp_path: Path) -> None:  # noqa: ANN001
    incoming = spool.incoming_dir(tmp_path)
    packets = [swift_packet("BAT_GRB_Pos", 410000 + i, 1, NIGHT, 10.0, 20.0, 0.05, role="test") for i in range(5)]
    received = [1_700_000_000.0 + i for i in range(5)]
    for raw, when in zip(packets, received, strict=True):
        spool.write_packet(raw, when, incoming)
    (incoming / ".half-written.xml.tmp").write_bytes(packets[0][:100])  # a write cut by a crash: not a packet
    _start_and_stop(tmp_path)
    stored = list(Alert.objects.order_by("received_at"))
    assert [bytes(a.raw_xml) for a in stored] == packets  # exact bytes, in receive order
    assert [a.timings["received"] for a in stored] == pytest.approx(received)  # the plugin's receive time
    assert sorted(pk for _, kw in messages for pk in kw["alert_ids"]) == sorted(a.pk for a in stored)
    assert spool.pending_files(incoming) == []


def test_a_file_imported_again_after_a_crash_before_its_delete_is_not_stored_twice(db, messages, tmp_path: Path) -> None:  # noqa: ANN001
    incoming = spool.incoming_dir(tmp_path)
    raw = swift_packet("BAT_GRB_Pos", 420000, 1, NIGHT, 10.0, 20.0, 0.05)
    empty = b"  \n"  # stored rejected, without an IVORN: only its sha256 can recognise it
    paths = [spool.write_packet(raw, time.time(), incoming), spool.write_packet(empty, time.time(), incoming)]
    kept = {path: path.read_bytes() for path in paths}
    assert intake_daemon.import_files(paths) == 2
    assert Alert.objects.count() == 2
    for path, content in kept.items():  # the daemon died after the commit, before deleting: files still there
        path.write_bytes(content)
    messages.clear()
    _start_and_stop(tmp_path)
    assert Alert.objects.count() == 2
    assert Alert.objects.get(sha256=hashlib.sha256(raw).hexdigest()).repeats == 0
    assert messages == []  # not queued a second time either
    assert spool.pending_files(incoming) == []


def test_a_packet_spooled_by_the_comet_plugin_is_stored_by_the_daemon(transactional_db, tmp_path: Path) -> None:  # noqa: ANN001
    from alert_manager.tests.test_comet import comet_broker
    from alert_manager.vtp import send_voevent
    from common.testing import test_database_url

    # Filesystem broker in the temp folder: the daemon queues the alert, no worker takes it (it stays `received`).
    env = {"PYROS_VAR_DIR": str(tmp_path / "var"), "DATABASE_URL": test_database_url(),
           "CELERY_BROKER_URL": "filesystem://", "PYROS_ALERTS_QUEUE": f"alerts-spool-test-{os.getpid()}"}
    raw = swift_packet("BAT_GRB_Pos", 430000 + os.getpid() % 10000, 1, NIGHT, 10.0, 20.0, 0.05)
    with comet_broker(tmp_path, env) as port:
        sent = time.time()
        assert send_voevent("127.0.0.1", port, raw, timeout_s=10).ack
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not Alert.objects.filter(sha256=hashlib.sha256(raw).hexdigest()).exists():
            time.sleep(0.02)
        stored_after_s = time.time() - sent
        alert = Alert.objects.filter(sha256=hashlib.sha256(raw).hexdigest()).first()
        assert alert is not None, (tmp_path / "intake.log").read_text()[-2000:] + (tmp_path / "comet.log").read_text()[-2000:]
        # The file goes once the row is durable (PostgreSQL: after the WAL flush, within ~0.6 s).
        incoming = spool.incoming_dir(tmp_path / "var" / "alert-spool")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and spool.pending_files(incoming):
            time.sleep(0.05)
        assert spool.pending_files(incoming) == []
    assert bytes(alert.raw_xml) == raw and alert.status == Alert.Status.RECEIVED
    assert sent <= alert.timings["received"] <= sent + 5
    # Woken through the FIFO, not found by the 0.5 s scan (generous bound for a loaded CI machine).
    assert stored_after_s < scaled_s(0.45) or pytest.fail(f"stored after {stored_after_s:.3f} s: the wake-up did not work")


def test_a_spool_file_stays_until_its_row_is_flushed_and_is_not_imported_twice_meanwhile(  # noqa: ANN001
        postgres_required, transactional_db, messages, tmp_path: Path) -> None:
    """The daemon commits without waiting for the WAL flush; the spool file is the packet's durable copy until
    PostgreSQL has flushed the row, and is not stored a second time while it waits."""
    from django.db import connection

    incoming = spool.incoming_dir(tmp_path)
    first = spool.write_packet(swift_packet("BAT_GRB_Pos", 440000, 1, NIGHT, 10.0, 20.0, 0.05), time.time(), incoming)
    deletions = intake_daemon.SpoolDeletions()
    deletions.pending = [(2**62, [first])]  # a WAL position not flushed yet
    assert intake_daemon.import_pending(incoming, deletions=deletions) == 0  # waiting for its flush: not re-read
    assert deletions.sweep(wait_s=0.2) == 1 and first.exists()
    deletions.pending = []

    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit TO OFF")  # as the daemon's connection
    try:
        assert intake_daemon.import_pending(incoming, deletions=deletions) == 1
        assert intake_daemon.import_pending(incoming, deletions=deletions) == 0
        assert deletions.sweep(wait_s=5.0) == 0
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET synchronous_commit")
    assert not first.exists()
    alert = Alert.objects.get()
    assert alert.repeats == 0 and bytes(alert.raw_xml) == swift_packet("BAT_GRB_Pos", 440000, 1, NIGHT, 10.0, 20.0,
                                                                       0.05)


def test_flushing_a_spool_file_already_taken_by_the_daemon_is_harmless(tmp_path: Path) -> None:
    incoming = spool.incoming_dir(tmp_path)
    path = spool.write_packet(b"<VOEvent/>", time.time(), incoming, fsync=False)
    assert spool.fsync_path(path) is True
    path.unlink()
    assert spool.fsync_path(path) is False


def test_a_burst_is_stored_in_a_few_rounds_and_a_lone_packet_at_once(transactional_db, messages,  # noqa: ANN001
                                                                    tmp_path: Path) -> None:
    """The daemon coalesces a burst (rounds at least PYROS_ALERT_INTAKE_COALESCE_MS apart: a few INSERTs and
    messages, not one per packet) while a packet after a quiet moment is stored without waiting."""
    import threading

    from django.db import connection

    daemon = intake_daemon.IntakeDaemon(root=tmp_path, scan_s=0.5)

    def run() -> None:
        try:
            daemon.run()
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    incoming = spool.incoming_dir(tmp_path)
    waker = spool.Waker(tmp_path / spool.WAKE_FIFO)
    try:
        deadline = time.monotonic() + 10
        while not (tmp_path / spool.WAKE_FIFO).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        burst = [swift_packet("BAT_GRB_Pos", 450000 + i, 1, NIGHT, 10.0, 20.0, 0.05, role="test") for i in range(40)]
        for raw in burst:  # Comet's plugin: one file and one wake-up per packet, 500 packets/s
            spool.write_packet(raw, time.time(), incoming, fsync=False)
            assert waker.wake()
            time.sleep(0.002)
        while Alert.objects.count() < 40 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert Alert.objects.count() == 40
        # ~90 ms of packets: about 5 rounds 20 ms apart (without coalescing: one or two packets per round).
        assert daemon.rounds <= 10, f"{daemon.rounds} rounds for 40 packets"
        assert len(messages) <= 12
        time.sleep(0.1)  # quiet
        lone = swift_packet("BAT_GRB_Pos", 451000, 1, NIGHT, 10.0, 20.0, 0.05)
        sent = time.monotonic()
        spool.write_packet(lone, time.time(), incoming, fsync=False)
        waker.wake()
        while not Alert.objects.filter(trigger_id="").filter(raw_xml=lone).exists() and time.monotonic() < deadline:
            time.sleep(0.001)
        stored_after_s = time.monotonic() - sent
        assert messages[-1][0] == "process_alert"  # alone: the latency path's message
        assert stored_after_s < scaled_s(0.2), stored_after_s
    finally:
        waker.close()
        daemon.stop()
        thread.join(10)
