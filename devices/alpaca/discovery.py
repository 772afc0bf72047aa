"""ASCOM Alpaca discovery: which Alpaca servers answer on the local network, and what devices they serve.

``discover()`` sends the discovery datagram (``alpacadiscovery1``, UDP port 32227) to the broadcast
address of every IPv4 interface and to 127.0.0.1 (loopback has no broadcast), collects the
``{"AlpacaPort": N}`` answers, then lists each server's devices with the management API
(``/management/v1/configureddevices``), or, for servers without it (alpaca-simulators), by asking
``Name`` of device numbers 0, 1... of each device type PyROS uses.

    python -m devices.alpaca.discovery [--timeout 1] [--port 32227]

prints what it found and the ``PYROS_*`` settings that would select it.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import socket
import threading
import time
from dataclasses import dataclass

import requests

logger = logging.getLogger("devices.alpaca.discovery")

DISCOVERY_PORT = 32227
DISCOVERY_MESSAGE = b"alpacadiscovery1"
# ASCOM device types PyROS uses, and the PyROS kind each stands for
DEVICE_KINDS = {
    "telescope": "mount",
    "camera": "camera",
    "dome": "dome",
    "filterwheel": "filter_wheel",
    "focuser": "focuser",
    "observingconditions": "weather",
    "safetymonitor": "safety_monitor",
}
MAX_PROBED_NUMBER = 4


@dataclass(frozen=True)
class AlpacaDevice:
    host: str
    port: int
    device_type: str  # ASCOM type, lower case ("telescope")
    number: int
    name: str
    unique_id: str = ""

    @property
    def kind(self) -> str | None:
        """The PyROS device kind (``mount``...), or None for a type PyROS does not use."""
        return DEVICE_KINDS.get(self.device_type)


def _broadcast_addresses() -> list[str]:
    addresses = []
    try:
        import ifaddr

        for adapter in ifaddr.get_adapters():
            for ip in adapter.ips:
                if not ip.is_IPv4 or ip.ip.startswith("169.254.") or ip.ip.startswith("127."):
                    continue
                network = ipaddress.IPv4Network(f"{ip.ip}/{ip.network_prefix}", strict=False)
                addresses.append(str(network.broadcast_address))
    except Exception:  # noqa: BLE001 - no interface list: loopback only
        logger.debug("cannot list network interfaces", exc_info=True)
    return addresses


def discover_servers(*, timeout_s: float = 1.0, port: int = DISCOVERY_PORT, targets: list[str] | None = None,
                     broadcast: bool = True) -> list[tuple[str, int]]:
    """(host, alpaca_port) of every server that answered within ``timeout_s``. ``targets``: addresses
    to ask besides the broadcasts (default 127.0.0.1)."""
    targets = list(targets if targets is not None else ["127.0.0.1"])
    if broadcast:
        targets += _broadcast_addresses()
    found: list[tuple[str, int]] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.bind(("0.0.0.0" if broadcast else "127.0.0.1", 0))
        for target in targets:
            try:
                sock.sendto(DISCOVERY_MESSAGE, (target, port))
            except OSError as exc:
                logger.debug("discovery query to %s failed: %s", target, exc)
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data, (host, _) = sock.recvfrom(1024)
            except (TimeoutError, OSError):
                break
            try:
                alpaca_port = int(json.loads(data.decode())["AlpacaPort"])
            except (ValueError, KeyError, TypeError):
                logger.debug("unusable discovery answer from %s: %r", host, data[:100])
                continue
            if (host, alpaca_port) not in found:
                found.append((host, alpaca_port))
    return found


def list_devices(host: str, port: int, *, timeout_s: float = 2.0) -> list[AlpacaDevice]:
    """The devices an Alpaca server serves (management API, else probing the types PyROS uses)."""
    base = f"http://{host}:{port}"
    session = requests.Session()
    try:
        response = session.get(f"{base}/management/v1/configureddevices", timeout=timeout_s)
        if response.status_code == 200:
            return [
                AlpacaDevice(host, port, d["DeviceType"].lower(), int(d["DeviceNumber"]), d.get("DeviceName", ""),
                             d.get("UniqueID", ""))
                for d in response.json()["Value"]
            ]
    except (requests.RequestException, ValueError, KeyError, TypeError):
        logger.debug("no management API on %s", base, exc_info=True)
    devices = []
    for device_type in DEVICE_KINDS:
        for number in range(MAX_PROBED_NUMBER):
            try:
                answer = session.get(f"{base}/api/v1/{device_type}/{number}/name", timeout=timeout_s)
                body = answer.json() if answer.status_code == 200 else {}
            except (requests.RequestException, ValueError):
                body = {}
            if not isinstance(body, dict) or body.get("ErrorNumber") or "Value" not in body:
                break
            devices.append(AlpacaDevice(host, port, device_type, number, str(body["Value"])))
    return devices


class NoSuchAlpacaDevice(ValueError):
    """The Alpaca server does not answer, or has no device of that type and number (the message says which
    it has)."""


def check_device(host: str, port: int, kind: str, number: int, *, timeout_s: float = 2.0) -> str:
    """The ``Name`` of device ``number`` of PyROS kind ``kind`` (``camera``, ``safety_monitor``...) on the
    Alpaca server ``host``:``port``; NoSuchAlpacaDevice if it is not there."""
    types = {k: t for t, k in DEVICE_KINDS.items()}
    if kind not in types:
        raise NoSuchAlpacaDevice(f"ASCOM Alpaca has no {kind.replace('_', ' ')} device type")
    device_type = types[kind]
    url = f"http://{host}:{port}/api/v1/{device_type}/{number}/name"
    try:
        answer = requests.get(url, params={"ClientID": "1", "ClientTransactionID": "1"}, timeout=timeout_s)
    except requests.RequestException as exc:
        raise NoSuchAlpacaDevice(f"the Alpaca server {host}:{port} does not answer ({exc.__class__.__name__})") from exc
    try:
        body = answer.json() if answer.status_code == 200 else {}
    except ValueError:
        body = {}
    if isinstance(body, dict) and not body.get("ErrorNumber") and "Value" in body:
        return str(body["Value"])
    others = [d for d in list_devices(host, port, timeout_s=timeout_s) if d.device_type == device_type]
    has = ", ".join(f"{d.number} ({d.name})" for d in others) if others else "none"
    raise NoSuchAlpacaDevice(f"the Alpaca server {host}:{port} has no {device_type} number {number} "
                             f"({device_type} numbers there: {has})")


def discover(*, timeout_s: float = 1.0, port: int = DISCOVERY_PORT, targets: list[str] | None = None,
             broadcast: bool = True) -> list[AlpacaDevice]:
    """Every device of every Alpaca server found (see :func:`discover_servers`)."""
    devices = []
    for host, alpaca_port in discover_servers(timeout_s=timeout_s, port=port, targets=targets, broadcast=broadcast):
        devices += list_devices(host, alpaca_port)
    return devices


def suggested_settings(devices: list[AlpacaDevice]) -> dict[str, str]:
    """Environment settings selecting the first device of each kind found (on one server)."""
    if not devices:
        return {}
    first = devices[0]
    settings = {"PYROS_DEVICE_BACKEND": "alpaca", "PYROS_ALPACA_HOST": first.host,
                "PYROS_ALPACA_PORT": str(first.port)}
    for device in devices:
        kind = device.kind
        key = f"PYROS_ALPACA_{kind.upper()}" if kind else None
        if key is None or key in settings:
            continue
        same_server = (device.host, device.port) == (first.host, first.port)
        settings[key] = str(device.number) if same_server else f"{device.host}:{device.port}/{device.number}"
    return settings


class DiscoveryResponder:
    """Answers ASCOM Alpaca discovery datagrams (``alpacadiscovery1``) with ``{"AlpacaPort": port}``.

    Binds ``host`` (127.0.0.1 by default: found by a unicast query to loopback only; "0.0.0.0" to be
    found by broadcasts on the local network, as real Alpaca servers are)."""

    def __init__(self, alpaca_port: int, *, host: str = "127.0.0.1", port: int = 32227) -> None:
        self.alpaca_port = alpaca_port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.sock.settimeout(0.5)
        self.address = self.sock.getsockname()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alpaca-discovery", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        answer = json.dumps({"AlpacaPort": self.alpaca_port}).encode()
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(1024)
            except TimeoutError:
                continue
            except OSError:
                return
            if data.strip().lower().startswith(b"alpacadiscovery1"):
                try:
                    self.sock.sendto(answer, peer)
                except OSError:
                    logger.debug("discovery answer to %s failed", peer)

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(2.0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devices.alpaca.discovery", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds to wait for answers")
    parser.add_argument("--port", type=int, default=DISCOVERY_PORT, help="discovery port (32227)")
    parser.add_argument("--no-broadcast", action="store_true", help="ask 127.0.0.1 only")
    args = parser.parse_args(argv)
    devices = discover(timeout_s=args.timeout, port=args.port, broadcast=not args.no_broadcast)
    if not devices:
        print("no Alpaca server answered")
        return
    for d in devices:
        print(f"{d.host}:{d.port}  {d.device_type:<20} {d.number}  {d.name}" + (f"  ({d.kind})" if d.kind else ""))
    print()
    for key, value in suggested_settings(devices).items():
        print(f"{key}={value}")


if __name__ == "__main__":
    main()
