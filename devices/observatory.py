"""Synchronous facade: ``connect()`` returns an :class:`Observatory` whose devices block until done.

The asyncio loop of the INDI client runs in a background thread; every method here is a plain
blocking call (Celery workers and Django stay synchronous). Device names are given, taken from
the environment (``PYROS_INDI_MOUNT``, ``..._DOME``, ``..._FILTER_WHEEL``, ``..._CAMERA``,
``..._WEATHER``, ``..._FOCUSER``, ``..._WATCHDOG``) or discovered from the properties each device defines.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from devices.errors import DeviceDisconnected, DeviceNotFound
from devices.indi.backend import (
    IndiCamera,
    IndiDome,
    IndiFilterWheel,
    IndiFocuser,
    IndiMount,
    IndiWatchdog,
    IndiWeather,
)
from devices.indi.link import IndiLink
from devices.interfaces import Site

logger = logging.getLogger("devices.observatory")

KINDS = ("mount", "dome", "filter_wheel", "camera", "weather", "focuser", "watchdog")
# DRIVER_INFO.DRIVER_INTERFACE bits (libindi basedevice.h); a watchdog is only an AUX (1 << 15) device
_INTERFACE_BITS = {
    "mount": 1,
    "camera": 2,
    "focuser": 8,
    "filter_wheel": 16,
    "dome": 32,
    "weather": 128,
    "watchdog": 0,  # found by WATCHDOG_HEARTBEAT only
}
# properties that identify a device kind when DRIVER_INFO is absent (the built-in simulators)
_SIGNATURE = {
    "mount": "EQUATORIAL_EOD_COORD",
    "dome": "DOME_SHUTTER",
    "filter_wheel": "FILTER_SLOT",
    "camera": "CCD_EXPOSURE",
    "weather": "WEATHER_PARAMETERS",
    "focuser": "ABS_FOCUS_POSITION",
    "watchdog": "WATCHDOG_HEARTBEAT",
}


def default_site() -> Site:
    from devices.simulators.base import default_site as site_from_env

    return site_from_env()


class _Missing:
    """Stands for a device kind the server does not provide: any use raises DeviceNotFound."""

    def __init__(self, kind: str, host: str, port: int) -> None:
        self._kind, self._where = kind, f"{host}:{port}"

    def __getattr__(self, item):
        raise DeviceNotFound(f"no {self._kind} on the INDI server {self._where}")

    def __bool__(self) -> bool:
        return False


class Observatory:
    """The devices of one INDI server. Attributes: ``mount``, ``dome``, ``filter_wheel``,
    ``camera``, ``weather``, ``focuser``, ``watchdog`` (a device missing on the server raises
    DeviceNotFound when used)."""

    def __init__(self, link: IndiLink, names: dict[str, str], site: Site) -> None:
        self.link = link
        self.names = names
        self.site = site
        self.mount = (
            IndiMount(link, names["mount"], site) if names.get("mount") else _Missing("mount", link.host, link.port)
        )
        self.dome = IndiDome(link, names["dome"]) if names.get("dome") else _Missing("dome", link.host, link.port)
        self.filter_wheel = (
            IndiFilterWheel(link, names["filter_wheel"])
            if names.get("filter_wheel")
            else _Missing("filter wheel", link.host, link.port)
        )
        self.camera = (
            IndiCamera(link, names["camera"]) if names.get("camera") else _Missing("camera", link.host, link.port)
        )
        self.weather = (
            IndiWeather(link, names["weather"])
            if names.get("weather")
            else _Missing("weather station", link.host, link.port)
        )
        self.focuser = (
            IndiFocuser(link, names["focuser"]) if names.get("focuser") else _Missing("focuser", link.host, link.port)
        )
        self.watchdog = (
            IndiWatchdog(link, names["watchdog"])
            if names.get("watchdog")
            else _Missing("watchdog", link.host, link.port)
        )

    @property
    def connected(self) -> bool:
        return self.link.connected

    def wait_connected(self, timeout_s: float = 10.0) -> None:
        """Block until the control connection is up and every device has defined its properties again
        (after a server restart)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.link.connected and all(
                self.link.vector(name, _SIGNATURE[kind]) is not None for kind, name in self.names.items() if name
            ):
                return
            time.sleep(0.05)
        raise DeviceDisconnected(f"INDI server {self.link.host}:{self.link.port} not back within {timeout_s} s")

    def close(self) -> None:
        self.link.close()

    def __enter__(self) -> Observatory:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _names_from_env() -> dict[str, str]:
    return {
        kind: os.environ[f"PYROS_INDI_{kind.upper()}"] for kind in KINDS if os.environ.get(f"PYROS_INDI_{kind.upper()}")
    }


def _discover(link: IndiLink, wanted: dict[str, str], timeout_s: float) -> dict[str, str]:
    """Device name per kind: given names first, then DRIVER_INFO interface bits, then properties."""
    deadline = time.monotonic() + timeout_s
    stable_since, last = time.monotonic(), None
    while time.monotonic() < deadline:
        devices = tuple(sorted(link.devices()))
        if devices != last:
            last, stable_since = devices, time.monotonic()
        # given names all present and nothing new for 0.3 s: discovery done
        if devices and all(n in devices for n in wanted.values()) and time.monotonic() - stable_since > 0.3:
            if len(wanted) == len(KINDS) or time.monotonic() - stable_since > 0.6:
                break
        time.sleep(0.02)
    names = dict(wanted)
    devices = link.devices()
    for kind in KINDS:
        if kind in names:
            continue
        candidates = []
        for device in devices:
            iface = link.value(device, "DRIVER_INFO", "DRIVER_INTERFACE")
            bits = int(iface) if iface and iface.isdigit() else None
            has_sig = link.vector(device, _SIGNATURE[kind]) is not None
            if (bits is not None and bits & _INTERFACE_BITS[kind]) or has_sig:
                # a camera with a built-in wheel (Debian's CCD Simulator) only if no separate wheel
                penalty = 1 if kind == "filter_wheel" and (bits or 0) & _INTERFACE_BITS["camera"] else 0
                candidates.append((penalty, device))
        if candidates:
            names[kind] = sorted(candidates)[0][1]
    return names


def connect(
    host: str | None = None,
    port: int | None = None,
    *,
    site: Site | None = None,
    names: dict[str, str] | None = None,
    timeout_s: float = 10.0,
    connect_devices: bool = True,
    blobs: bool = True,
) -> Observatory:
    """Connect to an INDI server (default ``PYROS_INDI_HOST``/``PYROS_INDI_PORT``, else 127.0.0.1:7624).

    Waits up to ``timeout_s`` for the devices; sends CONNECT to drivers that are disconnected
    (Debian's and real drivers start so), then site (``GEOGRAPHIC_COORD``) and UTC time
    (``TIME_UTC``) to the mount, again after every reconnect. Raises DeviceDisconnected when the
    server cannot be reached."""
    host = host or os.environ.get("PYROS_INDI_HOST", "127.0.0.1")
    port = int(port or os.environ.get("PYROS_INDI_PORT", "7624"))
    site = site or default_site()
    wanted = {**_names_from_env(), **(names or {})}
    # Processes that never take images (monitoring, alerts, web) pass blobs=False: one connection
    # instead of two, and indipyserver accepts at most 10 clients.
    link = IndiLink(host, port, blobs=blobs)
    observatory_ref: list[Observatory] = []

    async def on_define(device: str, vector: str) -> None:
        if vector == "CONNECTION" and connect_devices:
            vec = link.vector(device, "CONNECTION")
            if vec is not None and vec["CONNECT"] != "On":
                await link.control.send_newVector(device, "CONNECTION", members={"CONNECT": "On", "DISCONNECT": "Off"})
        if observatory_ref and vector in ("GEOGRAPHIC_COORD", "TIME_UTC"):
            mount = observatory_ref[0].mount
            if isinstance(mount, IndiMount) and device == mount.name:
                asyncio.get_running_loop().create_task(mount.synchronise())

    link.on_device_defined(on_define)
    deadline = time.monotonic() + timeout_s
    while not link.connected and time.monotonic() < deadline:
        time.sleep(0.01)
    if not link.connected:
        link.close()
        raise DeviceDisconnected(f"cannot connect to the INDI server {host}:{port}")
    found = _discover(link, wanted, max(0.5, deadline - time.monotonic()))
    observatory = Observatory(link, found, site)
    observatory_ref.append(observatory)
    missing = [k for k in KINDS if k not in found]
    if missing:
        logger.warning("INDI server %s:%s has no %s", host, port, ", ".join(missing))
    camera = found.get("camera")
    if camera and link.vector(camera, "ACTIVE_DEVICES") is not None:
        # the camera takes pointing and filter for its FITS header from these devices
        active = {
            "ACTIVE_TELESCOPE": found.get("mount"),
            "ACTIVE_FILTER": found.get("filter_wheel"),
            "ACTIVE_FOCUSER": found.get("focuser"),
        }
        active = {k: v for k, v in active.items() if v and k in link.vector(camera, "ACTIVE_DEVICES")}
        if active:
            link.call(link.send(camera, "ACTIVE_DEVICES", active), 5.0)
    watchdog = found.get("watchdog")
    if watchdog and link.vector(watchdog, "ACTIVE_DEVICES") is not None:
        # the watchdog parks these when PyROS's heartbeats stop
        vec = link.vector(watchdog, "ACTIVE_DEVICES")
        active = {"ACTIVE_TELESCOPE": found.get("mount"), "ACTIVE_DOME": found.get("dome")}
        active = {k: v for k, v in active.items() if v and k in vec and vec[k] != v}
        if active:
            link.call(link.send(watchdog, "ACTIVE_DEVICES", active), 5.0)
    if isinstance(observatory.mount, IndiMount):
        try:
            link.call(
                link.require_vector(found["mount"], "EQUATORIAL_EOD_COORD", max(1.0, deadline - time.monotonic())),
                timeout_s + 2,
            )
            link.call(observatory.mount.synchronise(), 5.0)
        except DeviceNotFound:
            logger.warning("mount %s defines no EQUATORIAL_EOD_COORD", found["mount"])
    return observatory
