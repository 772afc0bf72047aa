"""Shared pieces of the simulated observatory: the state the drivers share, vector helpers, and the
work-around for the indipyserver 0.0.6 busy loop."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from indipydriver import NumberMember, NumberVector, SwitchMember, SwitchVector, TextMember, TextVector

from devices.interfaces import Site
from devices.sky import Transient

logger = logging.getLogger("devices.simulators")

DEFAULT_NAMES = {
    "mount": "PyROS Mount",
    "dome": "PyROS Dome",
    "filter_wheel": "PyROS Filter Wheel",
    "camera": "PyROS Camera",
    "weather": "PyROS Weather",
}


def default_site() -> Site:
    """Site from PYROS_SITE_LAT/LON/ELEV, else the Observatoire de Haute-Provence."""
    return Site(
        latitude_deg=float(os.environ.get("PYROS_SITE_LAT", "43.9308")),
        longitude_deg=float(os.environ.get("PYROS_SITE_LON", "5.7133")),
        elevation_m=float(os.environ.get("PYROS_SITE_ELEV", "650")),
    )


@dataclass
class SimulatorConfig:
    speed: float = 1.0  # time factor for mechanical motions (slew, settle, shutter, filter, readout)
    seeing_fwhm_arcsec: float = 2.0
    site: Site = field(default_factory=default_site)
    names: dict = field(default_factory=lambda: dict(DEFAULT_NAMES))
    slew_rate_deg_s: float = 4.0
    settle_s: float = 1.0
    shutter_s: float = 6.0
    dome_rate_deg_s: float = 5.0
    filter_move_s_per_slot: float = 0.4
    readout_s: float = 0.5
    weather_period_s: float = 10.0
    dome_blocks_light: bool = True  # a LIGHT frame with the shutter closed sees the inside of the dome

    def scaled(self, seconds: float) -> float:
        return seconds / self.speed


@dataclass
class SharedState:
    """What one simulated device needs to know of the others (the real world links them by light
    and cables; the simulators share this object in one process)."""

    config: SimulatorConfig
    site: Site
    mount_ra_h: float = 0.0  # apparent, of date
    mount_dec_deg: float = 0.0
    mount_alt_deg: float = 90.0
    mount_az_deg: float = 0.0
    filter_name: str = "V"
    shutter_open: bool = False
    transients: list[Transient] = field(default_factory=list)
    sun_alt_deg: float = -30.0
    moon_illumination: float = 0.0
    moon_separation_deg: float = 90.0


# ---------------------------------------------------------------------------------------------
# Vector construction helpers (standard INDI members)
# ---------------------------------------------------------------------------------------------


def number_vector(name: str, label: str, group: str, perm: str, members: list[tuple], state: str = "Idle"):
    """members: (name, label, format, min, max, step, value)."""
    return NumberVector(
        name=name,
        label=label,
        group=group,
        perm=perm,
        state=state,
        numbermembers=[
            NumberMember(name=m[0], label=m[1], format=m[2], min=m[3], max=m[4], step=m[5], membervalue=m[6])
            for m in members
        ],
    )


def switch_vector(name: str, label: str, group: str, rule: str, members: list[tuple[str, str, str]], state="Idle"):
    return SwitchVector(
        name=name,
        label=label,
        group=group,
        perm="rw",
        rule=rule,
        state=state,
        switchmembers=[SwitchMember(name=m[0], label=m[1], membervalue=m[2]) for m in members],
    )


def text_vector(name: str, label: str, group: str, perm: str, members: list[tuple[str, str, str]], state="Idle"):
    return TextVector(
        name=name,
        label=label,
        group=group,
        perm=perm,
        state=state,
        textmembers=[TextMember(name=m[0], label=m[1], membervalue=m[2]) for m in members],
    )


def connection_vector():
    return switch_vector(
        "CONNECTION",
        "Connection",
        "Main Control",
        "OneOfMany",
        [("CONNECT", "Connect", "On"), ("DISCONNECT", "Disconnect", "Off")],
        state="Ok",
    )


def on_switch(event) -> str | None:
    """The member switched On in a OneOfMany newSwitchVector event."""
    for name, value in event.items():
        if value == "On":
            return name
    return None


async def handle_connection_switch(connection, event) -> bool:
    """The INDI CONNECTION switch every simulated driver has: apply a client's CONNECT/DISCONNECT.
    Returns True when `event` was that request (the caller has nothing more to do)."""
    if event.vectorname != "CONNECTION":
        return False
    member = on_switch(event)
    if member:
        connection["CONNECT"] = "On" if member == "CONNECT" else "Off"
        connection["DISCONNECT"] = "Off" if member == "CONNECT" else "On"
    await publish(connection, "Ok")
    return True


async def refuse_if_disconnected(connection, event) -> bool:
    """A real driver refuses commands while disconnected: answer Alert and return True."""
    if connection["CONNECT"] == "On":
        return False
    await publish(event.vector, "Alert", "Device not connected")
    return True


async def publish(vector, state: str | None = None, message: str = "") -> None:
    """Send the vector with all its values (so every client sees a complete, consistent state)."""
    vector.changed = True
    await vector.send_setVector(message=message, state=state, allvalues=True)


def spawn(tasks: set, coro, what: str) -> asyncio.Task:
    """Start a background task whose failure is logged (rxevent must return quickly)."""
    task = asyncio.get_running_loop().create_task(coro)
    tasks.add(task)

    def done(t: asyncio.Task) -> None:
        tasks.discard(t)
        if not t.cancelled() and t.exception() is not None:
            logger.error("%s failed", what, exc_info=t.exception())

    task.add_done_callback(done)
    return task


def angle_diff_deg(a: float, b: float) -> float:
    """a - b wrapped to [-180, 180)."""
    return (a - b + 180.0) % 360.0 - 180.0


def move_towards(current: float, target: float, max_step: float, *, wrap: bool) -> float:
    delta = angle_diff_deg(target, current) if wrap else target - current
    if abs(delta) <= max_step:
        return target % 360.0 if wrap else target
    moved = current + math.copysign(max_step, delta)
    return moved % 360.0 if wrap else moved


# ---------------------------------------------------------------------------------------------
# indipyserver 0.0.6 work-around
# ---------------------------------------------------------------------------------------------


def patch_indipyserver() -> None:
    """indipyserver 0.0.6 spins at 100% CPU after a client disconnects: its read loop treats the
    empty read at end-of-stream as "no data yet" and loops until a later write fails (~60 s, at the
    next keep-alive or broadcast). Replace the loop with one that ends on EOF (and drops a client
    that sends malformed XML, rather than resynchronising on garbage)."""
    from indipyserver import ipyserver

    if getattr(ipyserver._ClientConnection, "_pyros_patched", False):
        return

    async def _client_rx(self) -> None:
        parser = ET.XMLPullParser(events=("start", "end"))
        parser.feed(b"<root>")
        depth = 0
        root_elem = None
        for ev, el in parser.read_events():
            if ev == "start":
                depth += 1
                root_elem = el
        while self.connected:
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError("client closed the connection")  # the missing EOF check
            try:
                parser.feed(data)
            except ET.ParseError:
                logger.warning("client %s sent malformed XML: dropping the connection", self.con_id)
                raise ConnectionError("malformed XML from client") from None
            for event, element in parser.read_events():
                if event == "start":
                    depth += 1
                elif event == "end":
                    depth -= 1
                    if depth == 1:
                        if element.tag in self.TAGS:
                            if element.tag == "enableBLOB":
                                self.sendchecker.setpermissions(element)
                            else:
                                await self.xml_data_que.put((self.con_id, element))
                        if root_elem is not None:
                            root_elem.remove(element)

    ipyserver._ClientConnection._client_rx = _client_rx
    ipyserver._ClientConnection._pyros_patched = True
