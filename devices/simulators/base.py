"""Shared pieces of the simulated observatory: the state the drivers share and vector helpers
(the indipyserver patches live in :mod:`devices.simulators.server`)."""

from __future__ import annotations

import asyncio
import logging
import math
import os
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
    "focuser": "PyROS Focuser",
    "watchdog": "PyROS Watchdog",
}
DEFAULT_WATCHDOG_TIMEOUT_S = 60.0


def default_site() -> Site:
    """Site from PYROS_SITE_LAT/LON/ELEV, else the Observatoire de Haute-Provence."""
    return Site(
        latitude_deg=float(os.environ.get("PYROS_SITE_LAT", "43.9308")),
        longitude_deg=float(os.environ.get("PYROS_SITE_LON", "5.7133")),
        elevation_m=float(os.environ.get("PYROS_SITE_ELEV", "650")),
    )


@dataclass
class FocusModel:
    """Where the simulated telescope focuses and how stars blur away from it.

    best(T) = best_at_t0 + slope_steps_per_c * (T - t0_c)  (the tube shrinks as it cools);
    FWHM^2 = seeing^2 + (blur_arcsec_per_step * (position - best(T)))^2.
    The focuser's temperature starts at ``start_temperature_c`` and drifts by ``drift_c_per_h``
    (real time: a night cools by a few degrees); the focuser starts at the best focus."""

    best_at_t0: float = 50_000.0
    t0_c: float = 10.0
    slope_steps_per_c: float = -40.0
    blur_arcsec_per_step: float = 0.01
    start_temperature_c: float = 12.0
    drift_c_per_h: float = -0.5

    def best_focus(self, temperature_c: float) -> float:
        return self.best_at_t0 + self.slope_steps_per_c * (temperature_c - self.t0_c)

    def defocus_blur_arcsec(self, position: float, temperature_c: float) -> float:
        return abs(self.blur_arcsec_per_step * (position - self.best_focus(temperature_c)))

    def fwhm_arcsec(self, seeing_arcsec: float, position: float, temperature_c: float) -> float:
        return math.hypot(seeing_arcsec, self.defocus_blur_arcsec(position, temperature_c))


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
    focuser_rate_steps_s: float = 1000.0  # stepper speed (divided by speed like every mechanical time)
    focuser_max_steps: int = 100_000
    focus: FocusModel = field(default_factory=lambda: FocusModel())
    watchdog_timeout_s: float = DEFAULT_WATCHDOG_TIMEOUT_S  # real seconds (not divided by speed)

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
    seeing_fwhm_arcsec: float = 2.0  # the camera's SIM_SKY seeing (the focuser reports FWHM with it)
    # the focuser (None without one): the camera blurs its stars by the defocus
    focus_position: float | None = None
    focus_temperature_c: float | None = None
    # every simulated driver by device name (the watchdog parks the mount and dome directly)
    drivers: dict = field(default_factory=dict)

    def defocus_blur_arcsec(self) -> float:
        if self.focus_position is None or self.focus_temperature_c is None:
            return 0.0
        return self.config.focus.defocus_blur_arcsec(self.focus_position, self.focus_temperature_c)


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
