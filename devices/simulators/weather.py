"""Simulated weather station / PLC, with the standard INDI weather properties and the
``WEATHER_CONTROL`` vector of Debian's weather simulator (plus humidity and clouds), so tests and
demos can make the night unsafe; ``SIM_FREEZE`` makes the station stop answering (stale data).

Units follow INDI: wind and gusts in km/h, rain in mm/h, temperature in C, humidity and clouds
in %. The station's own verdict is the state of ``WEATHER_STATUS`` (Ok, Busy = warning, Alert)."""

from __future__ import annotations

import asyncio
import random

from indipydriver import Device, IPyDriver, LightMember, LightVector

from devices.simulators.base import (
    SharedState,
    connection_vector,
    handle_connection_switch,
    number_vector,
    on_switch,
    publish,
    switch_vector,
)

# name, label, (min_ok, max_ok): the station's own limits, as Debian's simulator defines them
PARAMETERS = (
    ("WEATHER_FORECAST", "Weather (0-2)", (0.0, 0.0)),
    ("WEATHER_TEMPERATURE", "Temperature (C)", (-10.0, 30.0)),
    ("WEATHER_WIND_SPEED", "Wind (kph)", (0.0, 40.0)),
    ("WEATHER_WIND_GUST", "Gust (kph)", (0.0, 50.0)),
    ("WEATHER_RAIN_HOUR", "Precip (mm)", (0.0, 0.0)),
    ("WEATHER_HUMIDITY", "Humidity (%)", (0.0, 90.0)),
    ("WEATHER_CLOUD_COVER", "Clouds (%)", (0.0, 60.0)),
)
WARN_FRACTION = 0.15  # within 15% of a limit: warning (Busy), as INDI's PERC_WARN

# WEATHER_CONTROL member -> parameter it sets
CONTROL_MEMBERS = {
    "Weather": "WEATHER_FORECAST",
    "Temperature": "WEATHER_TEMPERATURE",
    "Wind": "WEATHER_WIND_SPEED",
    "Gust": "WEATHER_WIND_GUST",
    "Precip": "WEATHER_RAIN_HOUR",
    "Humidity": "WEATHER_HUMIDITY",
    "Clouds": "WEATHER_CLOUD_COVER",
}


class WeatherDriver(IPyDriver):
    def __init__(self, shared: SharedState, name: str) -> None:
        self.shared = shared
        self.cfg = shared.config
        self.base = {
            "WEATHER_FORECAST": 0.0,
            "WEATHER_TEMPERATURE": 12.0,
            "WEATHER_WIND_SPEED": 8.0,
            "WEATHER_WIND_GUST": 14.0,
            "WEATHER_RAIN_HOUR": 0.0,
            "WEATHER_HUMIDITY": 55.0,
            "WEATHER_CLOUD_COVER": 5.0,
        }
        self.parameters = number_vector(
            "WEATHER_PARAMETERS",
            "Parameters",
            "Parameters",
            "ro",
            [(p, label, "%4.2f", -100, 1000, 0, self.base[p]) for p, label, _ in PARAMETERS],
            state="Ok",
        )
        self.status = LightVector(
            name="WEATHER_STATUS",
            label="Status",
            group="Main Control",
            state="Ok",
            lightmembers=[LightMember(name=p, label=label, membervalue="Ok") for p, label, _ in PARAMETERS],
        )
        self.update = number_vector(
            "WEATHER_UPDATE",
            "Update",
            "Main Control",
            "rw",
            [("PERIOD", "Period (s)", "%4.0f", 0, 3600, 1, self.cfg.weather_period_s)],
            state="Ok",
        )
        self.refresh = switch_vector(
            "WEATHER_REFRESH", "Refresh", "Main Control", "OneOfMany", [("REFRESH", "Refresh", "Off")]
        )
        self.control = number_vector(
            "WEATHER_CONTROL",
            "Control",
            "Simulation",
            "rw",
            [(m, m, "%4.2f", -100, 1000, 0, self.base[p]) for m, p in CONTROL_MEMBERS.items()],
            state="Ok",
        )
        self.freeze = switch_vector(
            "SIM_FREEZE",
            "Station answers",
            "Simulation",
            "OneOfMany",
            [("FREEZE", "Frozen (stale data)", "Off"), ("RUN", "Running", "On")],
            state="Ok",
        )
        self.connection = connection_vector()
        super().__init__(
            Device(
                name,
                [self.connection, self.status, self.parameters, self.update, self.refresh, self.control, self.freeze],
            )
        )
        self.frozen = False
        self.wake = asyncio.Event()

    def _sample(self) -> None:
        """New readings: the commanded conditions plus small fluctuations."""
        jitter = {
            "WEATHER_TEMPERATURE": 0.1,
            "WEATHER_WIND_SPEED": 0.5,
            "WEATHER_WIND_GUST": 0.8,
            "WEATHER_HUMIDITY": 0.5,
        }
        worst = "Ok"
        for p, _, (lo, hi) in PARAMETERS:
            value = self.base[p] + random.gauss(0.0, jitter.get(p, 0.0))
            if p in (
                "WEATHER_WIND_SPEED",
                "WEATHER_WIND_GUST",
                "WEATHER_RAIN_HOUR",
                "WEATHER_CLOUD_COVER",
                "WEATHER_HUMIDITY",
            ):
                value = max(0.0, value)
            if p == "WEATHER_HUMIDITY" or p == "WEATHER_CLOUD_COVER":
                value = min(100.0, value)
            self.parameters[p] = f"{value:.2f}"
            span = hi - lo
            if value < lo or value > hi:
                light = "Alert"
            elif span > 0 and (value > hi - WARN_FRACTION * span or value < lo + WARN_FRACTION * span and lo > 0):
                light = "Busy"
            else:
                light = "Ok"
            self.status[p] = light
            if light == "Alert" or (light == "Busy" and worst == "Ok"):
                worst = light
        self.status.state = worst

    async def _send_readings(self) -> None:
        self._sample()
        # status first: a client that reacts to new parameters then reads a matching verdict
        await publish(self.status, self.status.state)
        await publish(self.parameters, "Ok")

    async def hardware(self) -> None:
        loop = asyncio.get_running_loop()
        next_update = loop.time()
        while not self.stop:
            timeout = max(0.0, next_update - loop.time())
            try:
                await asyncio.wait_for(self.wake.wait(), timeout)
            except TimeoutError:
                pass
            self.wake.clear()
            period = max(0.5, float(self.update["PERIOD"]))
            next_update = loop.time() + period / max(self.cfg.speed, 1.0)
            if not self.frozen and self.connection["CONNECT"] == "On":
                await self._send_readings()

    async def rxevent(self, event) -> None:
        name = event.vectorname
        if await handle_connection_switch(self.connection, event):
            return
        if name == "SIM_FREEZE":
            self.frozen = on_switch(event) == "FREEZE"
            self.freeze["FREEZE"] = "On" if self.frozen else "Off"
            self.freeze["RUN"] = "Off" if self.frozen else "On"
            await publish(self.freeze, "Ok", "Station frozen" if self.frozen else "Station running")
            if not self.frozen:
                self.wake.set()
            return
        if self.frozen:
            return  # a frozen station answers nothing (the client times out)
        if self.connection["CONNECT"] != "On":
            await publish(event.vector, "Alert", "Device not connected")
            return
        if name == "WEATHER_CONTROL":
            for member in event:
                value = event.getfloatvalue(member)
                self.control[member] = value
                self.base[CONTROL_MEMBERS[member]] = value
            await publish(self.control, "Ok")
            self.wake.set()
        elif name == "WEATHER_UPDATE":
            self.update["PERIOD"] = event.getfloatvalue("PERIOD")
            await publish(self.update, "Ok")
            self.wake.set()
        elif name == "WEATHER_REFRESH":
            await publish(self.refresh, "Busy")
            await self._send_readings()
            self.refresh["REFRESH"] = "Off"
            await publish(self.refresh, "Ok")
