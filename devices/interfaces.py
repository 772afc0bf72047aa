"""Device interfaces: one abstract class per device kind, with the contract every backend keeps.

Units are in the names (``ra_deg``, ``timeout_s``). Coordinates given to and returned by a
:class:`Mount` are ICRS/J2000 degrees; the backend converts to what the protocol wants (INDI:
apparent RA hours/Dec degrees of date). Every blocking call takes ``timeout_s`` and raises
:class:`~devices.errors.DeviceTimeout` when it runs out; a refusal by the hardware raises
:class:`~devices.errors.DeviceRefused` with the driver's message; ``abort()`` from another thread
makes a blocking slew/exposure raise :class:`~devices.errors.DeviceAborted` within 1 s.
All classes are thread-safe: any thread may call ``abort()`` while another blocks.
"""

from __future__ import annotations

import abc
import concurrent.futures
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from devices.errors import DeviceAborted, DeviceError, DeviceTimeout

T = TypeVar("T")

FRAME_TYPES = ("LIGHT", "BIAS", "DARK", "FLAT")


@dataclass(frozen=True)
class Site:
    """Observatory site: WGS84 latitude/longitude (east positive) and elevation; ``min_altitude_deg``
    is the horizon limit below which the mount refuses to point."""

    latitude_deg: float
    longitude_deg: float
    elevation_m: float
    min_altitude_deg: float = 15.0


@dataclass(frozen=True)
class MountState:
    """Where the mount points (ICRS/J2000 degrees) and what it does.

    ``status`` is one of ``"parked"``, ``"parking"``, ``"slewing"``, ``"tracking"``, ``"idle"``
    (stopped, not tracking) or ``"error"`` (last motion failed). ``pier_side`` is ``"east"`` (normal
    pointing, looking west), ``"west"`` (through the pole) or ``None`` when the mount does not say."""

    ra_deg: float
    dec_deg: float
    alt_deg: float | None
    az_deg: float | None
    status: str
    tracking: bool
    parked: bool
    time_utc: datetime
    pier_side: str | None = None


@dataclass(frozen=True)
class DomeState:
    """``shutter`` is ``"open"``, ``"closed"``, ``"opening"``, ``"closing"`` or ``"unknown"``."""

    shutter: str
    azimuth_deg: float | None
    parked: bool
    following_mount: bool
    moving: bool


@dataclass(frozen=True)
class WeatherReadings:
    """One set of readings of the weather station / PLC. ``time_utc`` is when the station last
    updated them (compare with now to detect a frozen station). ``station_safe`` is the station's
    own verdict (INDI ``WEATHER_STATUS`` Ok); ``None`` for a reading the station does not provide."""

    wind_m_s: float | None
    gust_m_s: float | None
    humidity_pct: float | None
    rain_mm_h: float | None
    temperature_c: float | None
    cloud_cover_pct: float | None
    sky_ambient_c: float | None
    station_safe: bool
    time_utc: datetime


@dataclass(frozen=True)
class FocuserState:
    """Absolute position in motor steps (0..``max_position``), the focuser's temperature probe
    (``None`` if it has none) and whether it is moving."""

    position: int
    max_position: int | None
    temperature_c: float | None
    moving: bool


@dataclass(frozen=True)
class WatchdogState:
    """A dead-man watchdog. ``status`` is ``"idle"`` (not armed), ``"armed"`` (expects a heartbeat at
    least every ``heartbeat_timeout_s``) or ``"triggered"`` (it missed one and ran its shutdown:
    park the mount, close the dome). ``heartbeat_age_s`` is the time since the device last received
    a heartbeat (``None`` if never); ``shutdown`` is ``"none"``, ``"running"``, ``"done"`` or
    ``"failed"``."""

    status: str
    heartbeat_timeout_s: float
    heartbeat_age_s: float | None
    time_left_s: float | None
    shutdown: str


class Operation(Generic[T]):
    """A started device operation (slew, exposure) that another thread may wait on or abort.

    ``wait(timeout_s)`` returns the result or raises the operation's DeviceError; a timeout of the
    wait raises :class:`DeviceTimeout` without cancelling the operation."""

    def __init__(self, future: concurrent.futures.Future, *, abort: Callable[[], None], what: str) -> None:
        self._future = future
        self._abort = abort
        self.what = what

    def done(self) -> bool:
        return self._future.done()

    def wait(self, timeout_s: float | None = None) -> T:
        try:
            return self._future.result(timeout=timeout_s)
        except concurrent.futures.TimeoutError:
            raise DeviceTimeout(f"{self.what} still running after {timeout_s} s") from None
        except concurrent.futures.CancelledError:
            raise DeviceAborted(f"{self.what} cancelled") from None

    def abort(self) -> None:
        self._abort()


def _abort_quietly(device) -> None:
    """Stop a device after a timed-out wait; the timeout, not a failing abort, is the error to report."""
    try:
        device.abort()
    except DeviceError:
        logging.getLogger("devices").warning("abort after a timeout failed on %s", getattr(device, "name", device))


class Mount(abc.ABC):
    """An equatorial (or alt-az) mount with tracking, park and a horizon limit."""

    name: str

    @abc.abstractmethod
    def start_slew(self, *, ra_deg: float, dec_deg: float, track: bool = True) -> Operation[None]:
        """Start a slew to ICRS (ra_deg, dec_deg); tracking starts at arrival when ``track``.

        The operation completes when the mount has arrived and settled; it raises DeviceRefused
        for a target below ``limits().min_altitude_deg`` or a parked mount, DeviceAborted after
        ``abort()``."""

    def slew_to(self, *, ra_deg: float, dec_deg: float, track: bool = True, timeout_s: float = 180.0) -> None:
        """Slew and block until settled on target (see :meth:`start_slew`)."""
        operation = self.start_slew(ra_deg=ra_deg, dec_deg=dec_deg, track=track)
        try:
            operation.wait(timeout_s)
        except DeviceTimeout:
            _abort_quietly(self)
            raise

    @abc.abstractmethod
    def abort(self) -> None:
        """Stop any motion now (returns once the driver acknowledged). Tracking may continue."""

    @abc.abstractmethod
    def park(self, *, timeout_s: float = 180.0) -> None:
        """Move to the park position and stop tracking; blocks until parked."""

    @abc.abstractmethod
    def unpark(self, *, timeout_s: float = 30.0) -> None:
        """Leave the park position so slews are accepted again."""

    @abc.abstractmethod
    def set_tracking(self, enabled: bool, *, timeout_s: float = 10.0) -> None:
        """Switch sidereal tracking on or off."""

    @abc.abstractmethod
    def state(self) -> MountState:
        """Current position and status (from the last values the driver sent; no round trip)."""

    @abc.abstractmethod
    def limits(self) -> Site:
        """The site, with the horizon limit the mount enforces."""


class Dome(abc.ABC):
    """A dome or roll-off roof: shutter, azimuth, park and slaving to the mount."""

    name: str

    @abc.abstractmethod
    def open_shutter(self, *, timeout_s: float = 120.0) -> None:
        """Open the shutter; blocks until fully open."""

    @abc.abstractmethod
    def close_shutter(self, *, timeout_s: float = 120.0) -> None:
        """Close the shutter; blocks until fully closed."""

    @abc.abstractmethod
    def park(self, *, timeout_s: float = 180.0) -> None:
        """Rotate to the park azimuth; blocks until parked."""

    @abc.abstractmethod
    def unpark(self, *, timeout_s: float = 30.0) -> None:
        """Leave the park position."""

    @abc.abstractmethod
    def slew_to_azimuth(self, azimuth_deg: float, *, timeout_s: float = 180.0) -> None:
        """Rotate to an azimuth (degrees east of north); blocks until there."""

    @abc.abstractmethod
    def follow_mount(self, enabled: bool, *, timeout_s: float = 10.0) -> None:
        """Slave the dome azimuth to the mount (or stop doing so)."""

    @abc.abstractmethod
    def abort(self) -> None:
        """Stop rotation and shutter motion now."""

    @abc.abstractmethod
    def state(self) -> DomeState:
        """Current shutter, azimuth and park status."""


class FilterWheel(abc.ABC):
    """A filter wheel addressed by filter names."""

    name: str

    @abc.abstractmethod
    def filters(self) -> tuple[str, ...]:
        """Filter names in slot order (slot 1 first)."""

    @abc.abstractmethod
    def select(self, filter_name: str, *, timeout_s: float = 60.0) -> None:
        """Move to ``filter_name``; blocks until in place. DeviceRefused if no slot has that name."""

    @abc.abstractmethod
    def current(self) -> str:
        """Name of the filter in the beam."""


class Camera(abc.ABC):
    """A CCD/CMOS camera returning FITS files."""

    name: str

    @abc.abstractmethod
    def start_exposure(
        self,
        *,
        duration_s: float,
        frame_type: str = "LIGHT",
        binning: int = 1,
        object_name: str = "",
        progress: Callable[[float], None] | None = None,
    ) -> Operation[bytes]:
        """Start an exposure; the operation returns the FITS bytes after duration + readout.

        ``frame_type`` is one of :data:`FRAME_TYPES`. ``progress(elapsed_s)`` is called from the
        device thread while exposing (keep it quick). DeviceAborted after :meth:`abort`;
        DeviceProtocolError if the image received is not a valid FITS file."""

    def expose(
        self,
        *,
        duration_s: float,
        frame_type: str = "LIGHT",
        binning: int = 1,
        object_name: str = "",
        progress: Callable[[float], None] | None = None,
        timeout_s: float | None = None,
    ) -> bytes:
        """Expose and block until the FITS file is here (timeout default: duration + 60 s)."""
        operation = self.start_exposure(
            duration_s=duration_s, frame_type=frame_type, binning=binning, object_name=object_name, progress=progress
        )
        try:
            return operation.wait(duration_s + 60.0 if timeout_s is None else timeout_s)
        except DeviceTimeout:
            _abort_quietly(self)
            raise

    @abc.abstractmethod
    def abort(self) -> None:
        """Abort the exposure in progress (a blocking ``expose`` raises DeviceAborted)."""

    @abc.abstractmethod
    def temperature_c(self) -> float | None:
        """Sensor temperature, or None if the camera does not report it."""

    @abc.abstractmethod
    def set_temperature(self, temperature_c: float, *, timeout_s: float = 10.0) -> None:
        """Set the cooler target (returns once the driver accepted it, not once reached)."""


class WeatherStation(abc.ABC):
    """Weather station / PLC readings and the station's own safety flag."""

    name: str

    @abc.abstractmethod
    def readings(self) -> WeatherReadings:
        """The latest readings the station sent (``time_utc`` says how old they are)."""

    @abc.abstractmethod
    def refresh(self, *, timeout_s: float = 10.0) -> WeatherReadings:
        """Ask the station for fresh readings and return them (DeviceTimeout if it does not answer)."""

    def on_update(self, callback: Callable[[], None]) -> bool:
        """Call ``callback()`` (quickly, from the backend's thread) whenever the station publishes new
        readings, so that safety can react at once instead of at its next poll. Returns whether this
        backend can (a backend that cannot is simply polled)."""
        return False


class Focuser(abc.ABC):
    """An absolute focuser: position in motor steps from 0 to :meth:`max_position`."""

    name: str

    @abc.abstractmethod
    def start_move(self, position: int) -> Operation[None]:
        """Start a move to an absolute ``position`` (steps); the operation completes when the
        focuser stopped there. DeviceRefused for a position outside 0..max_position(),
        DeviceAborted after :meth:`abort`."""

    def move_to(self, position: int, *, timeout_s: float = 120.0) -> None:
        """Move to ``position`` and block until there (aborts the move on timeout)."""
        operation = self.start_move(position)
        try:
            operation.wait(timeout_s)
        except DeviceTimeout:
            _abort_quietly(self)
            raise

    @abc.abstractmethod
    def abort(self) -> None:
        """Stop the motion now (DeviceNotFound, permanent, if the focuser cannot abort)."""

    @abc.abstractmethod
    def position(self) -> int:
        """Current absolute position, steps (last value the driver sent)."""

    @abc.abstractmethod
    def max_position(self) -> int | None:
        """Highest absolute position, steps (None if the driver does not say)."""

    @abc.abstractmethod
    def temperature_c(self) -> float | None:
        """Temperature of the focuser's probe (tube temperature), or None without a probe."""

    @abc.abstractmethod
    def state(self) -> FocuserState:
        """Position, range, temperature and motion in one snapshot."""


class Watchdog(abc.ABC):
    """A dead-man switch beside the devices: once armed, it expects :meth:`heartbeat` at least every
    ``heartbeat_timeout_s``; when one is missed it parks the mount and closes the dome by itself
    (PyROS, its host or its network may be dead by then)."""

    name: str

    @abc.abstractmethod
    def arm(self, heartbeat_timeout_s: float | None = None, *, timeout_s: float = 10.0) -> None:
        """Arm it (with a new heartbeat timeout if given, else the device's current one); this
        counts as a heartbeat. Re-arming a triggered watchdog resets it."""

    @abc.abstractmethod
    def heartbeat(self, *, timeout_s: float = 5.0) -> None:
        """Tell the watchdog PyROS is alive (restarts its timer). DeviceRefused once it has
        triggered (re-arm it) or while its shutdown runs."""

    @abc.abstractmethod
    def disarm(self, *, timeout_s: float = 10.0) -> None:
        """Stop watching (no shutdown however long the silence); also clears a triggered state."""

    @abc.abstractmethod
    def state(self) -> WatchdogState:
        """Armed or not, heartbeat age, shutdown progress (last values the driver sent)."""
