"""Synchronous facade: ``connect()`` returns an :class:`Observatory` whose devices block until done.

Each device kind comes from one backend (``backend_choice``): INDI (default) or ASCOM Alpaca, set for
all kinds by ``PYROS_DEVICE_BACKEND`` (``indi`` | ``alpaca``) and per kind by ``PYROS_MOUNT_BACKEND``,
``PYROS_DOME_BACKEND``, ``PYROS_FILTER_WHEEL_BACKEND``, ``PYROS_CAMERA_BACKEND``,
``PYROS_WEATHER_BACKEND``, ``PYROS_FOCUSER_BACKEND``, ``PYROS_WATCHDOG_BACKEND`` (``none`` leaves a kind
out; Alpaca has no watchdog). The asyncio loop of the INDI client runs in a background thread; every
method here is a plain blocking call (Celery workers and Django stay synchronous). INDI device names are
given, taken from the environment (``PYROS_INDI_MOUNT``, ``..._DOME``, ``..._FILTER_WHEEL``,
``..._CAMERA``, ``..._WEATHER``, ``..._FOCUSER``, ``..._WATCHDOG``) or discovered from the properties
each device defines; Alpaca devices are numbered (``PYROS_ALPACA_*``, see
:mod:`devices.alpaca.connection`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from devices.alpaca.connection import AlpacaSettings

logger = logging.getLogger("devices.observatory")

KINDS = ("mount", "dome", "filter_wheel", "camera", "weather", "focuser", "watchdog")
BACKENDS = ("indi", "alpaca", "none")
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
    """Stands for a device kind the observatory does not have: any use raises DeviceNotFound."""

    def __init__(self, kind: str, where: str) -> None:
        self._kind, self._where = kind, where

    def __getattr__(self, item):
        if item.startswith("__"):
            raise AttributeError(item)
        raise DeviceNotFound(f"no {self._kind} {self._where}")

    def __bool__(self) -> bool:
        return False


def backend_choice(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Backend of each device kind: ``PYROS_<KIND>_BACKEND``, else ``PYROS_DEVICE_BACKEND``, else indi.
    The watchdog follows ``PYROS_DEVICE_BACKEND`` only when that is indi (Alpaca has no watchdog)."""
    env = os.environ if env is None else env
    default = env.get("PYROS_DEVICE_BACKEND", "indi").strip().lower() or "indi"
    if default not in BACKENDS:
        raise ValueError(f"PYROS_DEVICE_BACKEND={default!r}: expected one of {', '.join(BACKENDS)}")
    choice = {}
    for kind in KINDS:
        value = env.get(f"PYROS_{kind.upper()}_BACKEND", "").strip().lower()
        if not value:
            value = "none" if kind == "watchdog" and default == "alpaca" else default
        if value not in BACKENDS:
            raise ValueError(f"PYROS_{kind.upper()}_BACKEND={value!r}: expected one of {', '.join(BACKENDS)}")
        if kind == "watchdog" and value == "alpaca":
            raise ValueError("PYROS_WATCHDOG_BACKEND=alpaca: ASCOM Alpaca has no watchdog device (use indi or none)")
        choice[kind] = value
    return choice


class Observatory:
    """The devices of one observatory, each from its backend. Attributes: ``mount``, ``dome``,
    ``filter_wheel``, ``camera``, ``weather``, ``focuser``, ``watchdog`` (a device the observatory does
    not have raises DeviceNotFound when used, and is false); ``names`` (kind -> device name),
    ``backends`` (kind -> "indi"/"alpaca"), ``link`` (the INDI link, None without INDI devices),
    ``alpaca`` (the Alpaca devices, None without)."""

    def __init__(self, link: IndiLink | None, names: dict[str, str], site: Site, *, devices: dict | None = None,
                 alpaca=None, backends: dict[str, str] | None = None) -> None:
        self.link = link
        self.alpaca = alpaca
        self.names = names
        self.site = site
        if devices is None:  # INDI devices from their names
            devices = _indi_devices(link, names, site)
        self.backends = backends or {kind: "indi" for kind in names}
        for kind in KINDS:
            setattr(self, kind, devices[kind] if kind in devices else _Missing(kind.replace("_", " "),
                                                                               self._where(kind)))

    def _where(self, kind: str) -> str:
        backend = self.backends.get(kind, "indi")
        if backend == "indi" and self.link is not None:
            return f"on the INDI server {self.link.host}:{self.link.port}"
        if backend == "alpaca" and self.alpaca is not None:
            return "on the Alpaca server(s) " + ", ".join(s.address for s in self.alpaca.servers.values())
        return f"(backend {backend})"

    @property
    def connected(self) -> bool:
        indi = self.link is None or self.link.connected
        return indi and (self.alpaca is None or self.alpaca.connected)

    def wait_connected(self, timeout_s: float = 10.0) -> None:
        """Block until the connections are up and every device is there again (after a server restart)."""
        deadline = time.monotonic() + timeout_s
        if self.link is not None:
            indi_names = {k: n for k, n in self.names.items() if self.backends.get(k) == "indi" and n}
            while True:
                if self.link.connected and all(
                    self.link.vector(name, _SIGNATURE[kind]) is not None for kind, name in indi_names.items()
                ):
                    break
                if time.monotonic() >= deadline:
                    raise DeviceDisconnected(
                        f"INDI server {self.link.host}:{self.link.port} not back within {timeout_s} s")
                time.sleep(0.05)
        if self.alpaca is not None:
            self.alpaca.wait_connected(max(0.5, deadline - time.monotonic()))

    def close(self) -> None:
        if self.link is not None:
            self.link.close()
        if self.alpaca is not None:
            self.alpaca.close()

    def __enter__(self) -> Observatory:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _indi_devices(link: IndiLink, names: dict[str, str], site: Site) -> dict:
    classes = {"dome": IndiDome, "filter_wheel": IndiFilterWheel, "camera": IndiCamera, "weather": IndiWeather,
               "focuser": IndiFocuser, "watchdog": IndiWatchdog}
    devices = {}
    for kind, name in names.items():
        if not name:
            continue
        devices[kind] = IndiMount(link, name, site) if kind == "mount" else classes[kind](link, name)
    return devices


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
    backends: dict[str, str] | None = None,
    alpaca: AlpacaSettings | None = None,
) -> Observatory:
    """Connect to the observatory's devices, each kind on its backend (``backends``, default
    :func:`backend_choice` from the environment).

    INDI kinds: the INDI server ``host``:``port`` (default ``PYROS_INDI_HOST``/``PYROS_INDI_PORT``, else
    127.0.0.1:7624); waits up to ``timeout_s`` for the devices; sends CONNECT to drivers that are
    disconnected (Debian's and real drivers start so), then site (``GEOGRAPHIC_COORD``) and UTC time
    (``TIME_UTC``) to the mount, again after every reconnect.
    Alpaca kinds: the devices of ``alpaca`` (default :meth:`AlpacaSettings.from_env`); Connected is set,
    site and UTC time are sent to the mount, again when a server answers after having been lost.
    Raises DeviceDisconnected when a server cannot be reached."""
    site = site or default_site()
    backends = dict(backends or backend_choice())
    for kind in KINDS:
        backends.setdefault(kind, "indi")
    indi_kinds = [k for k in KINDS if backends[k] == "indi"]
    alpaca_kinds = [k for k in KINDS if backends[k] == "alpaca"]
    devices: dict = {}
    found_names: dict[str, str] = {}
    link = None
    alpaca_devices = None
    try:
        if indi_kinds:
            link, indi_names, indi = _connect_indi(host, port, site=site, names=names, kinds=indi_kinds,
                                                   timeout_s=timeout_s, connect_devices=connect_devices, blobs=blobs)
            devices.update(indi)
            found_names.update(indi_names)
        if alpaca_kinds:
            from devices.alpaca.connection import AlpacaDevices, AlpacaSettings

            settings = alpaca or AlpacaSettings.from_env()
            alpaca_devices = AlpacaDevices(settings, alpaca_kinds, site, timeout_s=timeout_s)
            devices.update(alpaca_devices.devices)
            found_names.update(alpaca_devices.names)
            missing = [k for k in alpaca_kinds if k not in alpaca_devices.devices]
            if missing:
                logger.warning("no Alpaca %s", ", ".join(missing))
    except BaseException:
        if link is not None:
            link.close()
        raise
    observatory = Observatory(link, found_names, site, devices=devices, alpaca=alpaca_devices, backends=backends)
    if alpaca_devices is not None:
        _wire_alpaca_camera(observatory, alpaca_devices.settings)
    return observatory


def _wire_alpaca_camera(observatory: Observatory, settings: AlpacaSettings) -> None:
    """An Alpaca camera writes its FITS header from the observatory's other devices, whatever their backend."""
    from devices.alpaca.backend import AlpacaCamera, AlpacaMount

    camera = observatory.camera
    if not isinstance(camera, AlpacaCamera):
        return
    focal_m = settings.focal_length_mm / 1000.0 if settings.focal_length_mm else None
    if focal_m is None and isinstance(observatory.mount, AlpacaMount):
        focal_m = observatory.mount.focal_length_m()
    camera.use_devices(
        mount=observatory.mount or None,
        filter_wheel=observatory.filter_wheel or None,
        focuser=observatory.focuser or None,
        site=observatory.site,
        focal_length_m=focal_m,
        rotation_deg=settings.camera_rotation_deg,
    )


def _connect_indi(host, port, *, site: Site, names, kinds: list[str], timeout_s: float, connect_devices: bool,
                  blobs: bool) -> tuple[IndiLink, dict[str, str], dict]:
    host = host or os.environ.get("PYROS_INDI_HOST", "127.0.0.1")
    port = int(port or os.environ.get("PYROS_INDI_PORT", "7624"))
    wanted = {k: v for k, v in {**_names_from_env(), **(names or {})}.items() if k in kinds}
    # Processes that never take images (monitoring, alerts, web) pass blobs=False: one connection
    # instead of two, and indipyserver accepts at most 10 clients.
    link = IndiLink(host, port, blobs=blobs)
    mount_ref: list[IndiMount] = []

    async def on_define(device: str, vector: str) -> None:
        if vector == "CONNECTION" and connect_devices:
            vec = link.vector(device, "CONNECTION")
            if vec is not None and vec["CONNECT"] != "On":
                await link.control.send_newVector(device, "CONNECTION", members={"CONNECT": "On", "DISCONNECT": "Off"})
        if mount_ref and vector in ("GEOGRAPHIC_COORD", "TIME_UTC"):
            mount = mount_ref[0]
            if device == mount.name:
                asyncio.get_running_loop().create_task(mount.synchronise())

    link.on_device_defined(on_define)
    deadline = time.monotonic() + timeout_s
    while not link.connected and time.monotonic() < deadline:
        time.sleep(0.01)
    if not link.connected:
        link.close()
        raise DeviceDisconnected(f"cannot connect to the INDI server {host}:{port}")
    found = _discover(link, wanted, max(0.5, deadline - time.monotonic()))
    found = {k: v for k, v in found.items() if k in kinds}
    devices = _indi_devices(link, found, site)
    if isinstance(devices.get("mount"), IndiMount):
        mount_ref.append(devices["mount"])
    missing = [k for k in kinds if k not in found]
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
    if mount_ref:
        try:
            link.call(
                link.require_vector(found["mount"], "EQUATORIAL_EOD_COORD", max(1.0, deadline - time.monotonic())),
                timeout_s + 2,
            )
            link.call(mount_ref[0].synchronise(), 5.0)
        except DeviceNotFound:
            logger.warning("mount %s defines no EQUATORIAL_EOD_COORD", found["mount"])
    return link, found, devices
