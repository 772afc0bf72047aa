"""A real Comet 3.1.0 process with the PyROS plugin, driven over VTP on a free loopback port."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from alert_manager.comet_process import REPO_ROOT, CometConfig, comet_command, comet_environment, twistd_executable
from alert_manager.tests.packets import make_packet
from alert_manager.vtp import VTPError, VTPTestServer, send_voevent

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _packet(serial: int) -> bytes:
    return make_packet(
        f"ivo://pyros/tests#comet-{serial}-{time.time_ns()}",
        params={"Packet_Type": "61", "TrigID": str(serial)},
        time_utc=datetime.now(UTC),
        ra_deg=10.0,
        dec_deg=20.0,
        error_deg=0.05,
    )


@contextmanager
def comet_broker(tmp_path: Path, env_extra: dict[str, str], intake_daemon: bool | None = None) -> Iterator[int]:
    """Comet on a free port; with the plugin in spool mode (the default) also the intake daemon that stores
    what it spools (``intake_daemon=False``: Comet alone, the files stay in the spool)."""
    try:
        twistd_executable()
    except SystemExit as exc:
        pytest.skip(str(exc))
    port = _free_port()
    env = {
        **os.environ,
        "PYROS_COMET_PORT": str(port),
        "PYROS_COMET_EVENTDB": str(tmp_path / "eventdb"),
        **env_extra,
    }
    if intake_daemon is None:
        intake_daemon = env.get("PYROS_COMET_PLUGIN_MODE", "spool") == "spool"
    logs: list = []
    try:
        if intake_daemon:
            with intake_daemon_process(tmp_path, env):
                yield from _run_comet(tmp_path, env, port, logs)
        else:
            yield from _run_comet(tmp_path, env, port, logs)
    finally:
        for log in logs:
            log.close()


@contextmanager
def intake_daemon_process(tmp_path: Path, env: dict[str, str]) -> Iterator[subprocess.Popen]:
    """``python -m alert_manager.intake_daemon`` with ``env``, once it has said it is ready."""
    log_path = tmp_path / "intake.log"
    log = open(log_path, "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "alert_manager.intake_daemon"], cwd=REPO_ROOT,
                            env={"DJANGO_SETTINGS_MODULE": "pyros.settings", **env}, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while b"alert intake ready" not in log_path.read_bytes():
            if proc.poll() is not None:
                pytest.fail(f"intake daemon exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"intake daemon not ready within 60 s: {log_path.read_text()[-2000:]}")
            time.sleep(0.05)
        yield proc
    finally:
        _stop(proc)
        log.close()


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def _run_comet(tmp_path: Path, env: dict[str, str], port: int, logs: list) -> Iterator[int]:
    log = open(tmp_path / "comet.log", "wb")  # noqa: SIM115 - closed by the caller
    logs.append(log)
    proc = subprocess.Popen(
        [sys.executable, "-m", "alert_manager.comet_process"], cwd=REPO_ROOT, env=env, stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"Comet exited with {proc.returncode}: {(tmp_path / 'comet.log').read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("Comet did not listen within 30 s")
                time.sleep(0.1)
        yield port
    finally:
        _stop(proc)


def _wait_for(predicate, timeout_s: float = 10.0) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_timestamp_mode_acks_records_and_survives_a_malformed_packet(tmp_path: Path) -> None:
    stamps = tmp_path / "stamps.log"
    with comet_broker(
        tmp_path, {"PYROS_COMET_PLUGIN_MODE": "timestamp", "PYROS_COMET_TIMESTAMP_FILE": str(stamps)}
    ) as port:
        first = _packet(1)
        response = send_voevent("127.0.0.1", port, first, timeout_s=10)
        assert response.ack, response.message
        assert _wait_for(lambda: stamps.exists() and hashlib.sha1(first).hexdigest() in stamps.read_text())

        bad = send_voevent("127.0.0.1", port, b"<VOEvent this is not xml", timeout_s=10)
        assert not bad.ack

        duplicate = send_voevent("127.0.0.1", port, first, timeout_s=10)
        assert not duplicate.ack and duplicate.role == "nak" and "seen" in duplicate.message

        second = _packet(2)
        assert send_voevent("127.0.0.1", port, second, timeout_s=10).ack
        assert _wait_for(lambda: hashlib.sha1(second).hexdigest() in stamps.read_text())
        lines = stamps.read_text().splitlines()
        assert len(lines) == 2  # neither the malformed packet nor the duplicate reached the handler
        received_unix = float(lines[0].split("\t")[0])
        assert abs(received_unix - time.time()) < 60


def test_intake_mode_hands_the_exact_bytes_to_intake(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    env = {
        "PYROS_COMET_PLUGIN_MODE": "intake",
        "PYROS_COMET_INTAKE": "alert_manager.tests.fake_intake:receive_packet",
        "PYROS_TEST_INTAKE_DIR": str(inbox),
    }
    with comet_broker(tmp_path, env) as port:
        raw = _packet(3)
        assert send_voevent("127.0.0.1", port, raw, timeout_s=10).ack
        target = inbox / f"{hashlib.sha256(raw).hexdigest()}.xml"
        assert _wait_for(target.exists), (tmp_path / "comet.log").read_text()[-2000:]
        assert target.read_bytes() == raw


def test_comet_command_line_from_env(tmp_path: Path) -> None:
    config = CometConfig.from_env(
        {
            "PYROS_COMET_PORT": "9123",
            "PYROS_COMET_REMOTES": "voevent.example.org:8099, 10.0.0.2:8099",
            "PYROS_COMET_EVENTDB": str(tmp_path / "db"),
            "PYROS_COMET_SAVE_EVENTS": str(tmp_path / "saved"),
        }
    )
    argv = comet_command(config, twistd="twistd")
    assert argv[:5] == ["twistd", "--nodaemon", "--pidfile=", "--logfile=-", "comet"]
    for flag in (
        "--receive",
        "--receive-port=9123",
        "--local-ivo=ivo://pyros/broker",
        "--author-whitelist=127.0.0.1/32",
        f"--eventdb={tmp_path / 'db'}",
        "--pyros",
        "--pyros-mode=spool",
        "--remote=voevent.example.org:8099",
        "--remote=10.0.0.2:8099",
        "--save-event",
        f"--save-event-directory={tmp_path / 'saved'}",
    ):
        assert flag in argv
    env = comet_environment({"PYTHONPATH": "/elsewhere"})
    assert env["PYTHONPATH"].split(os.pathsep)[-1] == "/elsewhere"
    assert str(REPO_ROOT / "alert_manager" / "comet_plugins") in env["PYTHONPATH"].split(os.pathsep)
    with pytest.raises(SystemExit, match="HOST:PORT"):
        CometConfig.from_env({"PYROS_COMET_REMOTES": "nohostport"})


def test_vtp_client_against_the_test_server() -> None:
    with VTPTestServer(judge=lambda raw: "too boring" if b"boring" in raw else None) as server:
        ok = send_voevent("127.0.0.1", server.port, _packet(4), timeout_s=5)
        assert ok.ack and "ivo://pyros/test-server" in ok.message
        nak = send_voevent("127.0.0.1", server.port, _packet(5).replace(b"<What>", b"<What><!--boring-->"), timeout_s=5)
        assert not nak.ack and nak.message == "too boring"
        assert len(server.received) == 2
    with pytest.raises(VTPError, match="failed"):
        send_voevent("127.0.0.1", _free_port(), _packet(6), timeout_s=2)


def test_comets_event_database_lives_in_pyros_var_dir_unless_named(tmp_path: Path) -> None:
    assert CometConfig.from_env({"PYROS_VAR_DIR": str(tmp_path)}).eventdb_dir == tmp_path / "comet-eventdb"
    named = CometConfig.from_env({"PYROS_VAR_DIR": str(tmp_path), "PYROS_COMET_EVENTDB": str(tmp_path / "db")})
    assert named.eventdb_dir == tmp_path / "db"
    assert CometConfig.from_env({}).eventdb_dir.parts[-2:] == ("var", "comet-eventdb")
