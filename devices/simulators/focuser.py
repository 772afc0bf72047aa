"""Simulated absolute focuser (standard INDI focuser properties) whose position blurs the camera's stars.

A stepper moves at ``focuser_rate_steps_s`` (times ``--speed``); ``FOCUS_TEMPERATURE`` is the tube
temperature, drifting slowly in real time. The best focus follows the temperature
(:class:`~devices.simulators.base.FocusModel`), and the camera renders stars with
FWHM^2 = seeing^2 + (blur * (position - best(T)))^2. ``FWHM.SIM_FWHM`` reports that FWHM, as the
focuser of Debian's simulators does. Simulator-only: ``SIM_FOCUS`` sets the model and the
temperature, ``SIM_BEST_FOCUS`` (read-only) tells tests where the best focus is now."""

from __future__ import annotations

import asyncio
import time

from indipydriver import Device, IPyDriver

from devices.simulators.base import (
    SharedState,
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

TICK_S = 0.05
REPORT_S = 0.1  # position updates while moving
TEMPERATURE_REPORT_S = 5.0  # FOCUS_TEMPERATURE at least this often (and whenever it changes by 0.01 C)

# SIM_FOCUS member -> FocusModel attribute
MODEL_MEMBERS = {
    "BEST_AT_T0": "best_at_t0",
    "T0": "t0_c",
    "SLOPE": "slope_steps_per_c",
    "BLUR": "blur_arcsec_per_step",
    "DRIFT": "drift_c_per_h",
}


class FocuserDriver(IPyDriver):
    def __init__(self, shared: SharedState, name: str) -> None:
        self.shared = shared
        self.cfg = shared.config
        self.model = self.cfg.focus
        self.max_steps = int(self.cfg.focuser_max_steps)
        self._clock = time.monotonic
        # temperature = set_c + drift * (t - set_at) / 3600, in real time
        self._temperature_set_c = self.model.start_temperature_c
        self._temperature_set_at = self._clock()
        self.position = float(round(self.model.best_focus(self.model.start_temperature_c)))
        self.position = min(max(self.position, 0.0), float(self.max_steps))
        self.absolute = number_vector(
            "ABS_FOCUS_POSITION",
            "Absolute Position",
            "Main Control",
            "rw",
            [("FOCUS_ABSOLUTE_POSITION", "Steps", "%6.0f", 0, self.max_steps, 1, int(self.position))],
            state="Ok",
        )
        self.relative = number_vector(
            "REL_FOCUS_POSITION",
            "Relative Position",
            "Main Control",
            "rw",
            [("FOCUS_RELATIVE_POSITION", "Steps", "%6.0f", 0, self.max_steps, 1, 0)],
            state="Ok",
        )
        self.motion = switch_vector(
            "FOCUS_MOTION",
            "Direction",
            "Main Control",
            "OneOfMany",
            [("FOCUS_INWARD", "Focus In", "On"), ("FOCUS_OUTWARD", "Focus Out", "Off")],
            state="Ok",
        )
        self.abort_vector = switch_vector(
            "FOCUS_ABORT_MOTION", "Abort Motion", "Main Control", "AtMostOne", [("ABORT", "Abort", "Off")]
        )
        self.max_vector = number_vector(
            "FOCUS_MAX",
            "Max. Position",
            "Main Control",
            "rw",
            [("FOCUS_MAX_VALUE", "Steps", "%6.0f", 1000, 1_000_000, 1000, self.max_steps)],
            state="Ok",
        )
        self.temperature = number_vector(
            "FOCUS_TEMPERATURE",
            "Temperature",
            "Main Control",
            "ro",
            [("TEMPERATURE", "Celsius", "%6.2f", -50, 70, 0, round(self._temperature_c(), 2))],
            state="Ok",
        )
        self.fwhm = number_vector(
            "FWHM", "FWHM", "Simulation", "ro", [("SIM_FWHM", "FWHM (arcsec)", "%4.2f", 0, 600, 0, 0.0)], state="Ok"
        )
        m = self.model
        self.sim_focus = number_vector(
            "SIM_FOCUS",
            "Focus model",
            "Simulation",
            "rw",
            [
                ("BEST_AT_T0", "Best focus at T0 (steps)", "%.1f", 0, 1_000_000, 0, m.best_at_t0),
                ("T0", "T0 (C)", "%.2f", -50, 70, 0, m.t0_c),
                ("SLOPE", "Best focus slope (steps/C)", "%.2f", -10_000, 10_000, 0, m.slope_steps_per_c),
                ("BLUR", "Blur (arcsec/step)", "%.5f", 0, 10, 0, m.blur_arcsec_per_step),
                ("DRIFT", "Temperature drift (C/h)", "%.3f", -100, 100, 0, m.drift_c_per_h),
                ("TEMPERATURE", "Temperature now (C)", "%.2f", -50, 70, 0, self._temperature_set_c),
            ],
            state="Ok",
        )
        self.best = number_vector(
            "SIM_BEST_FOCUS",
            "Best focus now",
            "Simulation",
            "ro",
            [
                ("BEST_FOCUS", "Best focus (steps)", "%.1f", 0, 1_000_000, 0, 0.0),
                ("TEMPERATURE", "Temperature (C)", "%.3f", -50, 70, 0, 0.0),
            ],
            state="Ok",
        )
        self.connection = connection_vector()
        super().__init__(
            Device(
                name,
                [
                    self.connection,
                    self.absolute,
                    self.relative,
                    self.motion,
                    self.abort_vector,
                    self.max_vector,
                    self.temperature,
                    self.fwhm,
                    self.sim_focus,
                    self.best,
                ],
            )
        )
        self.tasks: set = set()
        self.move: asyncio.Task | None = None
        self._last_temperature_sent = (None, 0.0)
        self._refresh_model_values()

    # -- model ---------------------------------------------------------------------------------

    def _temperature_c(self) -> float:
        hours = (self._clock() - self._temperature_set_at) / 3600.0
        return self._temperature_set_c + self.model.drift_c_per_h * hours

    def _refresh_model_values(self) -> None:
        """Share position and temperature with the camera; update the reported values."""
        temperature = self._temperature_c()
        self.shared.focus_position = self.position
        self.shared.focus_temperature_c = temperature
        self.best["BEST_FOCUS"] = f"{self.model.best_focus(temperature):.1f}"
        self.best["TEMPERATURE"] = f"{temperature:.3f}"
        fwhm = self.model.fwhm_arcsec(self.shared.seeing_fwhm_arcsec, self.position, temperature)
        self.fwhm["SIM_FWHM"] = f"{fwhm:.2f}"
        self.temperature["TEMPERATURE"] = f"{temperature:.2f}"

    async def _publish_model(self) -> None:
        self._refresh_model_values()
        await publish(self.best, "Ok")
        await publish(self.fwhm, "Ok")

    # -- hardware loop: temperature --------------------------------------------------------------

    async def hardware(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.stop:
            await asyncio.sleep(0.5)
            self._refresh_model_values()
            value = self.temperature["TEMPERATURE"]
            last_value, last_at = self._last_temperature_sent
            if value != last_value or loop.time() - last_at >= TEMPERATURE_REPORT_S:
                self._last_temperature_sent = (value, loop.time())
                await publish(self.temperature, "Ok")
                await publish(self.best, "Ok")
                await publish(self.fwhm, "Ok")

    # -- motion ----------------------------------------------------------------------------------

    async def _move(self, target: int, *, relative: bool = False) -> None:
        rate = self.cfg.focuser_rate_steps_s * self.cfg.speed
        loop = asyncio.get_running_loop()
        last = loop.time()
        next_report = last + REPORT_S
        while True:
            await asyncio.sleep(TICK_S)
            now = loop.time()
            self.position = move_towards(self.position, float(target), rate * (now - last), wrap=False)
            last = now
            self._refresh_model_values()
            self.absolute["FOCUS_ABSOLUTE_POSITION"] = f"{self.position:.0f}"
            if self.position == float(target):
                break
            if now >= next_report:
                next_report = now + REPORT_S
                await publish(self.absolute, "Busy")
        self.absolute["FOCUS_ABSOLUTE_POSITION"] = target
        await publish(self.absolute, "Ok", f"Focuser at {target}")
        if relative:
            await publish(self.relative, "Ok")
        await self._publish_model()

    def _moving(self) -> bool:
        return self.move is not None and not self.move.done()

    async def _start_move(self, target: float, *, relative: bool = False) -> None:
        if not 0 <= target <= self.max_steps:
            vector = self.relative if relative else self.absolute
            await publish(vector, "Alert", f"Position {target:.0f} outside 0-{self.max_steps}")
            return
        if self._moving():
            self.move.cancel()
        await publish(self.absolute, "Busy", f"Moving to {target:.0f}")
        if relative:
            await publish(self.relative, "Busy")
        self.move = spawn(self.tasks, self._move(int(round(target)), relative=relative), "focuser move")

    # -- client requests -------------------------------------------------------------------------

    async def rxevent(self, event) -> None:
        name = event.vectorname
        if await handle_connection_switch(self.connection, event) or await refuse_if_disconnected(
            self.connection, event
        ):
            return
        if name == "ABS_FOCUS_POSITION":
            try:
                target = event.getfloatvalue("FOCUS_ABSOLUTE_POSITION")
            except (KeyError, TypeError, ValueError):
                await publish(self.absolute, "Alert", "Invalid focuser position")
                return
            await self._start_move(target)
        elif name == "REL_FOCUS_POSITION":
            try:
                steps = event.getfloatvalue("FOCUS_RELATIVE_POSITION")
            except (KeyError, TypeError, ValueError):
                await publish(self.relative, "Alert", "Invalid relative move")
                return
            self.relative["FOCUS_RELATIVE_POSITION"] = steps
            inward = self.motion["FOCUS_INWARD"] == "On"
            await self._start_move(self.position - steps if inward else self.position + steps, relative=True)
        elif name == "FOCUS_MOTION":
            member = on_switch(event)
            if member in ("FOCUS_INWARD", "FOCUS_OUTWARD"):
                self.motion["FOCUS_INWARD"] = "On" if member == "FOCUS_INWARD" else "Off"
                self.motion["FOCUS_OUTWARD"] = "On" if member == "FOCUS_OUTWARD" else "Off"
            await publish(self.motion, "Ok")
        elif name == "FOCUS_ABORT_MOTION":
            moving = self._moving()
            if moving:
                self.move.cancel()
                self.move = None
            await publish(self.abort_vector, "Ok", "Focuser stopped" if moving else "Nothing to abort")
            if moving:
                self.absolute["FOCUS_ABSOLUTE_POSITION"] = f"{self.position:.0f}"
                await publish(self.absolute, "Idle", "Focuser motion aborted")
                if self.relative.state == "Busy":
                    await publish(self.relative, "Idle")
        elif name == "FOCUS_MAX":
            value = int(round(event.getfloatvalue("FOCUS_MAX_VALUE")))
            if not 1000 <= value <= 1_000_000 or value < self.position:
                await publish(self.max_vector, "Alert", f"Maximum {value} out of range (position {self.position:.0f})")
                return
            self.max_steps = value
            self.max_vector["FOCUS_MAX_VALUE"] = value
            await publish(self.max_vector, "Ok")
        elif name == "SIM_FOCUS":
            for member in event:
                value = event.getfloatvalue(member)
                if member == "TEMPERATURE":
                    self._temperature_set_c = value
                    self._temperature_set_at = self._clock()
                elif member in MODEL_MEMBERS:
                    setattr(self.model, MODEL_MEMBERS[member], value)
                self.sim_focus[member] = value
            await publish(self.sim_focus, "Ok")
            await publish(self.temperature, "Ok")
            await self._publish_model()
