"""Simulated equatorial mount (standard INDI telescope properties).

Finite slew rate per axis and a settle time, sidereal tracking (when tracking is off the RA of
the pointing drifts, the axes being still), park at the celestial pole, a horizon limit (slews
below it are refused with Alert), abort at any moment."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime

from indipydriver import Device, IPyDriver

from devices import coords
from devices.interfaces import Site
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
    text_vector,
)

SIDEREAL_DEG_PER_S = 360.0 / 86164.0905
TICK_S = 0.05


class MountDriver(IPyDriver):
    def __init__(self, shared: SharedState, name: str) -> None:
        self.shared = shared
        self.cfg = shared.config
        site = shared.site
        self.eod = number_vector(
            "EQUATORIAL_EOD_COORD",
            "Eq. Coordinates (JNow)",
            "Main Control",
            "rw",
            [("RA", "RA (hh:mm:ss)", "%010.6m", 0, 24, 0, 0.0), ("DEC", "DEC (dd:mm:ss)", "%010.6m", -90, 90, 0, 0.0)],
        )
        self.horizontal = number_vector(
            "HORIZONTAL_COORD",
            "Horizontal Coordinates",
            "Main Control",
            "ro",
            [("AZ", "AZ D:M:S", "%010.6m", 0, 360, 0, 0.0), ("ALT", "Alt  D:M:S", "%010.6m", -90, 90, 0, 0.0)],
        )
        self.coord_set = switch_vector(
            "ON_COORD_SET",
            "On Set",
            "Main Control",
            "OneOfMany",
            [("TRACK", "Track", "On"), ("SLEW", "Slew", "Off"), ("SYNC", "Sync", "Off")],
            state="Ok",
        )
        self.abort_motion = switch_vector(
            "TELESCOPE_ABORT_MOTION", "Abort Motion", "Main Control", "AtMostOne", [("ABORT", "Abort", "Off")]
        )
        self.park_vector = switch_vector(
            "TELESCOPE_PARK",
            "Parking",
            "Main Control",
            "OneOfMany",
            [("PARK", "Park(ed)", "On"), ("UNPARK", "UnPark(ed)", "Off")],
            state="Ok",
        )
        self.track_state = switch_vector(
            "TELESCOPE_TRACK_STATE",
            "Tracking",
            "Main Control",
            "OneOfMany",
            [("TRACK_ON", "On", "Off"), ("TRACK_OFF", "Off", "On")],
            state="Idle",
        )
        self.geo = number_vector(
            "GEOGRAPHIC_COORD",
            "Location",
            "Site Management",
            "rw",
            [
                ("LAT", "Lat (dd:mm:ss)", "%010.6m", -90, 90, 0, site.latitude_deg),
                ("LONG", "Lon (dd:mm:ss)", "%010.6m", 0, 360, 0, site.longitude_deg % 360.0),
                ("ELEV", "Elevation (m)", "%g", -200, 10000, 0, site.elevation_m),
            ],
            state="Ok",
        )
        self.time_utc = text_vector(
            "TIME_UTC", "UTC", "Site Management", "rw", [("UTC", "UTC Time", ""), ("OFFSET", "UTC Offset", "0")]
        )
        self.limits = number_vector(
            "TELESCOPE_HORIZON_LIMIT",
            "Horizon limit",
            "Limits",
            "rw",
            [("MIN_ALT", "Minimum altitude (deg)", "%.1f", -90, 90, 0, site.min_altitude_deg)],
            state="Ok",
        )
        self.connection = connection_vector()
        device = Device(
            name,
            [
                self.connection,
                self.eod,
                self.horizontal,
                self.coord_set,
                self.abort_motion,
                self.park_vector,
                self.track_state,
                self.geo,
                self.time_utc,
                self.limits,
            ],
        )
        super().__init__(device)
        self.tasks: set = set()
        self.motion: asyncio.Task | None = None
        self.tracking = False
        self.parked = True
        self.moving = False
        # Start parked at the pole: RA = LST (meridian), Dec = +/-90.
        now = datetime.now(UTC)
        lst = coords.local_sidereal_time_deg(now, site.longitude_deg)
        self.ra_deg = lst
        self.dec_deg = 90.0 if site.latitude_deg >= 0 else -90.0
        self._update_shared(now)

    # -- helpers ---------------------------------------------------------------------------

    @property
    def site(self) -> Site:
        return self.shared.site

    def _lst(self, when: datetime) -> float:
        return coords.local_sidereal_time_deg(when, self.site.longitude_deg)

    def _update_shared(self, when: datetime) -> None:
        alt, az = coords.altaz_deg(
            self.ra_deg, self.dec_deg, lst_deg=self._lst(when), latitude_deg=self.site.latitude_deg
        )
        self.shared.mount_ra_h = self.ra_deg / 15.0
        self.shared.mount_dec_deg = self.dec_deg
        self.shared.mount_alt_deg = alt
        self.shared.mount_az_deg = az
        self.eod["RA"] = f"{self.ra_deg / 15.0:.8f}"
        self.eod["DEC"] = f"{self.dec_deg:.8f}"
        self.horizontal["ALT"] = f"{alt:.6f}"
        self.horizontal["AZ"] = f"{az:.6f}"

    def _steady_state(self) -> str:
        return "Ok" if self.tracking else "Idle"

    async def _publish_position(self, state: str | None = None, message: str = "") -> None:
        self._update_shared(datetime.now(UTC))
        await publish(self.eod, state, message)
        await publish(self.horizontal, "Ok")

    async def _set_tracking(self, on: bool) -> None:
        self.tracking = on
        self.track_state["TRACK_ON"] = "On" if on else "Off"
        self.track_state["TRACK_OFF"] = "Off" if on else "On"
        await publish(self.track_state, "Ok" if on else "Idle")

    # -- hardware loop -----------------------------------------------------------------------

    async def hardware(self) -> None:
        last = asyncio.get_running_loop().time()
        next_report = last
        while not self.stop:
            await asyncio.sleep(TICK_S)
            now_loop = asyncio.get_running_loop().time()
            dt = now_loop - last
            last = now_loop
            if not self.tracking:
                # axes still: the apparent RA of the pointing grows with sidereal time
                self.ra_deg = (self.ra_deg + SIDEREAL_DEG_PER_S * dt) % 360.0
            if not self.moving and now_loop >= next_report:
                next_report = now_loop + 1.0
                await self._publish_position(self._steady_state())

    # -- motions -------------------------------------------------------------------------

    async def _slew(self, ra_deg: float, dec_deg: float, *, track_after: bool, parking: bool = False) -> None:
        rate = self.cfg.slew_rate_deg_s * self.cfg.speed
        self.moving = True
        previous_tracking = self.tracking
        try:
            # the RA axis also compensates the sidereal motion while slewing: target RA is fixed
            loop = asyncio.get_running_loop()
            last = loop.time()
            next_report = last
            while True:
                await asyncio.sleep(TICK_S)
                now = loop.time()
                step = rate * (now - last)
                last = now
                self.ra_deg = move_towards(self.ra_deg, ra_deg, step, wrap=True)
                self.dec_deg = move_towards(self.dec_deg, dec_deg, step, wrap=False)
                arrived = abs(angle_diff_deg(self.ra_deg, ra_deg)) < 1e-9 and abs(self.dec_deg - dec_deg) < 1e-9
                if arrived:
                    break
                if now >= next_report:
                    next_report = now + 0.1
                    await self._publish_position("Busy")
                    if parking:
                        await publish(self.park_vector, "Busy")
            await asyncio.sleep(self.cfg.scaled(self.cfg.settle_s))
            if parking:
                self.parked = True
                self.park_vector["PARK"] = "On"
                self.park_vector["UNPARK"] = "Off"
                await self._set_tracking(False)
                await self._publish_position("Idle", "Mount parked")
                await publish(self.park_vector, "Ok", "Mount parked")
            else:
                if track_after != self.tracking:
                    await self._set_tracking(track_after)
                await self._publish_position("Ok" if self.tracking else "Idle", "Slew complete")
        except asyncio.CancelledError:
            self.tracking = previous_tracking
            raise
        finally:
            self.moving = False

    async def _abort(self) -> None:
        was_moving = self.motion is not None and not self.motion.done()
        if was_moving:
            self.motion.cancel()
            self.motion = None
            self.moving = False
        await publish(self.abort_motion, "Ok", "Motion aborted" if was_moving else "Nothing to abort")
        if was_moving:
            await self._publish_position("Idle", "Slew aborted")
            if self.park_vector.state == "Busy":
                await publish(self.park_vector, "Idle", "Park aborted")

    async def start_park(self, message: str = "Parking") -> asyncio.Task:
        """Start parking (at the pole); returns the motion task (also used by the watchdog)."""
        pole = 90.0 if self.site.latitude_deg >= 0 else -90.0
        await publish(self.park_vector, "Busy", message)
        self._start_motion(self._slew(self._lst(datetime.now(UTC)), pole, track_after=False, parking=True), "park")
        return self.motion

    def _start_motion(self, coro, what: str) -> None:
        if self.motion is not None and not self.motion.done():
            self.motion.cancel()
        self.motion = spawn(self.tasks, coro, what)

    # -- client requests ---------------------------------------------------------------------

    async def rxevent(self, event) -> None:
        name = event.vectorname
        if await handle_connection_switch(self.connection, event) or \
                await refuse_if_disconnected(self.connection, event):
            return
        if name == "TELESCOPE_ABORT_MOTION":
            await self._abort()
        elif name == "ON_COORD_SET":
            member = on_switch(event)
            for m in ("TRACK", "SLEW", "SYNC"):
                self.coord_set[m] = "On" if m == member else "Off"
            await publish(self.coord_set, "Ok")
        elif name == "EQUATORIAL_EOD_COORD":
            await self._goto(event)
        elif name == "TELESCOPE_PARK":
            member = on_switch(event)
            if member == "PARK":
                await self.start_park()
            elif member == "UNPARK":
                self.parked = False
                self.park_vector["PARK"] = "Off"
                self.park_vector["UNPARK"] = "On"
                await publish(self.park_vector, "Ok", "Mount unparked")
        elif name == "TELESCOPE_TRACK_STATE":
            member = on_switch(event)
            if self.parked and member == "TRACK_ON":
                await publish(self.track_state, "Alert", "Cannot track: mount is parked")
                return
            await self._set_tracking(member == "TRACK_ON")
        elif name == "GEOGRAPHIC_COORD":
            values = {k: event.getfloatvalue(k) for k in event}
            lat = values.get("LAT", self.site.latitude_deg)
            lon = values.get("LONG", self.site.longitude_deg % 360.0)
            elev = values.get("ELEV", self.site.elevation_m)
            if not -90 <= lat <= 90:
                await publish(self.geo, "Alert", f"Invalid latitude {lat}")
                return
            lon_east = lon - 360.0 if lon > 180.0 else lon
            self.shared.site = Site(lat, lon_east, elev, self.site.min_altitude_deg)
            self.geo["LAT"], self.geo["LONG"], self.geo["ELEV"] = lat, lon % 360.0, elev
            await publish(self.geo, "Ok")
        elif name == "TIME_UTC":
            for k, v in event.items():
                self.time_utc[k] = v
            await publish(self.time_utc, "Ok")
        elif name == "TELESCOPE_HORIZON_LIMIT":
            min_alt = event.getfloatvalue("MIN_ALT")
            site = self.site
            self.shared.site = Site(site.latitude_deg, site.longitude_deg, site.elevation_m, min_alt)
            self.limits["MIN_ALT"] = min_alt
            await publish(self.limits, "Ok")

    async def _goto(self, event) -> None:
        try:
            ra_h = event.getfloatvalue("RA") if "RA" in event else self.ra_deg / 15.0
            dec = event.getfloatvalue("DEC") if "DEC" in event else self.dec_deg
        except (TypeError, ValueError):
            await publish(self.eod, "Alert", "Invalid coordinates")
            return
        if not (0.0 <= ra_h <= 24.0 and -90.0 <= dec <= 90.0) or math.isnan(ra_h) or math.isnan(dec):
            await publish(self.eod, "Alert", f"Coordinates out of range: RA {ra_h} h, Dec {dec} deg")
            return
        mode = next((m for m in ("TRACK", "SLEW", "SYNC") if self.coord_set[m] == "On"), "TRACK")
        if mode == "SYNC":
            self.ra_deg, self.dec_deg = ra_h * 15.0, dec
            await self._publish_position(self._steady_state(), "Synced")
            return
        if self.parked:
            await publish(self.eod, "Alert", "Slew refused: mount is parked")
            return
        now = datetime.now(UTC)
        alt, _ = coords.altaz_deg(ra_h * 15.0, dec, lst_deg=self._lst(now), latitude_deg=self.site.latitude_deg)
        if alt < self.site.min_altitude_deg:
            await publish(
                self.eod,
                "Alert",
                f"Slew refused: target altitude {alt:.1f} deg is below the horizon limit {self.site.min_altitude_deg:.1f} deg",
            )
            return
        await self._publish_position("Busy", "Slewing")
        self._start_motion(self._slew((ra_h * 15.0) % 360.0, dec, track_after=(mode == "TRACK")), "slew")
