"""Simulated dead-man watchdog, modelled on libindi's ``indi_watchdog`` (Debian indi-bin 1.9.9).

Same properties as the real driver, for the parts simulated here:

* ``WATCHDOG_HEARTBEAT.WATCHDOG_HEARTBEAT_VALUE``: the threshold in seconds (0 disables). Every
  ``newNumberVector`` of it from a client is a heartbeat: it restarts the timer.
* ``WATCHDOG_Trigger.TRIGGER_CLIENT``: On arms the client watchdog (refused while the threshold is
  0, as the real driver does), Off disarms it. Arming again resets a triggered watchdog.
* ``WATCHDOG_SHUTDOWN`` (``PARK_MOUNT``, ``PARK_DOME``, any of many): what the shutdown does; both
  On by default here. Busy while it runs, Ok when done, Alert when a step failed.
* ``ACTIVE_DEVICES`` (``ACTIVE_TELESCOPE``, ``ACTIVE_DOME``): the devices it parks. The real driver
  opens its own INDI client connection to them; this one acts on the simulated drivers in the same
  process (parking the dome here also closes its shutter).

Added (simulator): ``WATCHDOG_STATE`` (read-only switch ``IDLE``/``ARMED``/``TRIGGERED``) and
``WATCHDOG_TIMER`` (read-only ``HEARTBEAT_AGE`` s, -1 before any heartbeat, and ``TIME_LEFT`` s).
The threshold is real time, not divided by ``--speed`` (the park motions are)."""

from __future__ import annotations

import asyncio
import logging
import time

from indipydriver import Device, IPyDriver, SwitchMember, SwitchVector

from devices.simulators.base import (
    SharedState,
    connection_vector,
    handle_connection_switch,
    number_vector,
    publish,
    refuse_if_disconnected,
    spawn,
    switch_vector,
    text_vector,
)

logger = logging.getLogger("devices.simulators")

TICK_S = 0.05
TIMER_REPORT_S = 1.0
STATES = ("IDLE", "ARMED", "TRIGGERED")
STATE_LIGHT = {"IDLE": "Idle", "ARMED": "Ok", "TRIGGERED": "Alert"}


class WatchdogDriver(IPyDriver):
    def __init__(self, shared: SharedState, name: str, timeout_s: float | None = None) -> None:
        self.shared = shared
        self.cfg = shared.config
        threshold = float(self.cfg.watchdog_timeout_s if timeout_s is None else timeout_s)
        self.heartbeat_vector = number_vector(
            "WATCHDOG_HEARTBEAT",
            "Heart beat",
            "Main Control",
            "rw",
            [("WATCHDOG_HEARTBEAT_VALUE", "Threshold (s)", "%.3f", 0, 3600, 1, threshold)],
            state="Idle",
        )
        self.trigger = switch_vector(
            "WATCHDOG_Trigger", "Trigger", "Main Control", "AnyOfMany", [("TRIGGER_CLIENT", "Client", "Off")]
        )
        self.shutdown_vector = switch_vector(
            "WATCHDOG_SHUTDOWN",
            "Shutdown",
            "Main Control",
            "AnyOfMany",
            [("PARK_MOUNT", "Park Mount", "On"), ("PARK_DOME", "Park Dome", "On")],
        )
        self.active = text_vector(
            "ACTIVE_DEVICES",
            "Active devices",
            "Options",
            "rw",
            [
                ("ACTIVE_TELESCOPE", "Telescope", self.cfg.names["mount"]),
                ("ACTIVE_DOME", "Dome", self.cfg.names["dome"]),
            ],
            state="Ok",
        )
        self.state_vector = SwitchVector(
            name="WATCHDOG_STATE",
            label="State",
            group="Main Control",
            perm="ro",
            rule="OneOfMany",
            state="Idle",
            switchmembers=[
                SwitchMember(name=s, label=s.capitalize(), membervalue="On" if s == "IDLE" else "Off") for s in STATES
            ],
        )
        self.timer = number_vector(
            "WATCHDOG_TIMER",
            "Timer",
            "Main Control",
            "ro",
            [
                ("HEARTBEAT_AGE", "Since last heartbeat (s, -1 never)", "%.2f", -1, 1e9, 0, -1),
                ("TIME_LEFT", "Before shutdown (s)", "%.2f", 0, 1e9, 0, 0),
            ],
            state="Idle",
        )
        self.connection = connection_vector()
        super().__init__(
            Device(
                name,
                [
                    self.connection,
                    self.heartbeat_vector,
                    self.trigger,
                    self.shutdown_vector,
                    self.active,
                    self.state_vector,
                    self.timer,
                ],
            )
        )
        self.tasks: set = set()
        self.status = "IDLE"
        self.last_heartbeat: float | None = None  # time.monotonic() of the last heartbeat
        self.shutdown_task: asyncio.Task | None = None

    # -- state -----------------------------------------------------------------------------------

    @property
    def threshold_s(self) -> float:
        return float(self.heartbeat_vector["WATCHDOG_HEARTBEAT_VALUE"])

    def _shutdown_running(self) -> bool:
        return self.shutdown_task is not None and not self.shutdown_task.done()

    def _update_timer(self) -> None:
        now = time.monotonic()
        age = -1.0 if self.last_heartbeat is None else now - self.last_heartbeat
        left = max(0.0, self.threshold_s - age) if self.status == "ARMED" and age >= 0 else 0.0
        self.timer["HEARTBEAT_AGE"] = f"{age:.2f}"
        self.timer["TIME_LEFT"] = f"{left:.2f}"

    async def _publish_timer(self) -> None:
        self._update_timer()
        await publish(self.timer, "Ok" if self.status == "ARMED" else STATE_LIGHT[self.status])

    async def _set_status(self, status: str, message: str = "") -> None:
        self.status = status
        for s in STATES:
            self.state_vector[s] = "On" if s == status else "Off"
        self.trigger["TRIGGER_CLIENT"] = "On" if status in ("ARMED", "TRIGGERED") else "Off"
        await publish(self.state_vector, STATE_LIGHT[status], message)
        await self._publish_timer()

    # -- hardware loop: the timer ----------------------------------------------------------------

    async def hardware(self) -> None:
        next_report = 0.0
        while not self.stop:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            if (
                self.status == "ARMED"
                and self.last_heartbeat is not None
                and now - self.last_heartbeat > self.threshold_s
            ):
                await self._fire()
                next_report = now + TIMER_REPORT_S
            elif self.status == "ARMED" and now >= next_report:
                next_report = now + TIMER_REPORT_S
                await self._publish_timer()

    async def _fire(self) -> None:
        age = time.monotonic() - (self.last_heartbeat or 0.0)
        logger.warning("watchdog: no heartbeat for %.1f s (threshold %.1f s): shutting down", age, self.threshold_s)
        await self._set_status("TRIGGERED", f"No heartbeat for {age:.1f} s: executing shutdown procedure")
        self.shutdown_task = spawn(self.tasks, self._shutdown(), "watchdog shutdown")

    async def _shutdown(self) -> None:
        """Park the mount and close/park the dome at once (the real driver's 'mount ignored' policy)."""
        await publish(
            self.shutdown_vector, "Busy", "Warning! Heartbeat threshold timed out, executing shutdown procedure..."
        )
        errors: list[str] = []
        tasks: list[asyncio.Task] = []
        drivers = self.shared.drivers
        if self.shutdown_vector["PARK_MOUNT"] == "On":
            mount = drivers.get(self.active["ACTIVE_TELESCOPE"])
            if mount is None or not hasattr(mount, "start_park"):
                errors.append(f"no mount {self.active['ACTIVE_TELESCOPE']!r}")
            elif mount.connection["CONNECT"] != "On":
                errors.append("mount not connected")
            else:
                tasks.append(await mount.start_park("Parking (watchdog)"))
        if self.shutdown_vector["PARK_DOME"] == "On":
            dome = drivers.get(self.active["ACTIVE_DOME"])
            if dome is None or not hasattr(dome, "start_park"):
                errors.append(f"no dome {self.active['ACTIVE_DOME']!r}")
            elif dome.connection["CONNECT"] != "On":
                errors.append("dome not connected")
            else:
                tasks.append(dome.start_shutter(False))
                tasks.append(await dome.start_park("Parking (watchdog)"))
        results = await asyncio.gather(*tasks, return_exceptions=True)
        errors += [f"{type(r).__name__} {r}".strip() for r in results if isinstance(r, BaseException)]
        if errors:
            await publish(self.shutdown_vector, "Alert", "Shutdown procedure failed: " + "; ".join(errors))
        else:
            await publish(self.shutdown_vector, "Ok", "Shutdown procedure complete.")

    # -- client requests -------------------------------------------------------------------------

    async def rxevent(self, event) -> None:
        name = event.vectorname
        if await handle_connection_switch(self.connection, event):
            if self.connection["CONNECT"] != "On" and self.status != "IDLE":
                await self._set_status("IDLE", "Watchdog is disabled.")
            return
        if await refuse_if_disconnected(self.connection, event):
            return
        if name == "WATCHDOG_HEARTBEAT":
            if self._shutdown_running():
                await publish(
                    self.heartbeat_vector, "Alert", "Cannot change heart beat while shutdown is in progress..."
                )
                return
            try:
                value = event.getfloatvalue("WATCHDOG_HEARTBEAT_VALUE")
            except (KeyError, TypeError, ValueError):
                await publish(self.heartbeat_vector, "Alert", "Invalid heart beat threshold")
                return
            if not 0.0 <= value <= 3600.0:
                await publish(self.heartbeat_vector, "Alert", f"Threshold {value:g} s out of range 0-3600 s")
                return
            if self.status == "TRIGGERED":
                await publish(self.heartbeat_vector, "Alert", "Watchdog has triggered: arm it again (WATCHDOG_Trigger)")
                return
            self.heartbeat_vector["WATCHDOG_HEARTBEAT_VALUE"] = value
            self.last_heartbeat = time.monotonic()
            if value == 0.0 and self.status == "ARMED":
                await self._set_status("IDLE", "Client Watchdog is disabled.")
            else:
                await self._publish_timer()  # before the answer: a client sees the new age with it
            await publish(self.heartbeat_vector, "Ok")
        elif name == "WATCHDOG_Trigger":
            wanted = event.get("TRIGGER_CLIENT", self.trigger["TRIGGER_CLIENT"])
            if wanted == "On":
                if self.threshold_s <= 0.0:
                    await publish(self.trigger, "Alert", "Heart beat timeout should be set first.")
                    return
                if self._shutdown_running():
                    await publish(self.trigger, "Alert", "Shutdown in progress: arm the watchdog when it is done")
                    return
                self.last_heartbeat = time.monotonic()
                if self.shutdown_vector.state != "Idle":
                    await publish(self.shutdown_vector, "Idle")
                await self._set_status(
                    "ARMED",
                    "Client Watchdog is enabled. Shutdown is triggered when no heart beat is received in "
                    f"{self.threshold_s:g} seconds.",
                )
            else:
                await self._set_status("IDLE", "Client Watchdog is disabled.")
            await publish(self.trigger, "Ok")
        elif name == "WATCHDOG_SHUTDOWN":
            if self._shutdown_running():
                await publish(self.shutdown_vector, "Busy", "Shutdown in progress")
                return
            for member, value in event.items():
                if member in ("PARK_MOUNT", "PARK_DOME"):
                    self.shutdown_vector[member] = value
            await publish(self.shutdown_vector, "Ok")
        elif name == "ACTIVE_DEVICES":
            if self._shutdown_running():
                await publish(self.active, "Alert", "Cannot change devices names while shutdown is in progress...")
                return
            for member, value in event.items():
                self.active[member] = value
            await publish(self.active, "Ok")
