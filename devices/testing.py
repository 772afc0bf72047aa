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


# ---------------------------------------------------------------------------------------------
# ASCOM Alpaca simulators (PyPI alpaca-simulators, through devices.alpaca.simulator)
# ---------------------------------------------------------------------------------------------


def alpaca_simulators_unavailable_reason() -> str | None:
    """Why the Alpaca simulators cannot run here, or None if they can."""
    import importlib.util

    for module, package in (("alpaca", "alpyca"), ("alpaca_simulators", "alpaca-simulators")):
        if importlib.util.find_spec(module) is None:
            return f"{package} not installed (pip install -e '.[dev]')"
    return None


class AlpacaSimulators:
    """``python -m devices.alpaca.simulator`` on 127.0.0.1:``port`` (a free port unless given), its
    configuration and catalogue in ``workdir``; ``fields`` are (ra_deg, dec_deg, radius_deg) where the
    sky has stars; ``discovery_port`` > 0 adds a discovery responder on 127.0.0.1. ``restart()`` starts
    it again on the same port, ``kill()`` ends it at once (SIGKILL, as a crash)."""

    def __init__(self, workdir: str | os.PathLike, *, port: int | None = None, fields=(), site=None,
                 discovery_port: int = 0, slew_rate_deg_s: float = 10.0, log_path=None) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.workdir = Path(workdir)
        self.fields = tuple(fields)
        self.site = site
        self.discovery_port = discovery_port
        self.slew_rate_deg_s = slew_rate_deg_s
        self.log_path = log_path or self.workdir / "alpaca-simulators.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> AlpacaSimulators:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "devices.alpaca.simulator", "--host", self.host, "--port", str(self.port),
               "--workdir", str(self.workdir), "--discovery-port", str(self.discovery_port),
               "--slew-rate", str(self.slew_rate_deg_s)]
        for ra, dec, radius in self.fields:
            cmd += ["--field", f"{ra},{dec},{radius}"]
        if self.site is not None:
            cmd += ["--latitude", str(self.site.latitude_deg), "--longitude", str(self.site.longitude_deg),
                    "--elevation", str(self.site.elevation_m)]
        env = {**os.environ,
               "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
               "MPLCONFIGDIR": str(self.workdir / "matplotlib")}
        out = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        out.close()
        wait_for_port(self.host, self.port, 60.0, self.proc)
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def restart(self) -> None:
        self.stop()
        self.start()


@contextlib.contextmanager
def running_alpaca_simulators(workdir: str | os.PathLike, **kwargs) -> Iterator[AlpacaSimulators]:
    """The Alpaca simulators (see :class:`AlpacaSimulators`), stopped afterwards."""
    sims = AlpacaSimulators(workdir, **kwargs).start()
    try:
        yield sims
    finally:
        sims.stop()


# ---------------------------------------------------------------------------------------------
# Debian's indi-bin simulators, kept off the network
# ---------------------------------------------------------------------------------------------
#
# Debian's indiserver (1.9.9) listens on every interface and has no option against it. It runs
# here inside its own network namespace (``unshare -n``: only a loopback interface, reachable
# from nowhere). The test process reaches it through a small forwarder: a listener on the host's
# 127.0.0.1 whose outgoing sockets are created by a thread that joined the namespace with
# setns(2) (network namespaces are per thread in Linux, and a socket stays in the namespace it
# was created in). Needs root (CAP_SYS_ADMIN), as in CI.

DEBIAN_DRIVERS = {
    "mount": ("indi_simulator_telescope", "Telescope Simulator"),
    "camera": ("indi_simulator_ccd", "CCD Simulator"),
    "filter_wheel": ("indi_simulator_wheel", "Filter Simulator"),
    "dome": ("indi_simulator_dome", "Dome Simulator"),
    "weather": ("indi_simulator_weather", "Weather Simulator"),
}
# run when installed (indi-bin 1.9.9 has both); the contract skips their cases otherwise
OPTIONAL_DEBIAN_DRIVERS = {
    "focuser": ("indi_simulator_focus", "Focuser Simulator"),
    "watchdog": ("indi_watchdog", "WatchDog"),
}


def _debian_drivers() -> dict[str, tuple[str, str]]:
    import shutil

    optional = {kind: d for kind, d in OPTIONAL_DEBIAN_DRIVERS.items() if shutil.which(d[0]) is not None}
    return {**DEBIAN_DRIVERS, **optional}


CLONE_NEWNET = 0x40000000


def debian_indi_unavailable_reason() -> str | None:
    """Why Debian's simulators cannot run here, or None if they can."""
    import shutil

    missing = [exe for exe in ["indiserver", *(d[0] for d in DEBIAN_DRIVERS.values())] if shutil.which(exe) is None]
    if missing:
        return f"indi-bin not installed (missing {', '.join(missing)}): apt-get install indi-bin"
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare/ip (util-linux, iproute2) needed to keep indiserver off the network"
    if os.geteuid() != 0:
        return "entering indiserver's network namespace needs root (CAP_SYS_ADMIN)"
    return None


class _NamespaceForwarder:
    """127.0.0.1:<port> on the host -> 127.0.0.1:<inner_port> inside another network namespace."""

    def __init__(self, ns_pid: int, inner_port: int, port: int | None = None) -> None:
        import threading

        self.inner_port = inner_port
        self._ns_executor = None
        self.retarget(ns_pid)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", port or 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        self._closed = False
        self._sockets: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept_loop, daemon=True, name="netns-forwarder")
        self._thread.start()

    def retarget(self, ns_pid: int) -> None:
        """Forward to the namespace of another process (a restarted server) on the same port."""
        import concurrent.futures
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        ns_path = f"/proc/{ns_pid}/ns/net"

        def enter_namespace() -> None:
            fd = os.open(ns_path, os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({ns_path}): {os.strerror(err)}")
            finally:
                os.close(fd)

        old = self._ns_executor
        self._ns_executor = concurrent.futures.ThreadPoolExecutor(1, initializer=enter_namespace)
        if old is not None:
            old.shutdown(wait=False)

    def _inner_connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.inner_port), timeout=5)

    def _accept_loop(self) -> None:
        import threading

        while not self._closed:
            try:
                outer, _ = self._listener.accept()
            except OSError:
                return
            try:
                inner = self._ns_executor.submit(self._inner_connect).result(10)
            except Exception:  # noqa: BLE001 - server not (yet) up: refuse like a closed port
                outer.close()
                continue
            inner.settimeout(None)
            for s in (outer, inner):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sockets += [outer, inner]
            for a, b in ((outer, inner), (inner, outer)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(1 << 20)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def drop_connections(self) -> None:
        for s in self._sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
                s.close()
        self._sockets.clear()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()
        self.drop_connections()
        self._ns_executor.shutdown(wait=False)


class DebianIndi:
    """Debian's indiserver with the five simulators (and focuser and watchdog when installed), in a
    private network namespace, reachable on ``127.0.0.1:self.port`` of the host through a forwarder.
    ``restart()`` kills and starts it again behind the same port (for reconnect tests)."""

    inner_port = 7624

    def __init__(self, home: str | os.PathLike) -> None:
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None
        self.forwarder: _NamespaceForwarder | None = None
        self.drivers = _debian_drivers()
        self.names = {kind: name for kind, (_, name) in self.drivers.items()}

    def _spawn(self) -> subprocess.Popen:
        drivers = " ".join(exe for exe, _ in self.drivers.values())
        script = (
            f"ip link set lo up && exec indiserver -p {self.inner_port} -u {self.home}/indiserver.sock -r 0 {drivers}"
        )
        log = open(self.home / "indiserver.log", "ab")  # noqa: SIM115 - lives as long as the server
        # HOME: the drivers keep settings under $HOME/.indi; tests start from defaults every time
        return subprocess.Popen(
            ["unshare", "-n", "--", "sh", "-c", script],
            env={**os.environ, "HOME": str(self.home)},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start(self) -> int:
        self.proc = self._spawn()
        time.sleep(0.2)  # unshare has exec'd into its namespace
        if self.forwarder is None:
            self.forwarder = _NamespaceForwarder(self.proc.pid, self.inner_port)
        else:
            self.forwarder.retarget(self.proc.pid)
        self._wait_ready()
        return self.forwarder.port

    def _wait_ready(self, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"indiserver exited ({self.proc.returncode}); see {self.home}/indiserver.log")
            try:
                with socket.create_connection(("127.0.0.1", self.forwarder.port), timeout=1) as s:
                    s.sendall(b'<getProperties version="1.7"/>')
                    s.settimeout(1.0)
                    if s.recv(100):
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError("Debian indiserver not ready")

    @property
    def port(self) -> int:
        return self.forwarder.port

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self.forwarder is not None:
            self.forwarder.drop_connections()

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        if self.forwarder is not None:
            self.forwarder.close()


@contextlib.contextmanager
def running_debian_simulators(home: str | os.PathLike) -> Iterator[DebianIndi]:
    """Debian's simulators off the network (see :class:`DebianIndi`); ``.port`` on 127.0.0.1."""
    server = DebianIndi(home)
    server.start()
    try:
        yield server
    finally:
        server.close()


def scaled_s(seconds: float) -> float:
    """A wall-clock bound for a test, scaled for slow or loaded machines: ``PYROS_TEST_TIME_FACTOR``
    (default 3 under CI, 1 elsewhere). The numbers to reach are measured by ``make bench``; tests only
    catch what is grossly wrong (a stop that never comes)."""
    default = 3.0 if os.environ.get("CI", "").lower() in ("1", "true", "yes") else 1.0
    try:
        factor = float(os.environ.get("PYROS_TEST_TIME_FACTOR", default))
    except ValueError:
        factor = default
    return seconds * max(1.0, factor)
