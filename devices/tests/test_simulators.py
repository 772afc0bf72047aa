"""What only the built-in simulated observatory does: a sky with stars and transients, weather
control, a frozen station, the indipyserver busy-loop work-around, and bad input from drivers."""

from __future__ import annotations

import asyncio
import io
import socket
import threading
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import sep
from astropy.io import fits
from astropy.wcs import WCS

from devices import coords, sky
from devices.errors import DeviceError, DeviceProtocolError, DeviceTimeout
from devices.observatory import connect
from devices.simulators import control
from devices.testing import running_simulators, scaled_s


@pytest.fixture(scope="module")
def sim():
    with running_simulators(speed=20.0) as (host, port, pid):
        obs = connect(host, port, timeout_s=10)
        yield host, port, pid, obs
        obs.close()


def _point_high(obs) -> tuple[float, float]:
    lst = coords.local_sidereal_time_deg(datetime.now(UTC), obs.site.longitude_deg)
    ra, dec = (lst - 10.0) % 360.0, 50.0
    if obs.mount.state().parked:
        obs.mount.unpark()
    obs.mount.slew_to(ra_deg=ra, dec_deg=dec, timeout_s=60)
    return ra, dec


def _image(data: bytes):
    with fits.open(io.BytesIO(data)) as hdul:
        return hdul[0].data.astype(np.float64), hdul[0].header


def test_images_show_stars_and_the_injected_transient(sim):
    host, port, _, obs = sim
    ra, dec = _point_high(obs)
    obs.dome.open_shutter(timeout_s=30)
    obs.filter_wheel.select("R")
    # the transient 3' east and 2' north of the centre, bright enough to measure well
    t_ra = ra + (3.0 / 60.0) / np.cos(np.radians(dec))
    t_dec = dec + 2.0 / 60.0
    control.clear_transients(host, port)
    control.inject_transient(
        host,
        port,
        ra_deg=t_ra,
        dec_deg=t_dec,
        mag0=13.0,
        decay_index=1.0,
        t0_utc=datetime.now(UTC) - timedelta(seconds=30),
    )
    try:
        image, header = _image(obs.camera.expose(duration_s=2.0, object_name="GRB test"))
    finally:
        control.clear_transients(host, port)
    assert header["FILTER"] == "R" and header["OBJECT"] == "GRB test"
    background = sep.Background(image)
    objects = sep.extract(image - background, 5.0, err=background.globalrms)
    assert len(objects) >= 24  # dozens of stars
    x, y = WCS(header).world_to_pixel_values(t_ra, t_dec)
    distance = np.hypot(objects["x"] - x, objects["y"] - y)
    assert distance.min() < 1.5, "no source where the transient was injected"
    # and the same position without the transient holds no such bright source
    image2, _ = _image(obs.camera.expose(duration_s=2.0))
    flux_with, _, _ = sep.sum_circle(image - background, [x], [y], 6.0)
    flux_without, _, _ = sep.sum_circle(image2 - sep.Background(image2), [x], [y], 6.0)
    assert flux_with[0] > 10 * max(flux_without[0], 1.0)


def test_closed_dome_blocks_the_sky(sim):
    _, _, _, obs = sim
    _point_high(obs)
    obs.dome.close_shutter(timeout_s=30)
    image, header = _image(obs.camera.expose(duration_s=1.0))
    background = sep.Background(image)
    assert len(sep.extract(image - background, 5.0, err=background.globalrms)) < 5
    assert header["IMAGETYP"] == "Light Frame"


def test_weather_can_be_made_unsafe_and_frozen(sim):
    host, port, _, obs = sim
    control.set_weather(host, port, wind_m_s=25.0, rain_mm_h=3.0, humidity_pct=97.0)
    readings = obs.weather.refresh(timeout_s=5)
    assert readings.wind_m_s == pytest.approx(25.0, abs=1.0)
    assert readings.rain_mm_h == pytest.approx(3.0)
    assert readings.humidity_pct == pytest.approx(97.0, abs=2.0)
    assert readings.station_safe is False
    control.set_weather(host, port, wind_m_s=3.0, rain_mm_h=0.0, humidity_pct=50.0)
    # the next update may have left the station before it read the new values (a loaded machine): the one after
    deadline = time.monotonic() + scaled_s(10)
    while not obs.weather.refresh(timeout_s=5).station_safe:
        assert time.monotonic() < deadline, "the station never said safe again"
    control.freeze_weather(host, port, frozen=True)
    try:
        # An update the station sent just before the freeze may still be on its way to this client (the
        # freeze is acknowledged on another connection): wait until the readings stop changing.
        before = obs.weather.readings().time_utc
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            time.sleep(0.5)
            latest = obs.weather.readings().time_utc
            if latest == before:
                break
            before = latest
        with pytest.raises(DeviceTimeout):
            obs.weather.refresh(timeout_s=1.0)
        assert obs.weather.readings().time_utc == before  # stale readings keep their old time
    finally:
        control.freeze_weather(host, port, frozen=False)
    assert obs.weather.refresh(timeout_s=5).time_utc > before


def test_ten_clients_can_connect(sim):
    host, port, _, _ = sim
    extra = [connect(host, port, timeout_s=10) for _ in range(3)]
    try:
        for obs in extra:
            assert obs.filter_wheel.filters()[0] == "U"
    finally:
        for obs in extra:
            obs.close()


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime in clock ticks (100 Hz)


def test_server_stays_idle_after_a_client_disconnects(sim):
    """indipyserver 0.0.6 spins at 100% CPU after a disconnect; the simulators patch that."""
    host, port, pid, _ = sim
    for _ in range(3):
        with socket.create_connection((host, port)) as s:
            s.sendall(b'<getProperties version="1.7"/>')
            s.recv(1000)
    time.sleep(0.5)
    before = _cpu_seconds(pid)
    time.sleep(3.0)
    used = _cpu_seconds(pid) - before
    assert used < 0.6, f"simulator used {used:.2f} s of CPU in 3 s while idle"


def test_malformed_xml_from_a_client_does_not_break_the_server(sim):
    host, port, _, obs = sim
    with socket.create_connection((host, port)) as s:
        s.sendall(b"<newNumberVector device='PyROS Mount' <<<garbage>>> \x00\xff")
        time.sleep(0.2)
    assert obs.filter_wheel.filters()[0] == "U"
    obs.filter_wheel.select("B")
    assert obs.filter_wheel.current() == "B"


class _FakeServer:
    """A tiny INDI 'server' scripted per test: sends given bytes to each client."""

    def __init__(self, script) -> None:
        self.script = script
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.clients: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.clients.append(conn)
            threading.Thread(target=self.script, args=(conn,), daemon=True).start()

    def close(self) -> None:
        self.sock.close()
        for c in self.clients:
            c.close()


CAMERA_DEFS = (
    b'<defNumberVector device="Cam" name="CCD_EXPOSURE" state="Idle" perm="rw" timeout="60">'
    b'<defNumber name="CCD_EXPOSURE_VALUE" format="%g" min="0" max="3600" step="0">0</defNumber></defNumberVector>'
    b'<defSwitchVector device="Cam" name="CCD_FRAME_TYPE" state="Ok" perm="rw" rule="OneOfMany" timeout="0">'
    b'<defSwitch name="FRAME_LIGHT">On</defSwitch><defSwitch name="FRAME_BIAS">Off</defSwitch></defSwitchVector>'
    b'<defSwitchVector device="Cam" name="CCD_ABORT_EXPOSURE" state="Idle" perm="rw" rule="AtMostOne" timeout="0">'
    b'<defSwitch name="ABORT">Off</defSwitch></defSwitchVector>'
    b'<defBLOBVector device="Cam" name="CCD1" state="Idle" perm="ro"><defBLOB name="CCD1"/></defBLOBVector>'
)


def test_corrupt_blob_raises_a_protocol_error():
    def script(conn: socket.socket) -> None:
        conn.sendall(CAMERA_DEFS)
        buffer = b""
        while True:
            data = conn.recv(65536)
            if not data:
                return
            buffer += data
            if b"newNumberVector" in buffer:
                buffer = b""
                # a server sends the image to every client that enabled BLOBs: here, to all
                for client in list(server.clients):
                    client.sendall(
                        b'<setNumberVector device="Cam" name="CCD_EXPOSURE" state="Busy"><oneNumber '
                        b'name="CCD_EXPOSURE_VALUE">0.1</oneNumber></setNumberVector>'
                    )
                    client.sendall(
                        b'<setBLOBVector device="Cam" name="CCD1" state="Ok"><oneBLOB name="CCD1" size="12" '
                        b'format=".fits">bm90IGEgZml0cyBmaWxl</oneBLOB></setBLOBVector>'
                    )

    server = _FakeServer(script)
    obs = connect("127.0.0.1", server.port, names={"camera": "Cam"}, timeout_s=5)
    try:
        with pytest.raises(DeviceProtocolError):
            obs.camera.expose(duration_s=0.1, timeout_s=5)
    finally:
        obs.close()
        server.close()


def test_alert_silence_and_garbage_from_a_driver_raise_device_errors():
    commands = [0]  # across connections: the client reconnects after the garbage

    def script(conn: socket.socket) -> None:
        conn.sendall(CAMERA_DEFS)
        buffer = b""
        while True:
            data = conn.recv(65536)
            if not data:
                return
            buffer += data
            if b"newNumberVector" in buffer:
                buffer = b""
                commands[0] += 1
                count = commands[0]
                if count == 1:  # refusal
                    conn.sendall(
                        b'<setNumberVector device="Cam" name="CCD_EXPOSURE" state="Alert" '
                        b'message="Sensor overheated"><oneNumber name="CCD_EXPOSURE_VALUE">0</oneNumber>'
                        b"</setNumberVector>"
                    )
                elif count == 2:  # garbage then hang up
                    conn.sendall(b"<setNumberVector device='Cam' <<< \x00 not xml")
                    conn.close()
                    return
                # later: silence

    server = _FakeServer(script)
    obs = connect("127.0.0.1", server.port, names={"camera": "Cam"}, timeout_s=5)
    try:
        with pytest.raises(DeviceError, match="Sensor overheated") as info:
            obs.camera.expose(duration_s=0.1, timeout_s=5)
        assert info.value.permanent
        with pytest.raises(DeviceError) as info:
            obs.camera.expose(duration_s=0.1, timeout_s=5)
        assert not info.value.permanent
        obs.wait_connected(timeout_s=5)  # reconnected to the fake server and resynchronised
        t0 = time.perf_counter()
        with pytest.raises(DeviceTimeout):
            obs.camera.expose(duration_s=0.1, timeout_s=1.0)
        assert time.perf_counter() - t0 < 4.5  # the wait, then an abort that is not answered either (2 s)
    finally:
        obs.close()
        server.close()


def test_unreachable_server_is_a_clear_error():
    from devices.errors import DeviceDisconnected
    from devices.testing import free_port

    with pytest.raises(DeviceDisconnected):
        connect("127.0.0.1", free_port(), timeout_s=0.5)


def test_simulated_camera_header_pointing_matches_the_mount(sim):
    _, _, _, obs = sim
    ra, dec = _point_high(obs)
    obs.dome.open_shutter(timeout_s=30)
    _, header = _image(obs.camera.expose(duration_s=0.2))
    assert header["RA"] == pytest.approx(ra, abs=1e-3)
    assert header["DEC"] == pytest.approx(dec, abs=1e-3)
    assert header["CRVAL1"] == pytest.approx(ra, abs=1e-3)
    assert sky.FILTERS.count(header["FILTER"]) == 1
    asyncio.get_event_loop_policy()  # (keeps the import used on every Python)
