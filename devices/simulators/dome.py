"""Simulated dome: shutter with a motion time, rotation at a finite rate, park, slaving to the
mount's azimuth (DOME_AUTOSYNC), abort."""

from __future__ import annotations

import asyncio

from indipydriver import Device, IPyDriver

from devices.simulators.base import (
    SharedState,
    angle_diff_deg,
    connection_vector,
    handle_connection_switch,
    move_towards,
    number_vector,
    on_switch,
    publish,
    refuse_if_disconnected,
    spawn,
    switch_vector,
)

PARK_AZ_DEG = 0.0
FOLLOW_TOLERANCE_DEG = 3.0


class DomeDriver(IPyDriver):
    def __init__(self, shared: SharedState, name: str) -> None:
        self.shared = shared
        self.cfg = shared.config
        self.shutter = switch_vector(
            "DOME_SHUTTER",
            "Shutter",
            "Main Control",
            "OneOfMany",
            [("SHUTTER_OPEN", "Open", "Off"), ("SHUTTER_CLOSE", "Close", "On")],
            state="Ok",
        )
        self.park_vector = switch_vector(
            "DOME_PARK",
            "Parking",
            "Main Control",
            "OneOfMany",
            [("PARK", "Park(ed)", "On"), ("UNPARK", "UnPark(ed)", "Off")],
            state="Ok",
        )
        self.position = number_vector(
            "ABS_DOME_POSITION",
            "Absolute position",
            "Main Control",
            "rw",
            [("DOME_ABSOLUTE_POSITION", "Degrees", "%6.2f", 0, 360, 0.1, PARK_AZ_DEG)],
            state="Ok",
        )
        self.abort_motion = switch_vector(
            "DOME_ABORT_MOTION", "Abort Motion", "Main Control", "AtMostOne", [("ABORT", "Abort", "Off")]
        )
        self.autosync = switch_vector(
            "DOME_AUTOSYNC",
            "Slaving",
            "Slaving",
            "OneOfMany",
            [("DOME_AUTOSYNC_ENABLE", "Enable", "Off"), ("DOME_AUTOSYNC_DISABLE", "Disable", "On")],
            state="Idle",
        )
        self.connection = connection_vector()
        super().__init__(
            Device(
                name, [self.connection, self.shutter, self.park_vector, self.position, self.abort_motion, self.autosync]
            )
        )
        self.tasks: set = set()
        self.shutter_task: asyncio.Task | None = None
        self.rotation: asyncio.Task | None = None
        self.az_deg = PARK_AZ_DEG
        self.parked = True
        self.following = False
        self.shared.shutter_open = False

    async def hardware(self) -> None:
        while not self.stop:
            await asyncio.sleep(0.2)
            if self.following and not self.parked and (self.rotation is None or self.rotation.done()):
                target = self.shared.mount_az_deg
                if abs(angle_diff_deg(target, self.az_deg)) > FOLLOW_TOLERANCE_DEG:
                    self.rotation = spawn(self.tasks, self._rotate(target), "dome follow")

    async def _move_shutter(self, open_: bool) -> None:
        self.shared.shutter_open = False  # light is (partly) blocked until fully open
        self.shutter["SHUTTER_OPEN"] = "On" if open_ else "Off"
        self.shutter["SHUTTER_CLOSE"] = "Off" if open_ else "On"
        await publish(self.shutter, "Busy", "Shutter opening" if open_ else "Shutter closing")
        await asyncio.sleep(self.cfg.scaled(self.cfg.shutter_s))
        self.shared.shutter_open = open_
        await publish(self.shutter, "Ok", "Shutter open" if open_ else "Shutter closed")

    async def _rotate(self, target_az: float, *, parking: bool = False) -> None:
        rate = self.cfg.dome_rate_deg_s * self.cfg.speed
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(0.05)
            now = loop.time()
            self.az_deg = move_towards(self.az_deg, target_az, rate * (now - last), wrap=True)
            last = now
            self.position["DOME_ABSOLUTE_POSITION"] = f"{self.az_deg:.3f}"
            if abs(angle_diff_deg(self.az_deg, target_az)) < 1e-9:
                break
            await publish(self.position, "Busy")
        await publish(self.position, "Ok")
        if parking:
            self.parked = True
            self.park_vector["PARK"], self.park_vector["UNPARK"] = "On", "Off"
            await publish(self.park_vector, "Ok", "Dome parked")

    def start_shutter(self, open_: bool) -> asyncio.Task:
        """Start opening or closing the shutter; returns its task (also used by the watchdog)."""
        if self.shutter_task is not None and not self.shutter_task.done():
            self.shutter_task.cancel()
        self.shutter_task = spawn(self.tasks, self._move_shutter(open_), "shutter")
        return self.shutter_task

    async def start_park(self, message: str = "Parking") -> asyncio.Task:
        """Stop slaving and rotate to the park azimuth; returns the rotation task."""
        self._cancel_rotation()
        self.following = False
        if self.autosync["DOME_AUTOSYNC_ENABLE"] == "On":
            self.autosync["DOME_AUTOSYNC_ENABLE"], self.autosync["DOME_AUTOSYNC_DISABLE"] = "Off", "On"
            await publish(self.autosync, "Ok")
        await publish(self.park_vector, "Busy", message)
        self.rotation = spawn(self.tasks, self._rotate(PARK_AZ_DEG, parking=True), "dome park")
        return self.rotation

    def _cancel_rotation(self) -> bool:
        if self.rotation is not None and not self.rotation.done():
            self.rotation.cancel()
            return True
        return False

    async def rxevent(self, event) -> None:
        name = event.vectorname
        if await handle_connection_switch(self.connection, event) or \
                await refuse_if_disconnected(self.connection, event):
            return
        if name == "DOME_SHUTTER":
            member = on_switch(event)
            if member not in ("SHUTTER_OPEN", "SHUTTER_CLOSE"):
                return
            self.start_shutter(member == "SHUTTER_OPEN")
        elif name == "DOME_ABORT_MOTION":
            stopped = self._cancel_rotation()
            if self.shutter_task is not None and not self.shutter_task.done():
                self.shutter_task.cancel()
                stopped = True
                await publish(self.shutter, "Alert", "Shutter motion aborted")
            await publish(self.abort_motion, "Ok", "Motion aborted" if stopped else "Nothing to abort")
            if stopped:
                await publish(self.position, "Idle")
        elif name == "DOME_PARK":
            member = on_switch(event)
            if member == "PARK":
                await self.start_park()
            elif member == "UNPARK":
                self.parked = False
                self.park_vector["PARK"], self.park_vector["UNPARK"] = "Off", "On"
                await publish(self.park_vector, "Ok", "Dome unparked")
        elif name == "ABS_DOME_POSITION":
            if self.parked:
                await publish(self.position, "Alert", "Dome is parked")
                return
            target = event.getfloatvalue("DOME_ABSOLUTE_POSITION") % 360.0
            self._cancel_rotation()
            await publish(self.position, "Busy")
            self.rotation = spawn(self.tasks, self._rotate(target), "dome rotation")
        elif name == "DOME_AUTOSYNC":
            member = on_switch(event)
            if member == "DOME_AUTOSYNC_ENABLE" and self.parked:
                await publish(self.autosync, "Alert", "Dome is parked")
                return
            self.following = member == "DOME_AUTOSYNC_ENABLE"
            self.autosync["DOME_AUTOSYNC_ENABLE"] = "On" if self.following else "Off"
            self.autosync["DOME_AUTOSYNC_DISABLE"] = "Off" if self.following else "On"
            await publish(self.autosync, "Ok")
