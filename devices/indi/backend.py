"""The INDI backend: the device interfaces implemented with standard INDI properties only, so the
same code drives the built-in simulators, Debian's ``indi-bin`` simulators and real hardware."""

from __future__ import annotations

import asyncio
import io
import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime

from devices import coords
from devices.errors import (
    DeviceAborted,
    DeviceDisconnected,
    DeviceError,
    DeviceNotFound,
    DeviceProtocolError,
    DeviceRefused,
)
from devices.indi.link import IndiLink
from devices.interfaces import (
    FRAME_TYPES,
    Camera,
    Dome,
    DomeState,
    FilterWheel,
    Focuser,
    FocuserState,
    Mount,
    MountState,
    Operation,
    Site,
    Watchdog,
    WatchdogState,
    WeatherReadings,
    WeatherStation,
)

logger = logging.getLogger("devices.indi")

CONTROL_TIMEOUT_S = 10.0  # an instant setting (frame type, binning, tracking) must be answered within this
ABORT_ACK_TIMEOUT_S = 2.0  # drivers acknowledge an abort in milliseconds; do not hang a caller on a dead one
KPH_TO_M_S = 1000.0 / 3600.0


def _on(vector, member: str) -> bool:
    return vector is not None and member in vector and vector[member] == "On"


class _IndiDevice:
    def __init__(self, link: IndiLink, name: str) -> None:
        self.link = link
        self.name = name

    def _call(self, coro, timeout_s: float):
        # the coroutine has its own timeout; the bridge allows a little more for the hop
        return self.link.call(coro, timeout_s + 2.0)

    def _operation(self, coro, what: str, abort: Callable[[], None]) -> Operation:
        return Operation(self.link.submit(coro), abort=abort, what=f"{self.name}: {what}")

    async def _abort_motion(self, vector: str, member: str = "ABORT") -> None:
        # wake every waiting operation of this device first, then tell the driver
        self.link.bump_abort(self.name)
        async with self.link._cond:
            self.link._cond.notify_all()
        await self.link.command(self.name, vector, {member: "On"}, timeout_s=ABORT_ACK_TIMEOUT_S, what="abort")


class IndiMount(_IndiDevice, Mount):
    def __init__(self, link: IndiLink, name: str, site: Site) -> None:
        super().__init__(link, name)
        self.site = site

    def limits(self) -> Site:
        return self.site

    async def _slew(self, ra_deg: float, dec_deg: float, track: bool, timeout_s: float) -> None:
        now = datetime.now(UTC)
        ra_h, dec_app = coords.j2000_to_apparent(ra_deg, dec_deg, now)
        alt, _ = coords.altaz_deg(
            ra_h * 15.0,
            dec_app,
            lst_deg=coords.local_sidereal_time_deg(now, self.site.longitude_deg),
            latitude_deg=self.site.latitude_deg,
        )
        if alt < self.site.min_altitude_deg:
            raise DeviceRefused(
                f"target RA {ra_deg:.4f} Dec {dec_deg:.4f} is at altitude {alt:.1f} deg, below the horizon "
                f"limit {self.site.min_altitude_deg:.1f} deg",
                device=self.name,
            )
        if _on(self.link.vector(self.name, "TELESCOPE_PARK"), "PARK"):
            raise DeviceRefused("mount is parked: unpark it first", device=self.name)
        mode = "TRACK" if track else "SLEW"
        coord_set = await self.link.require_vector(self.name, "ON_COORD_SET", CONTROL_TIMEOUT_S)
        if coord_set[mode] != "On":
            await self.link.command(
                self.name, "ON_COORD_SET", {mode: "On"}, timeout_s=CONTROL_TIMEOUT_S, what="coordinate mode"
            )
        await self.link.command(
            self.name,
            "EQUATORIAL_EOD_COORD",
            {"RA": f"{ra_h:.8f}", "DEC": f"{dec_app:.8f}"},
            timeout_s=timeout_s,
            expect_busy=True,
            abortable=True,
            what="slew",
        )

    def start_slew(self, *, ra_deg: float, dec_deg: float, track: bool = True, timeout_s: float = 600.0) -> Operation:
        if not (math.isfinite(ra_deg) and -90.0 <= dec_deg <= 90.0):
            raise DeviceRefused(f"invalid target RA {ra_deg} Dec {dec_deg}", device=self.name)
        return self._operation(self._slew(ra_deg % 360.0, dec_deg, track, timeout_s), "slew", self.abort)

    def abort(self) -> None:
        self._call(self._abort_motion("TELESCOPE_ABORT_MOTION"), CONTROL_TIMEOUT_S)

    def park(self, *, timeout_s: float = 180.0) -> None:
        self._call(
            self.link.command(
                self.name,
                "TELESCOPE_PARK",
                {"PARK": "On", "UNPARK": "Off"},
                timeout_s=timeout_s,
                expect_busy=True,
                abortable=True,
                what="park",
            ),
            timeout_s,
        )

    def unpark(self, *, timeout_s: float = 30.0) -> None:
        self._call(
            self.link.command(
                self.name, "TELESCOPE_PARK", {"PARK": "Off", "UNPARK": "On"}, timeout_s=timeout_s, what="unpark"
            ),
            timeout_s,
        )

    def set_tracking(self, enabled: bool, *, timeout_s: float = 10.0) -> None:
        members = {"TRACK_ON": "On", "TRACK_OFF": "Off"} if enabled else {"TRACK_ON": "Off", "TRACK_OFF": "On"}
        self._call(
            self.link.command(self.name, "TELESCOPE_TRACK_STATE", members, timeout_s=timeout_s, what="tracking"),
            timeout_s,
        )

    def state(self) -> MountState:
        link = self.link
        ra_h = link.number(self.name, "EQUATORIAL_EOD_COORD", "RA")
        dec = link.number(self.name, "EQUATORIAL_EOD_COORD", "DEC")
        if ra_h is None or dec is None:
            raise DeviceNotFound("no position received yet", device=self.name)
        now = datetime.now(UTC)
        ra_deg, dec_deg = coords.apparent_to_j2000(ra_h, dec, now)
        alt = link.number(self.name, "HORIZONTAL_COORD", "ALT")
        az = link.number(self.name, "HORIZONTAL_COORD", "AZ")
        if alt is None:
            alt, az = coords.altaz_deg(
                ra_h * 15.0,
                dec,
                lst_deg=coords.local_sidereal_time_deg(now, self.site.longitude_deg),
                latitude_deg=self.site.latitude_deg,
            )
        parked = _on(link.vector(self.name, "TELESCOPE_PARK"), "PARK")
        tracking = _on(link.vector(self.name, "TELESCOPE_TRACK_STATE"), "TRACK_ON")
        eq_state = link.state(self.name, "EQUATORIAL_EOD_COORD")
        park_state = link.state(self.name, "TELESCOPE_PARK")
        if park_state == "Busy":
            status = "parking"
        elif parked:
            status = "parked"
        elif eq_state == "Busy":
            status = "slewing"
        elif eq_state == "Alert":
            status = "error"
        else:
            status = "tracking" if tracking else "idle"
        pier = link.vector(self.name, "TELESCOPE_PIER_SIDE")
        pier_side = "east" if _on(pier, "PIER_EAST") else "west" if _on(pier, "PIER_WEST") else None
        return MountState(
            ra_deg=ra_deg,
            dec_deg=dec_deg,
            alt_deg=alt,
            az_deg=az,
            status=status,
            tracking=tracking,
            parked=parked,
            time_utc=now,
            pier_side=pier_side,
        )

    async def synchronise(self) -> None:
        """Send site and UTC time (on connect and after every reconnect)."""
        site = self.site
        if self.link.vector(self.name, "GEOGRAPHIC_COORD") is not None:
            await self.link.send(
                self.name,
                "GEOGRAPHIC_COORD",
                {
                    "LAT": f"{site.latitude_deg:.6f}",
                    "LONG": f"{site.longitude_deg % 360.0:.6f}",
                    "ELEV": f"{site.elevation_m:.1f}",
                },
            )
        if self.link.vector(self.name, "TIME_UTC") is not None:
            now = datetime.now(UTC)
            await self.link.send(self.name, "TIME_UTC", {"UTC": now.strftime("%Y-%m-%dT%H:%M:%S"), "OFFSET": "0"})


class IndiDome(_IndiDevice, Dome):
    def _shutter(self, member: str, timeout_s: float, what: str) -> None:
        self._call(
            self.link.command(
                self.name,
                "DOME_SHUTTER",
                {member: "On"},
                timeout_s=timeout_s,
                expect_busy=True,
                abortable=True,
                what=what,
            ),
            timeout_s,
        )

    def open_shutter(self, *, timeout_s: float = 120.0) -> None:
        self._shutter("SHUTTER_OPEN", timeout_s, "open shutter")

    def close_shutter(self, *, timeout_s: float = 120.0) -> None:
        self._shutter("SHUTTER_CLOSE", timeout_s, "close shutter")

    def park(self, *, timeout_s: float = 180.0) -> None:
        self._call(
            self.link.command(
                self.name,
                "DOME_PARK",
                {"PARK": "On", "UNPARK": "Off"},
                timeout_s=timeout_s,
                expect_busy=True,
                abortable=True,
                what="dome park",
            ),
            timeout_s,
        )

    def unpark(self, *, timeout_s: float = 30.0) -> None:
        self._call(
            self.link.command(
                self.name, "DOME_PARK", {"PARK": "Off", "UNPARK": "On"}, timeout_s=timeout_s, what="dome unpark"
            ),
            timeout_s,
        )

    def slew_to_azimuth(self, azimuth_deg: float, *, timeout_s: float = 180.0) -> None:
        self._call(
            self.link.command(
                self.name,
                "ABS_DOME_POSITION",
                {"DOME_ABSOLUTE_POSITION": f"{azimuth_deg % 360.0:.3f}"},
                timeout_s=timeout_s,
                expect_busy=True,
                abortable=True,
                what="dome rotation",
            ),
            timeout_s,
        )

    def follow_mount(self, enabled: bool, *, timeout_s: float = 10.0) -> None:
        members = (
            {"DOME_AUTOSYNC_ENABLE": "On", "DOME_AUTOSYNC_DISABLE": "Off"}
            if enabled
            else {"DOME_AUTOSYNC_ENABLE": "Off", "DOME_AUTOSYNC_DISABLE": "On"}
        )
        self._call(
            self.link.command(self.name, "DOME_AUTOSYNC", members, timeout_s=timeout_s, what="slaving"), timeout_s
        )

    def abort(self) -> None:
        self._call(self._abort_motion("DOME_ABORT_MOTION"), CONTROL_TIMEOUT_S)

    def state(self) -> DomeState:
        link = self.link
        shutter_vec = link.vector(self.name, "DOME_SHUTTER")
        if shutter_vec is None:
            shutter = "unknown"
        else:
            opening = _on(shutter_vec, "SHUTTER_OPEN")
            busy = shutter_vec.state == "Busy"
            if shutter_vec.state == "Alert":
                shutter = "unknown"
            elif busy:
                shutter = "opening" if opening else "closing"
            else:
                shutter = "open" if opening else "closed"
        return DomeState(
            shutter=shutter,
            azimuth_deg=link.number(self.name, "ABS_DOME_POSITION", "DOME_ABSOLUTE_POSITION"),
            parked=_on(link.vector(self.name, "DOME_PARK"), "PARK"),
            following_mount=_on(link.vector(self.name, "DOME_AUTOSYNC"), "DOME_AUTOSYNC_ENABLE"),
            moving=link.state(self.name, "ABS_DOME_POSITION") == "Busy",
        )


class IndiFilterWheel(_IndiDevice, FilterWheel):
    def filters(self) -> tuple[str, ...]:
        vec = self.link.vector(self.name, "FILTER_NAME")
        if vec is None:
            raise DeviceNotFound("FILTER_NAME not defined", device=self.name)
        members = sorted(vec.keys(), key=lambda m: int(m.rsplit("_", 1)[-1]) if m.rsplit("_", 1)[-1].isdigit() else 0)
        return tuple(vec[m] for m in members)

    async def _select(self, filter_name: str, timeout_s: float) -> None:
        await self.link.require_vector(self.name, "FILTER_NAME", CONTROL_TIMEOUT_S)
        names = self.filters()
        if filter_name not in names:
            raise DeviceRefused(f"no filter named {filter_name!r} (wheel has {', '.join(names)})", device=self.name)
        slot = names.index(filter_name) + 1
        current = self.link.number(self.name, "FILTER_SLOT", "FILTER_SLOT_VALUE")
        if current is not None and int(round(current)) == slot and self.link.state(self.name, "FILTER_SLOT") != "Busy":
            return
        await self.link.command(
            self.name,
            "FILTER_SLOT",
            {"FILTER_SLOT_VALUE": str(slot)},
            timeout_s=timeout_s,
            expect_busy=True,
            ack_timeout_s=1.0,
            what=f"filter change to {filter_name}",
        )

    def select(self, filter_name: str, *, timeout_s: float = 60.0) -> None:
        self._call(self._select(filter_name, timeout_s), timeout_s)

    def current(self) -> str:
        slot = self.link.number(self.name, "FILTER_SLOT", "FILTER_SLOT_VALUE")
        if slot is None:
            raise DeviceNotFound("FILTER_SLOT not defined", device=self.name)
        names = self.filters()
        index = int(round(slot)) - 1
        if not 0 <= index < len(names):
            raise DeviceProtocolError(f"filter slot {slot} out of range", device=self.name)
        return names[index]


class IndiCamera(_IndiDevice, Camera):
    blob_vector = "CCD1"

    def __init__(self, link: IndiLink, name: str) -> None:
        super().__init__(link, name)

    async def _expose(
        self,
        duration_s: float,
        frame_type: str,
        binning: int,
        object_name: str,
        progress: Callable[[float], None] | None,
    ) -> bytes:
        link = self.link
        frame_member = f"FRAME_{frame_type}"
        frame_vec = await link.require_vector(self.name, "CCD_FRAME_TYPE", CONTROL_TIMEOUT_S)
        if frame_vec[frame_member] != "On":
            await link.command(
                self.name, "CCD_FRAME_TYPE", {frame_member: "On"}, timeout_s=CONTROL_TIMEOUT_S, what="frame type"
            )
        if link.vector(self.name, "CCD_BINNING") is not None:
            current = link.number(self.name, "CCD_BINNING", "HOR_BIN")
            if current is None or int(current) != binning:
                await link.command(
                    self.name,
                    "CCD_BINNING",
                    {"HOR_BIN": str(binning), "VER_BIN": str(binning)},
                    timeout_s=CONTROL_TIMEOUT_S,
                    what="binning",
                )
        elif binning != 1:
            raise DeviceRefused("camera has no CCD_BINNING property", device=self.name)
        if object_name and link.vector(self.name, "FITS_HEADER") is not None:
            await link.command(
                self.name, "FITS_HEADER", {"FITS_OBJECT": object_name}, timeout_s=CONTROL_TIMEOUT_S, what="FITS header"
            )
        if link.blob is None or not link.blob.connected:
            raise DeviceError("no BLOB connection to receive the image", device=self.name, permanent=False)
        blob_seq = link.blob_seq()
        blob_epoch = link.blob_epoch
        abort_gen = link.abort_generation[self.name]
        epoch = link.epoch
        loop = asyncio.get_running_loop()
        started = loop.time()
        seq = await link.send(self.name, "CCD_EXPOSURE", {"CCD_EXPOSURE_VALUE": f"{duration_s:.6f}"})
        busy_seen = False

        def outcome():
            nonlocal seq, busy_seen
            if link.abort_generation[self.name] != abort_gen:
                return ("aborted", None)
            if link.epoch != epoch or link.blob_epoch != blob_epoch:
                return ("disconnected", None)
            item = link.blob_since(self.name, self.blob_vector, blob_seq)
            if item is not None:
                return ("blob", item)
            for update in link.updates_since(self.name, "CCD_EXPOSURE", seq):
                seq = update.seq
                if update.state == "Alert":
                    return ("alert", update.message)
                if update.state == "Busy":
                    busy_seen = True
                    if progress is not None:
                        try:
                            progress(min(loop.time() - started, duration_s))
                        except Exception:  # noqa: BLE001 - a caller's callback must not break the exposure
                            logger.exception("exposure progress callback failed")
            return None

        # BLOB arrival is the end; allow for readout and transfer of a large frame
        kind, detail = await link.wait_until(outcome, duration_s + 120.0, "exposure", device=self.name)
        if kind == "aborted":
            raise DeviceAborted("exposure aborted", device=self.name)
        if kind == "disconnected":
            raise DeviceError("connection lost during the exposure", device=self.name, permanent=False)
        if kind == "alert":
            raise DeviceRefused(f"exposure failed: {detail or 'driver answered Alert'}", device=self.name)
        _, data, fmt = detail
        return await asyncio.to_thread(self._check_fits, data, fmt)

    def _check_fits(self, data: bytes, fmt: str) -> bytes:
        if fmt and "fits" not in fmt.lower():
            raise DeviceProtocolError(f"image format {fmt!r} is not FITS", device=self.name)
        if fmt.endswith(".z") or fmt.endswith(".fz"):
            raise DeviceProtocolError(f"compressed image format {fmt!r}: disable CCD_COMPRESSION", device=self.name)
        if len(data) < 2880 or not data.startswith(b"SIMPLE  =") or len(data) % 2880:
            raise DeviceProtocolError(f"corrupt FITS BLOB ({len(data)} bytes)", device=self.name)
        from astropy.io import fits

        try:
            with fits.open(io.BytesIO(data)) as hdul:
                hdul.verify("exception")
                if hdul[0].data is None:
                    raise DeviceProtocolError("FITS BLOB without image data", device=self.name)
        except DeviceProtocolError:
            raise
        except Exception as exc:  # astropy raises many kinds on damaged files
            raise DeviceProtocolError(f"corrupt FITS BLOB: {exc}", device=self.name) from exc
        return data

    def start_exposure(
        self,
        *,
        duration_s: float,
        frame_type: str = "LIGHT",
        binning: int = 1,
        object_name: str = "",
        progress: Callable[[float], None] | None = None,
    ) -> Operation[bytes]:
        frame_type = frame_type.upper()
        if frame_type not in FRAME_TYPES:
            raise DeviceRefused(f"unknown frame type {frame_type!r}; expected one of {FRAME_TYPES}", device=self.name)
        if not (0.0 <= duration_s <= 3600.0):
            raise DeviceRefused(f"exposure time {duration_s} s out of range", device=self.name)
        if binning not in (1, 2, 3, 4):
            raise DeviceRefused(f"binning {binning} not supported", device=self.name)
        return self._operation(
            self._expose(duration_s, frame_type, binning, object_name, progress), "exposure", self.abort
        )

    def abort(self) -> None:
        self._call(self._abort_motion("CCD_ABORT_EXPOSURE"), CONTROL_TIMEOUT_S)

    def temperature_c(self) -> float | None:
        return self.link.number(self.name, "CCD_TEMPERATURE", "CCD_TEMPERATURE_VALUE")

    def set_temperature(self, temperature_c: float, *, timeout_s: float = 10.0) -> None:
        async def _set() -> None:
            seq = await self.link.send(self.name, "CCD_TEMPERATURE", {"CCD_TEMPERATURE_VALUE": f"{temperature_c:.2f}"})

            def answered():
                for update in self.link.updates_since(self.name, "CCD_TEMPERATURE", seq):
                    if update.state == "Alert":
                        return ("alert", update.message)
                    return ("ok", None)  # Busy (cooling) or Ok: accepted
                return None

            kind, message = await self.link.wait_until(answered, timeout_s, "set temperature", device=self.name)
            if kind == "alert":
                raise DeviceRefused(f"temperature refused: {message}", device=self.name)

        self._call(_set(), timeout_s)


class IndiWeather(_IndiDevice, WeatherStation):
    def on_update(self, callback) -> bool:  # noqa: ANN001 - a plain callable
        # WEATHER_PARAMETERS only: stations publish the status first, then the parameters; a poll woken by the
        # status would read the parameters of the previous sample.
        self.link.on_vector_update(self.name, "WEATHER_PARAMETERS", callback)
        return True

    def _readings(self) -> WeatherReadings:
        link = self.link
        vec = link.vector(self.name, "WEATHER_PARAMETERS")
        if vec is None:
            raise DeviceNotFound("WEATHER_PARAMETERS not defined", device=self.name)

        def num(member: str) -> float | None:
            return link.number(self.name, "WEATHER_PARAMETERS", member) if member in vec else None

        wind = num("WEATHER_WIND_SPEED")
        gust = num("WEATHER_WIND_GUST")
        status_state = link.state(self.name, "WEATHER_STATUS")
        stamp = getattr(vec, "timestamp", None)
        if isinstance(stamp, datetime):
            stamp = stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
        else:
            stamp = datetime.now(UTC)
        return WeatherReadings(
            wind_m_s=None if wind is None else wind * KPH_TO_M_S,
            gust_m_s=None if gust is None else gust * KPH_TO_M_S,
            humidity_pct=num("WEATHER_HUMIDITY"),
            rain_mm_h=num("WEATHER_RAIN_HOUR") if "WEATHER_RAIN_HOUR" in vec else num("WEATHER_RAIN_RATE"),
            temperature_c=num("WEATHER_TEMPERATURE"),
            cloud_cover_pct=num("WEATHER_CLOUD_COVER"),
            sky_ambient_c=num("WEATHER_SKY_TEMPERATURE"),
            station_safe=status_state in ("Ok", "Busy"),
            time_utc=stamp,
        )

    def readings(self) -> WeatherReadings:
        return self._readings()

    def refresh(self, *, timeout_s: float = 10.0) -> WeatherReadings:
        async def _refresh() -> None:
            await self.link.require_vector(self.name, "WEATHER_PARAMETERS", timeout_s)
            if self.link.vector(self.name, "WEATHER_REFRESH") is None:
                return
            seq = self.link.last_seq(self.name, "WEATHER_PARAMETERS")
            await self.link.send(self.name, "WEATHER_REFRESH", {"REFRESH": "On"})
            await self.link.wait_until(
                lambda: self.link.last_seq(self.name, "WEATHER_PARAMETERS") > seq,
                timeout_s,
                "weather refresh",
                device=self.name,
            )

        self._call(_refresh(), timeout_s)
        return self._readings()


def _age_s(vector) -> float:
    """Seconds since the driver sent ``vector`` (0 if its timestamp is unusable or in the future)."""
    stamp = getattr(vector, "timestamp", None)
    if not isinstance(stamp, datetime):
        return 0.0
    stamp = stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
    age = (datetime.now(UTC) - stamp).total_seconds()
    return age if 0.0 <= age < 3600.0 else 0.0


class IndiFocuser(_IndiDevice, Focuser):
    """``ABS_FOCUS_POSITION`` (``FOCUS_ABSOLUTE_POSITION``), ``FOCUS_MAX`` (``FOCUS_MAX_VALUE``),
    ``FOCUS_TEMPERATURE`` (``TEMPERATURE``), ``FOCUS_ABORT_MOTION`` (``ABORT``)."""

    def position(self) -> int:
        value = self.link.number(self.name, "ABS_FOCUS_POSITION", "FOCUS_ABSOLUTE_POSITION")
        if value is None:
            raise DeviceNotFound("ABS_FOCUS_POSITION not defined (no absolute focuser)", device=self.name)
        return int(round(value))

    def max_position(self) -> int | None:
        value = self.link.number(self.name, "FOCUS_MAX", "FOCUS_MAX_VALUE")
        if value is None:
            vec = self.link.vector(self.name, "ABS_FOCUS_POSITION")
            try:
                value = float(vec.member("FOCUS_ABSOLUTE_POSITION").max) if vec is not None else None
            except (KeyError, TypeError, ValueError):
                value = None
            if not value:  # a max of 0 means "not given"
                return None
        return int(round(value))

    def temperature_c(self) -> float | None:
        return self.link.number(self.name, "FOCUS_TEMPERATURE", "TEMPERATURE")

    def state(self) -> FocuserState:
        return FocuserState(
            position=self.position(),
            max_position=self.max_position(),
            temperature_c=self.temperature_c(),
            moving=self.link.state(self.name, "ABS_FOCUS_POSITION") == "Busy",
        )

    def _check_range(self, position: int) -> None:
        high = self.max_position() if self.link.vector(self.name, "ABS_FOCUS_POSITION") is not None else None
        if position < 0 or (high is not None and position > high):
            raise DeviceRefused(f"focuser position {position} outside 0-{high}", device=self.name)

    async def _move(self, position: int, timeout_s: float) -> None:
        link = self.link
        await link.require_vector(self.name, "ABS_FOCUS_POSITION", CONTROL_TIMEOUT_S)
        self._check_range(position)
        if self.position() == position and link.state(self.name, "ABS_FOCUS_POSITION") != "Busy":
            return
        what = f"focuser move to {position}"
        epoch, abort_gen = link.epoch, link.abort_generation[self.name]
        seq = await link.send(self.name, "ABS_FOCUS_POSITION", {"FOCUS_ABSOLUTE_POSITION": str(position)})
        busy_seen = False

        def progress():
            # done on Busy then Ok/Idle, or on an Ok/Idle at the target (drivers that move at once,
            # as Debian's simulator, answer Ok without Busy)
            nonlocal seq, busy_seen
            if link.epoch != epoch:
                return ("disconnected", None)
            if link.abort_generation[self.name] != abort_gen:
                return ("aborted", None)
            for update in link.updates_since(self.name, "ABS_FOCUS_POSITION", seq):
                seq = update.seq
                if update.state == "Alert":
                    return ("alert", update.message)
                if update.state == "Busy":
                    busy_seen = True
                elif update.state in ("Ok", "Idle") and (busy_seen or self.position() == position):
                    return ("done", update.state)
            return None

        kind, detail = await link.wait_until(progress, timeout_s, what, device=self.name)
        if kind == "disconnected":
            raise DeviceDisconnected(f"{what}: connection to the INDI server lost", device=self.name)
        if kind == "aborted":
            raise DeviceAborted(f"{what} aborted", device=self.name)
        if kind == "alert":
            raise DeviceRefused(f"{what} failed: {detail or 'driver answered Alert'}", device=self.name)
        reached = self.position()
        if abs(reached - position) > 1:
            raise DeviceRefused(f"focuser stopped at {reached}, not {position}", device=self.name)

    def start_move(self, position: int, *, timeout_s: float = 600.0) -> Operation[None]:
        if isinstance(position, float) and not math.isfinite(position):
            raise DeviceRefused(f"invalid focuser position {position}", device=self.name)
        position = int(round(position))
        self._check_range(position)
        return self._operation(self._move(position, timeout_s), "focuser move", self.abort)

    def abort(self) -> None:
        if self.link.vector(self.name, "FOCUS_ABORT_MOTION") is None:
            raise DeviceNotFound("focuser cannot abort (no FOCUS_ABORT_MOTION)", device=self.name, permanent=True)
        self._call(self._abort_motion("FOCUS_ABORT_MOTION"), CONTROL_TIMEOUT_S)


class IndiWatchdog(_IndiDevice, Watchdog):
    """libindi's ``indi_watchdog`` properties: ``WATCHDOG_HEARTBEAT`` (``WATCHDOG_HEARTBEAT_VALUE``,
    the threshold in seconds; each new value received is a heartbeat), ``WATCHDOG_Trigger``
    (``TRIGGER_CLIENT``), ``WATCHDOG_SHUTDOWN`` (``PARK_MOUNT``, ``PARK_DOME``); and, when the driver
    has them (the simulated one), ``WATCHDOG_STATE`` and ``WATCHDOG_TIMER``. Without them (libindi's
    driver) "triggered" means: its shutdown went Busy since this object armed it."""

    def __init__(self, link: IndiLink, name: str) -> None:
        super().__init__(link, name)
        self._armed_seq: int | None = None  # WATCHDOG_SHUTDOWN updates after it mean "it fired"

    def _threshold(self) -> float | None:
        return self.link.number(self.name, "WATCHDOG_HEARTBEAT", "WATCHDOG_HEARTBEAT_VALUE")

    async def _send_heartbeat(self, value: float, timeout_s: float, what: str) -> None:
        await self.link.command(
            self.name,
            "WATCHDOG_HEARTBEAT",
            {"WATCHDOG_HEARTBEAT_VALUE": f"{value:.3f}"},
            timeout_s=timeout_s,
            what=what,
        )

    async def _arm(self, heartbeat_timeout_s: float | None, timeout_s: float) -> None:
        link = self.link
        await link.require_vector(self.name, "WATCHDOG_HEARTBEAT", timeout_s)
        if self.state().status == "triggered":
            # a triggered watchdog takes no heartbeat until it is reset
            await link.command(
                self.name, "WATCHDOG_Trigger", {"TRIGGER_CLIENT": "Off"}, timeout_s=timeout_s, what="watchdog reset"
            )
        if heartbeat_timeout_s is not None:
            await self._send_heartbeat(heartbeat_timeout_s, timeout_s, "watchdog threshold")
        elif not (self._threshold() or 0.0) > 0.0:
            raise DeviceRefused("the watchdog has no heartbeat timeout: give one", device=self.name)
        shutdown = link.vector(self.name, "WATCHDOG_SHUTDOWN")
        if shutdown is not None:
            wanted = {m: "On" for m in ("PARK_MOUNT", "PARK_DOME") if m in shutdown}
            if any(shutdown[m] != "On" for m in wanted):
                await link.command(
                    self.name, "WATCHDOG_SHUTDOWN", wanted, timeout_s=timeout_s, what="watchdog shutdown procedure"
                )
        self._armed_seq = link.last_seq(self.name, "WATCHDOG_SHUTDOWN")
        await link.command(
            self.name, "WATCHDOG_Trigger", {"TRIGGER_CLIENT": "On"}, timeout_s=timeout_s, what="watchdog arm"
        )
        # libindi's watchdog restarts its timer on a heartbeat only: send one
        await self._send_heartbeat(self._threshold() or heartbeat_timeout_s or 0.0, timeout_s, "heartbeat")

    def arm(self, heartbeat_timeout_s: float | None = None, *, timeout_s: float = 10.0) -> None:
        if heartbeat_timeout_s is not None and not (
            math.isfinite(heartbeat_timeout_s) and 0.0 < heartbeat_timeout_s <= 3600.0
        ):
            raise DeviceRefused(f"heartbeat timeout {heartbeat_timeout_s} s out of range (0, 3600]", device=self.name)
        self._call(self._arm(heartbeat_timeout_s, timeout_s), timeout_s * 5)

    def heartbeat(self, *, timeout_s: float = 5.0) -> None:
        async def _beat() -> None:
            await self.link.require_vector(self.name, "WATCHDOG_HEARTBEAT", timeout_s)
            await self._send_heartbeat(self._threshold() or 0.0, timeout_s, "heartbeat")

        self._call(_beat(), timeout_s)

    def disarm(self, *, timeout_s: float = 10.0) -> None:
        self._armed_seq = None
        self._call(
            self.link.command(
                self.name, "WATCHDOG_Trigger", {"TRIGGER_CLIENT": "Off"}, timeout_s=timeout_s, what="watchdog disarm"
            ),
            timeout_s,
        )

    def state(self) -> WatchdogState:
        link = self.link
        threshold = self._threshold()
        if threshold is None:
            raise DeviceNotFound("WATCHDOG_HEARTBEAT not defined", device=self.name)
        state_vec = link.vector(self.name, "WATCHDOG_STATE")
        shutdown_state = link.state(self.name, "WATCHDOG_SHUTDOWN")
        if state_vec is not None:
            status = next((s.lower() for s in ("TRIGGERED", "ARMED", "IDLE") if _on(state_vec, s)), "idle")
        else:
            fired = self._armed_seq is not None and any(
                u.state == "Busy" for u in link.updates_since(self.name, "WATCHDOG_SHUTDOWN", self._armed_seq)
            )
            armed = _on(link.vector(self.name, "WATCHDOG_Trigger"), "TRIGGER_CLIENT") and threshold > 0
            status = "triggered" if fired or shutdown_state == "Busy" else "armed" if armed else "idle"
        if status == "triggered":
            shutdown = {"Busy": "running", "Ok": "done", "Alert": "failed"}.get(shutdown_state or "", "none")
        else:
            shutdown = "running" if shutdown_state == "Busy" else "none"
        age = left = None
        timer = link.vector(self.name, "WATCHDOG_TIMER")
        if timer is not None:
            elapsed = _age_s(timer)
            reported_age = link.number(self.name, "WATCHDOG_TIMER", "HEARTBEAT_AGE")
            if reported_age is not None and reported_age >= 0:
                age = reported_age + elapsed
            reported_left = link.number(self.name, "WATCHDOG_TIMER", "TIME_LEFT")
            if status == "armed" and reported_left is not None:
                left = max(0.0, reported_left - elapsed)
        return WatchdogState(
            status=status, heartbeat_timeout_s=threshold, heartbeat_age_s=age, time_left_s=left, shutdown=shutdown
        )
