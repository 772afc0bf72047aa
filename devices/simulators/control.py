"""Simulator-only controls, sent over INDI (so tests and demos in other processes can use them).

Each helper opens a short connection, sends one newVector to the simulated device and waits for
the driver's answer (raising DeviceRefused on Alert, DeviceTimeout on silence)."""

from __future__ import annotations

import socket
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

from devices.errors import DeviceDisconnected, DeviceRefused, DeviceTimeout
from devices.simulators.base import DEFAULT_NAMES


def _new_vector(kind: str, device: str, name: str, members: dict[str, object]) -> bytes:
    tag = {"number": "newNumberVector", "switch": "newSwitchVector", "text": "newTextVector"}[kind]
    one = {"number": "oneNumber", "switch": "oneSwitch", "text": "oneText"}[kind]
    root = ET.Element(
        tag, device=device, name=name, timestamp=datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds")
    )
    for member, value in members.items():
        el = ET.SubElement(root, one, name=member)
        el.text = str(value)
    return ET.tostring(root)


def send_and_wait(
    host: str,
    port: int,
    kind: str,
    device: str,
    name: str,
    members: dict[str, object],
    *,
    timeout_s: float = 5.0,
    expect_reply: bool = True,
) -> None:
    """Send one newVector and wait for the driver's set*Vector of that property (Ok/Idle)."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout_s)
    except OSError as exc:
        raise DeviceDisconnected(f"cannot reach the simulators at {host}:{port}: {exc}") from exc
    with sock:
        sock.sendall(_new_vector(kind, device, name, members))
        if not expect_reply:
            return
        parser = ET.XMLPullParser(events=("end",))
        parser.feed(b"<root>")
        deadline = time.monotonic() + timeout_s
        depth_tags = ("setNumberVector", "setSwitchVector", "setTextVector")
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = sock.recv(65536)
            except TimeoutError:
                break
            if not data:
                raise DeviceDisconnected(f"{host}:{port} closed the connection")
            parser.feed(data)
            for _, el in parser.read_events():
                if el.tag in depth_tags and el.get("device") == device and el.get("name") == name:
                    state = el.get("state")
                    if state == "Alert":
                        raise DeviceRefused(el.get("message") or f"{name} refused", device=device)
                    if state in ("Ok", "Idle"):
                        return
        raise DeviceTimeout(f"no answer to {name} within {timeout_s} s", device=device)


def set_weather(
    host: str = "127.0.0.1",
    port: int = 7624,
    *,
    wind_m_s: float | None = None,
    gust_m_s: float | None = None,
    rain_mm_h: float | None = None,
    humidity_pct: float | None = None,
    cloud_cover_pct: float | None = None,
    temperature_c: float | None = None,
    device: str = DEFAULT_NAMES["weather"],
) -> None:
    """Set the simulated weather (only the given quantities change); readings follow at once."""
    _send_given_numbers(host, port, device, "WEATHER_CONTROL", {
        "Wind": None if wind_m_s is None else wind_m_s * 3.6,  # INDI weather speeds are km/h
        "Gust": None if gust_m_s is None else gust_m_s * 3.6,
        "Precip": rain_mm_h,
        "Humidity": humidity_pct,
        "Clouds": cloud_cover_pct,
        "Temperature": temperature_c,
    })


def freeze_weather(
    host: str = "127.0.0.1", port: int = 7624, frozen: bool = True, *, device: str = DEFAULT_NAMES["weather"]
) -> None:
    """Make the weather station stop answering (stale readings) or resume."""
    members = {"FREEZE": "On", "RUN": "Off"} if frozen else {"FREEZE": "Off", "RUN": "On"}
    send_and_wait(host, port, "switch", device, "SIM_FREEZE", members)


def inject_transient(
    host: str = "127.0.0.1",
    port: int = 7624,
    *,
    ra_deg: float,
    dec_deg: float,
    mag0: float,
    decay_index: float = 1.0,
    t0_utc: datetime | None = None,
    t_ref_s: float = 60.0,
    device: str = DEFAULT_NAMES["camera"],
) -> None:
    """Add a point source of magnitude mag0 at t0 fading as (t/t_ref)^-decay_index (see devices.sky.Transient)."""
    t0 = (t0_utc or datetime.now(UTC)).timestamp()
    send_and_wait(
        host,
        port,
        "number",
        device,
        "SIM_TRANSIENT",
        {"RA": ra_deg, "DEC": dec_deg, "MAG0": mag0, "DECAY": decay_index, "T0": f"{t0:.3f}", "T_REF": t_ref_s},
    )


def clear_transients(host: str = "127.0.0.1", port: int = 7624, *, device: str = DEFAULT_NAMES["camera"]) -> None:
    send_and_wait(host, port, "switch", device, "SIM_TRANSIENT_CLEAR", {"CLEAR": "On"})


def set_sky(
    host: str = "127.0.0.1",
    port: int = 7624,
    *,
    seeing_fwhm_arcsec: float | None = None,
    moon_illumination: float | None = None,
    moon_separation_deg: float | None = None,
    sun_alt_deg: float | None = None,
    device: str = DEFAULT_NAMES["camera"],
) -> None:
    """Change the simulated seeing, Moon and twilight seen by the camera."""
    _send_given_numbers(host, port, device, "SIM_SKY", {
        "SEEING": seeing_fwhm_arcsec,
        "MOON_ILLUMINATION": moon_illumination,
        "MOON_SEPARATION": moon_separation_deg,
        "SUN_ALT": sun_alt_deg,
    })


def read_numbers(host: str, port: int, device: str, name: str, *, timeout_s: float = 5.0) -> dict[str, float]:
    """The values of one number vector, asked with ``getProperties`` for that property only."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout_s)
    except OSError as exc:
        raise DeviceDisconnected(f"cannot reach the simulators at {host}:{port}: {exc}") from exc
    with sock:
        request = ET.Element("getProperties", version="1.7", device=device, name=name)
        sock.sendall(ET.tostring(request))
        parser = ET.XMLPullParser(events=("end",))
        parser.feed(b"<root>")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = sock.recv(65536)
            except TimeoutError:
                break
            if not data:
                raise DeviceDisconnected(f"{host}:{port} closed the connection")
            parser.feed(data)
            for _, el in parser.read_events():
                if el.tag in ("defNumberVector", "setNumberVector") and el.get("device") == device:
                    if el.get("name") == name:
                        return {m.get("name"): float((m.text or "").strip()) for m in el}
    raise DeviceTimeout(f"{name} not received within {timeout_s} s", device=device)


def best_focus(host: str = "127.0.0.1", port: int = 7624, *, device: str = DEFAULT_NAMES["focuser"]) -> float:
    """Where the simulated telescope focuses now (steps): it moves with the focuser's temperature."""
    return read_numbers(host, port, device, "SIM_BEST_FOCUS")["BEST_FOCUS"]


def set_focus(
    host: str = "127.0.0.1",
    port: int = 7624,
    *,
    temperature_c: float | None = None,
    best_at_t0: float | None = None,
    t0_c: float | None = None,
    slope_steps_per_c: float | None = None,
    blur_arcsec_per_step: float | None = None,
    drift_c_per_h: float | None = None,
    device: str = DEFAULT_NAMES["focuser"],
) -> None:
    """Set the focuser's temperature (it drifts on from there) or the focus model
    (best(T) = best_at_t0 + slope * (T - t0); FWHM^2 = seeing^2 + (blur * (position - best(T)))^2)."""
    _send_given_numbers(host, port, device, "SIM_FOCUS", {
        "TEMPERATURE": temperature_c,
        "BEST_AT_T0": best_at_t0,
        "T0": t0_c,
        "SLOPE": slope_steps_per_c,
        "BLUR": blur_arcsec_per_step,
        "DRIFT": drift_c_per_h,
    })


def _send_given_numbers(host: str, port: int, device: str, vector: str, values: dict[str, float | None]) -> None:
    """Send the members that were given (None: leave that value as it is), if any, and wait for the answer."""
    members = {name: value for name, value in values.items() if value is not None}
    if members:
        send_and_wait(host, port, "number", device, vector, members)
