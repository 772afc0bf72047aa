"""Alpaca devices of an observatory: settings (environment), connection, set-up again after a restart.

Settings (read by :meth:`AlpacaSettings.from_env`):

- ``PYROS_ALPACA_HOST`` (127.0.0.1), ``PYROS_ALPACA_PORT`` (11111): the Alpaca server;
- ``PYROS_ALPACA_MOUNT``, ``..._DOME``, ``..._FILTER_WHEEL``, ``..._CAMERA``, ``..._WEATHER``
  (an ObservingConditions), ``..._FOCUSER``, ``..._SAFETY_MONITOR``: the device number (default 0), or
  ``host:port/number`` for a device on another server, or ``none``;
- ``PYROS_ALPACA_TIMEOUT_S`` (5): HTTP read timeout of a call; ``PYROS_ALPACA_READOUT_TIMEOUT_S``
  (120): how long after its end an exposure may take to deliver its image;
- ``PYROS_ALPACA_IMAGEBYTES`` (1): ask cameras for ImageBytes (0: JSON only);
- ``PYROS_ALPACA_FOCAL_LENGTH_MM`` (the mount's ``FocalLength`` otherwise) and
  ``PYROS_ALPACA_CAMERA_ROTATION_DEG`` (0): for the nominal WCS written in FITS headers.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from devices.alpaca.backend import (
    AlpacaCamera,
    AlpacaDome,
    AlpacaFilterWheel,
    AlpacaFocuser,
    AlpacaMount,
    AlpacaWeather,
    SafetyOnlyWeather,
    make_client,
)
from devices.alpaca.transport import READ_TIMEOUT_S, AlpacaServer
from devices.errors import DeviceDisconnected, DeviceError, DeviceNotFound, DeviceRefused
from devices.interfaces import Site

logger = logging.getLogger("devices.alpaca")

DEFAULT_PORT = 11111
# PyROS device kind -> ASCOM device type
ALPACA_TYPES = {
    "mount": "telescope",
    "dome": "dome",
    "filter_wheel": "filterwheel",
    "camera": "camera",
    "weather": "observingconditions",
    "focuser": "focuser",
}


@dataclass(frozen=True)
class AlpacaAddress:
    host: str
    port: int
    number: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}/{self.number}"


def parse_address(text: str, host: str, port: int) -> AlpacaAddress | None:
    """``"0"``, ``"host:port/0"`` or ``"none"`` (None)."""
    text = text.strip()
    if text.lower() in ("", "none", "-", "off"):
        return None
    if "/" in text:
        where, number = text.rsplit("/", 1)
        host, _, port_text = where.rpartition(":")
        if not host or not port_text.isdigit():
            raise ValueError(f"Alpaca device {text!r}: expected host:port/number")
        port = int(port_text)
        text = number
    if not text.isdigit():
        raise ValueError(f"Alpaca device number {text!r} is not a non-negative integer")
    return AlpacaAddress(host, port, int(text))


@dataclass
class AlpacaSettings:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    timeout_s: float = READ_TIMEOUT_S
    # kind (and "safety_monitor") -> address, None: not used; a kind not in it: number 0 on host:port
    devices: dict[str, AlpacaAddress | None] = field(default_factory=dict)
    imagebytes: bool = True
    focal_length_mm: float | None = None
    camera_rotation_deg: float = 0.0

    def address(self, kind: str) -> AlpacaAddress | None:
        if kind in self.devices:
            return self.devices[kind]
        return AlpacaAddress(self.host, self.port, 0)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AlpacaSettings:
        env = os.environ if env is None else env
        host = env.get("PYROS_ALPACA_HOST", "127.0.0.1")
        port = int(env.get("PYROS_ALPACA_PORT", str(DEFAULT_PORT)))
        devices = {kind: parse_address(env.get(f"PYROS_ALPACA_{kind.upper()}", "0"), host, port)
                   for kind in (*ALPACA_TYPES, "safety_monitor")}
        focal = env.get("PYROS_ALPACA_FOCAL_LENGTH_MM")
        return cls(
            host=host,
            port=port,
            timeout_s=float(env.get("PYROS_ALPACA_TIMEOUT_S", str(READ_TIMEOUT_S))),
            devices=devices,
            imagebytes=env.get("PYROS_ALPACA_IMAGEBYTES", "1").strip().lower() not in ("0", "false", "no"),
            focal_length_mm=float(focal) if focal else None,
            camera_rotation_deg=float(env.get("PYROS_ALPACA_CAMERA_ROTATION_DEG", "0")),
        )


class AlpacaDevices:
    """The Alpaca devices of the kinds asked for: ``devices`` (kind -> device object) and ``names``
    (kind -> the device's ``Name``). A device the server does not have is left out (logged)."""

    def __init__(self, settings: AlpacaSettings, kinds: list[str], site: Site, *, timeout_s: float = 10.0) -> None:
        self.settings = settings
        self.site = site
        self.servers: dict[tuple[str, int], AlpacaServer] = {}
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="alpaca-op")
        self.devices: dict[str, object] = {}
        self.names: dict[str, str] = {}
        self.addresses: dict[str, AlpacaAddress] = {}
        deadline = time.monotonic() + timeout_s
        try:
            for kind in kinds:
                address = settings.address(kind) if kind in ALPACA_TYPES else None
                if kind not in ALPACA_TYPES:
                    logger.warning("no Alpaca %s: ASCOM Alpaca has no such device type", kind)
                    continue
                if address is None:
                    continue
                client = make_client(ALPACA_TYPES[kind], self._server(address), address.number)
                name = self._probe(client, address, deadline)
                if name is None:
                    continue
                self.addresses[kind] = address
                self.names[kind] = name
                self.devices[kind] = self._wrap(kind, client, name)
            if "weather" in kinds:
                self._add_safety_monitor(deadline)
            for device in self.devices.values():
                if hasattr(device, "connect_device"):
                    device.connect_device()
            mount = self.devices.get("mount")
            if isinstance(mount, AlpacaMount):
                mount.synchronise()
            for key, server in self.servers.items():
                server.on_reconnect(lambda key=key: self._set_up_again(key))
        except BaseException:
            self.close()
            raise

    def _server(self, address: AlpacaAddress) -> AlpacaServer:
        key = (address.host, address.port)
        if key not in self.servers:
            self.servers[key] = AlpacaServer(address.host, address.port, timeout_s=self.settings.timeout_s)
        return self.servers[key]

    def _probe(self, client, address: AlpacaAddress, deadline: float) -> str | None:
        """The device's Name; None when the server has no such device; waits for a server that is not
        up yet until ``deadline`` (then DeviceDisconnected)."""
        while True:
            try:
                name = client.call("name", lambda: client.Name)
                return str(name) or f"{client.device_type} {address.number}"
            except (DeviceNotFound, DeviceRefused) as exc:
                logger.warning("Alpaca server %s:%s has no %s %s (%s)", address.host, address.port, client.device_type,
                               address.number, exc.detail)
                return None
            except DeviceError as exc:
                if time.monotonic() >= deadline:
                    raise DeviceDisconnected(f"cannot reach the Alpaca server {address.host}:{address.port} "
                                             f"({exc.detail})") from exc
                time.sleep(0.1)

    def _wrap(self, kind: str, client, name: str):
        if kind == "mount":
            return AlpacaMount(client, self.executor, name, self.site)
        if kind == "dome":
            return AlpacaDome(client, self.executor, name)
        if kind == "filter_wheel":
            return AlpacaFilterWheel(client, self.executor, name)
        if kind == "camera":
            return AlpacaCamera(client, self.executor, name, imagebytes=self.settings.imagebytes)
        if kind == "focuser":
            return AlpacaFocuser(client, self.executor, name)
        if kind == "weather":
            return AlpacaWeather(client, self.executor, name)
        raise ValueError(kind)

    def _add_safety_monitor(self, deadline: float) -> None:
        address = self.settings.address("safety_monitor")
        if address is None:
            return
        client = make_client("safetymonitor", self._server(address), address.number)
        name = self._probe(client, address, deadline)
        if name is None:
            return
        self.addresses["safety_monitor"] = address
        if not client.call("connected", lambda: client.Connected):
            client.call("connect", lambda: setattr(client, "Connected", True))
        weather = self.devices.get("weather")
        if isinstance(weather, AlpacaWeather):
            weather.safety = client
        else:
            self.devices["weather"] = SafetyOnlyWeather(client, name)
            self.names["weather"] = name

    def _set_up_again(self, key: tuple[str, int]) -> None:
        """The server came back (maybe restarted): forget what was learnt, connect, site and time again."""
        for kind, device in self.devices.items():
            address = self.addresses.get(kind)
            if address is None or (address.host, address.port) != key:
                continue
            if hasattr(device, "reset"):
                device.reset()
            if hasattr(device, "connect_device"):
                device.connect_device()
            if isinstance(device, AlpacaMount):
                device.synchronise()
        safety = self.addresses.get("safety_monitor")
        weather = self.devices.get("weather")
        client = getattr(weather, "safety", None)
        if safety is not None and client is not None and (safety.host, safety.port) == key:
            if not client.call("connected", lambda: client.Connected):
                client.call("connect", lambda: setattr(client, "Connected", True))

    @property
    def connected(self) -> bool:
        return not any(server.lost for server in self.servers.values())

    def wait_connected(self, timeout_s: float = 10.0) -> None:
        """Block until every server answers, then set its devices up again (Connected, site and time):
        a server restarted between two calls is not noticed otherwise."""
        deadline = time.monotonic() + timeout_s
        for key, server in self.servers.items():
            client = self._a_client_on(key)
            if client is None:
                continue
            while True:
                try:
                    client.call("connected", lambda c=client: c.Connected)
                    break
                except DeviceError as exc:
                    if time.monotonic() >= deadline:
                        raise DeviceDisconnected(f"Alpaca server {server.address} not back within {timeout_s} s "
                                                 f"({exc.detail})") from exc
                    time.sleep(0.1)
            self._set_up_again(key)
            server.lost = False

    def _a_client_on(self, key: tuple[str, int]):
        for kind, address in self.addresses.items():
            if (address.host, address.port) != key:
                continue
            if kind == "safety_monitor":
                return getattr(self.devices.get("weather"), "safety", None)
            device = self.devices.get(kind)
            if device is not None:
                return getattr(device, "client", None)
        return None

    def close(self) -> None:
        for device in self.devices.values():
            stop = getattr(device, "_stop_all", None)
            if stop is not None:
                stop()
        self.executor.shutdown(wait=False, cancel_futures=True)
