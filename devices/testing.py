"""Test helpers (importable without pytest): run the built-in simulators as a subprocess.

with running_simulators(speed=10.0) as (host, port, pid):
    obs = devices.observatory.connect(host, port)
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(host: str, port: int, timeout_s: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"simulator process exited with code {proc.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout_s} s")


def start_simulators(
    port: int | None = None,
    speed: float = 10.0,
    extra_args: tuple[str, ...] = (),
    log_path: str | os.PathLike | None = None,
) -> tuple[subprocess.Popen, int]:
    port = port or free_port()
    cmd = [
        sys.executable,
        "-m",
        "devices.simulators",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--speed",
        str(speed),
        "--log-level",
        "WARNING",
        *extra_args,
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    wait_for_port("127.0.0.1", port, 20.0, proc)
    return proc, port


def stop_process(proc: subprocess.Popen, timeout_s: float = 5.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout_s)


@contextlib.contextmanager
def running_simulators(
    port: int | None = None,
    speed: float = 10.0,
    extra_args: tuple[str, ...] = (),
    log_path: str | os.PathLike | None = None,
) -> Iterator[tuple[str, int, int]]:
    """Start ``python -m devices.simulators`` on 127.0.0.1 (a free port unless given) with fast
    mechanics (``speed``), yield (host, port, pid), and stop it afterwards."""
    proc, port = start_simulators(port, speed, extra_args, log_path)
    try:
        yield "127.0.0.1", port, proc.pid
    finally:
        stop_process(proc)
