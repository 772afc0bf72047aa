"""The Alpaca backend beyond the shared contract: settings, discovery, aborts, image transfer in both
wire formats, and devices that vanish or hang, against PyPI's alpaca-simulators on loopback."""

from __future__ import annotations

import io
import os
import signal
import socket
import threading
import time
import types
from datetime import UTC, datetime

import numpy as np
import pytest
from astropy.io import fits

from devices import coords
from devices.errors import DeviceAborted, DeviceDisconnected, DeviceError, DeviceTimeout
from devices.interfaces import Site
from devices.observatory import KINDS, backend_choice, connect
from devices.testing import AlpacaSimulators, alpaca_simulators_unavailable_reason, scaled_s

ALL_ALPACA = {**{kind: "alpaca" for kind in KINDS}, "watchdog": "none"}
SITE = Site(43.9308, 5.7133, 650.0)


def _need_simulators() -> None:
    reason = alpaca_simulators_unavailable_reason()
    if reason:
        if os.environ.get("PYROS_REQUIRE_SERVICES") == "1":
            pytest.fail(f"required in CI: {reason}")
        pytest.skip(reason)


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _connect(sims: AlpacaSimulators, **settings):
    from devices.alpaca.connection import AlpacaSettings

    return connect(site=SITE, backends=ALL_ALPACA, alpaca=AlpacaSettings(port=sims.port, **settings), timeout_s=20)


@pytest.fixture(scope="module")
def sims(tmp_path_factory):
    _need_simulators()
    sims = AlpacaSimulators(tmp_path_factory.mktemp("alpaca"), site=SITE, discovery_port=_free_udp_port()).start()
    yield sims
    sims.stop()


@pytest.fixture(scope="module")
def observatory(sims):
    obs = _connect(sims)
    yield obs
    obs.close()


# -- settings ----------------------------------------------------------------------------------


def test_backend_choice_from_the_environment():
    assert backend_choice({}) == {kind: "indi" for kind in KINDS}
    everything = backend_choice({"PYROS_DEVICE_BACKEND": "alpaca"})
    assert everything == ALL_ALPACA  # Alpaca has no watchdog
    mixed = backend_choice({"PYROS_MOUNT_BACKEND": "alpaca", "PYROS_DOME_BACKEND": "none"})
    assert mixed["mount"] == "alpaca" and mixed["dome"] == "none" and mixed["camera"] == "indi"
    assert backend_choice({"PYROS_DEVICE_BACKEND": "alpaca", "PYROS_WATCHDOG_BACKEND": "indi"})["watchdog"] == "indi"
    for bad in ({"PYROS_DEVICE_BACKEND": "ascom"}, {"PYROS_WATCHDOG_BACKEND": "alpaca"}):
        with pytest.raises(ValueError):
            backend_choice(bad)


def test_alpaca_settings_from_the_environment():
    from devices.alpaca.connection import AlpacaAddress, AlpacaSettings

    settings = AlpacaSettings.from_env({
        "PYROS_ALPACA_HOST": "10.0.0.5", "PYROS_ALPACA_PORT": "4567", "PYROS_ALPACA_CAMERA": "1",
        "PYROS_ALPACA_FOCUSER": "10.0.0.6:11111/2", "PYROS_ALPACA_DOME": "none", "PYROS_ALPACA_IMAGEBYTES": "0",
        "PYROS_ALPACA_SAFETY_MONITOR": "none",
    })
    assert settings.address("mount") == AlpacaAddress("10.0.0.5", 4567, 0)
    assert settings.address("camera") == AlpacaAddress("10.0.0.5", 4567, 1)
    assert settings.address("focuser") == AlpacaAddress("10.0.0.6", 11111, 2)
    assert settings.address("dome") is None and settings.address("safety_monitor") is None
    assert AlpacaSettings(port=4567).address("safety_monitor") == AlpacaAddress("127.0.0.1", 4567, 0)
    assert settings.imagebytes is False
    with pytest.raises(ValueError):
        AlpacaSettings.from_env({"PYROS_ALPACA_CAMERA": "first"})


def test_a_topocentric_mount_gets_apparent_coordinates_and_a_j2000_one_j2000():
    from devices.alpaca.backend import AlpacaMount

    mount = AlpacaMount(types.SimpleNamespace(pyros_name=""), None, "test mount", SITE)
    when = datetime(2026, 12, 1, 22, 0, tzinfo=UTC)
    mount._j2000 = False
    assert mount._to_mount(150.0, 40.0, when) == coords.j2000_to_apparent(150.0, 40.0, when)
    ra, dec = mount._from_mount(*mount._to_mount(150.0, 40.0, when), when)
    assert ra == pytest.approx(150.0, abs=1e-7) and dec == pytest.approx(40.0, abs=1e-7)
    mount._j2000 = True
    assert mount._to_mount(150.0, 40.0, when) == (10.0, 40.0)


# -- discovery ----------------------------------------------------------------------------------


def test_discovery_finds_the_simulators_on_loopback(sims):
    from devices.alpaca.discovery import discover, suggested_settings

    t0 = time.perf_counter()
    devices = discover(timeout_s=1.0, port=sims.discovery_port, broadcast=False)
    assert time.perf_counter() - t0 < 5.0
    ours = [d for d in devices if (d.host, d.port) == ("127.0.0.1", sims.port)]
    kinds = {d.kind for d in ours}
    assert {"mount", "camera", "dome", "filter_wheel", "focuser", "weather", "safety_monitor"} <= kinds
    camera = next(d for d in ours if d.kind == "camera")
    assert camera.number == 0 and camera.name == "Simulator Camera"
    settings = suggested_settings(ours)
    assert settings["PYROS_DEVICE_BACKEND"] == "alpaca"
    assert settings["PYROS_ALPACA_PORT"] == str(sims.port) and settings["PYROS_ALPACA_CAMERA"] == "0"


# -- aborts and images ----------------------------------------------------------------------------


def test_a_30_s_exposure_is_aborted_within_a_second(observatory):
    camera = observatory.camera
    result: list[BaseException] = []
    done = threading.Event()

    def expose() -> None:
        try:
            camera.expose(duration_s=30.0)
        except BaseException as exc:  # noqa: BLE001 - inspected below
            result.append(exc)
        finally:
            done.set()

    threading.Thread(target=expose, daemon=True).start()
    time.sleep(1.5)
    t0 = time.perf_counter()
    camera.abort()
    acknowledged = time.perf_counter() - t0
    assert done.wait(1.0), "the exposure did not end within 1 s of the abort"
    assert time.perf_counter() - t0 < scaled_s(1.0)
    assert acknowledged < 0.1
    assert len(result) == 1 and isinstance(result[0], DeviceAborted) and not result[0].permanent
    assert camera.client.call("camera state", lambda: camera.client.CameraState) == 0  # idle
    assert observatory.camera.expose(duration_s=0.2, frame_type="DARK").startswith(b"SIMPLE")


def test_mount_park_tracking_and_pier_side(observatory):
    mount = observatory.mount
    if mount.state().parked:
        mount.unpark()
    lst = coords.local_sidereal_time_deg(datetime.now(UTC), SITE.longitude_deg)
    mount.slew_to(ra_deg=(lst - 15.0) % 360.0, dec_deg=50.0, track=False, timeout_s=60)
    state = mount.state()
    assert state.status == "idle" and not state.tracking and state.pier_side in ("east", "west", None)
    mount.set_tracking(True)
    assert mount.state().status == "tracking"
    mount.park(timeout_s=60)
    assert mount.state().status == "parked" and mount.state().parked
    with pytest.raises(DeviceError) as info:
        mount.slew_to(ra_deg=(lst - 15.0) % 360.0, dec_deg=50.0)
    assert info.value.permanent  # refused while parked
    mount.unpark()
    assert not mount.state().parked


def test_dome_azimuth_slaving_and_park(observatory):
    dome = observatory.dome
    dome.slew_to_azimuth(123.0, timeout_s=30)
    assert dome.state().azimuth_deg == pytest.approx(123.0) and not dome.state().moving
    dome.follow_mount(True)
    assert dome.state().following_mount
    dome.follow_mount(False)
    dome.park(timeout_s=30)
    assert dome.state().parked


def test_camera_cooling(observatory):
    camera = observatory.camera
    camera.set_temperature(-15.0)
    assert camera.temperature_c() == pytest.approx(-15.0, abs=0.5)  # the simulator cools at once


def test_station_verdict_from_the_safety_monitor(observatory):
    weather = observatory.weather
    assert weather.readings().station_safe
    safety = weather.safety
    safety.call("set unsafe", lambda: safety._put("issafe", IsSafe=False))
    try:
        readings = weather.refresh()
        assert readings.station_safe is False and readings.wind_m_s is not None
    finally:
        safety.call("set safe", lambda: safety._put("issafe", IsSafe=True))
    assert weather.readings().station_safe


def test_imagebytes_and_json_give_the_same_frame(observatory):
    """One readout, read in both wire formats (ImageArray can be read again until the next exposure): the
    same pixels, and the same FITS file from either, byte for byte."""
    from devices.alpaca.transport import read_image

    camera = observatory.camera
    camera.imagebytes = True
    data = camera.expose(duration_s=0.0, frame_type="BIAS")
    assert camera.last_transfer.transport == "imagebytes"
    by_bytes = camera.last_transfer.data
    by_json = read_image(camera.client, imagebytes=False)
    assert by_json.transport == "json" and by_json.nbytes > 1.5 * camera.last_transfer.nbytes
    assert by_json.data.shape == by_bytes.shape == (1024, 1280)
    assert np.array_equal(by_json.data, by_bytes)
    assert by_bytes.std() > 0  # a real frame, not a constant one
    frame = fits.getdata(io.BytesIO(data))
    assert frame.dtype == np.uint16 and frame.shape == (1024, 1280)
    assert np.array_equal(frame, by_bytes[::-1])  # stored bottom-up
    header = fits.getheader(io.BytesIO(data))
    rebuilt = camera._fits(by_json.data, header, prepared=None, frame_type="BIAS", binning=1, context={})
    assert rebuilt == data


def test_the_fast_fits_writer_writes_what_astropy_writes():
    """The header prepared during the exposure plus the pixels appended: astropy's own bytes for a 16-bit frame;
    another type or size (values beyond 16 bits, a frame the camera cut differently) goes through astropy."""
    from devices.alpaca.backend import _astropy_fits, _PreparedFits, bottom_up

    rng = np.random.default_rng(3)
    as_sent = rng.integers(0, 65536, size=(640, 512)).astype(np.int32)  # Alpaca order [x][y]
    image = as_sent.T  # [y, x], as read_image gives it
    rows = bottom_up(image.astype(np.uint16))
    assert rows.flags.c_contiguous and np.array_equal(rows, image[::-1])
    assert np.array_equal(bottom_up(np.ascontiguousarray(image)), image[::-1])
    header = fits.Header({"EXPTIME": 1.0, "OBJECT": "field", "ROWORDER": "BOTTOM-UP"})
    prepared = _PreparedFits(header, rows.shape)
    fast = prepared.fits(rows)
    assert fast == _astropy_fits(header, rows)
    with fits.open(io.BytesIO(fast)) as hdul:
        assert hdul[0].header["OBJECT"] == "field" and np.array_equal(hdul[0].data, image[::-1])
    assert prepared.fits(rows.astype(np.int32)) is None  # another type
    assert prepared.fits(rows[:-2]) is None  # another size


def test_frames_beyond_16_bits_and_of_another_size_are_written_too(observatory):
    camera = observatory.camera
    header = fits.Header({"OBJECT": "wide"})
    wide = (np.arange(12, dtype=np.int64).reshape(3, 4) * 20000)  # [y, x], up to 220000
    data = camera._fits(wide, header, prepared=None, frame_type="DARK", binning=1, context={})
    with fits.open(io.BytesIO(data)) as hdul:
        assert hdul[0].data.dtype.kind == "i" and np.array_equal(hdul[0].data, wide[::-1])
    mount = types.SimpleNamespace(ra_deg=10.0, dec_deg=20.0)
    focal_length_m, camera.focal_length_m = camera.focal_length_m, 1.0
    try:
        header = camera._header(frame_type="LIGHT", duration_s=1.0, binning=1, object_name="x",
                                date_obs=datetime.now(UTC), context={"mount": mount}, shape=(1024, 1280))
        assert header["CRPIX1"] == 640.5
        from devices.alpaca.backend import _PreparedFits

        small = np.ones((100, 200), dtype=np.uint16)
        data = camera._fits(small, header, prepared=_PreparedFits(header, (1024, 1280)), frame_type="LIGHT",
                            binning=1, context={"mount": mount})
    finally:
        camera.focal_length_m = focal_length_m
    written = fits.getheader(io.BytesIO(data))
    assert (written["NAXIS1"], written["NAXIS2"]) == (200, 100)
    assert (written["CRPIX1"], written["CRPIX2"]) == (100.5, 50.5)  # the centre of the frame actually taken


def test_a_light_frame_has_stars_where_its_wcs_says(tmp_path):
    """The frame's nominal WCS matches the simulated sky (the catalogue the analyzer uses)."""
    _need_simulators()
    from astropy.wcs import WCS

    from devices.sky import catalog_stars

    lst = coords.local_sidereal_time_deg(datetime.now(UTC), SITE.longitude_deg)
    ra, dec = (lst - 10.0) % 360.0, 45.0
    with _started(AlpacaSimulators(tmp_path, site=SITE, fields=[(ra, dec, 0.5)])) as sims:
        obs = _connect(sims)
        try:
            obs.mount.unpark()
            obs.mount.slew_to(ra_deg=ra, dec_deg=dec, timeout_s=60)
            data = obs.camera.expose(duration_s=1.0, frame_type="LIGHT")
        finally:
            obs.close()
    import sep

    with fits.open(io.BytesIO(data)) as hdul:
        header, image = hdul[0].header, hdul[0].data.astype(np.float64)
    background = sep.Background(image)
    sources = sep.extract(image - background, 10, err=background.globalrms)
    sources = sources[np.argsort(-sources["flux"])][:20]
    assert len(sources) >= 10
    stars = catalog_stars(header["CRVAL1"], header["CRVAL2"], 0.3, mag_limit=21)
    x, y = WCS(header).all_world2pix(stars["ra_deg"], stars["dec_deg"], 0)
    offsets = [np.hypot(x - s["x"], y - s["y"]).min() for s in sources]
    # pixels (1"/px); the simulator's optical axis is half a pixel off the frame's centre on each axis
    assert np.median(offsets) < 1.0


class _started:
    def __init__(self, sims: AlpacaSimulators) -> None:
        self.sims = sims

    def __enter__(self) -> AlpacaSimulators:
        return self.sims.start()

    def __exit__(self, *exc) -> None:
        self.sims.stop()


# -- devices that vanish or hang -------------------------------------------------------------------


def test_a_device_disappearing_mid_exposure_is_a_retryable_error(tmp_path):
    _need_simulators()
    with _started(AlpacaSimulators(tmp_path, site=SITE)) as sims:
        obs = _connect(sims)
        try:
            operation = obs.camera.start_exposure(duration_s=10.0)
            time.sleep(1.0)
            sims.kill()
            t0 = time.perf_counter()
            with pytest.raises(DeviceError) as info:
                operation.wait(10.0)
            assert isinstance(info.value, DeviceDisconnected) and not info.value.permanent
            assert time.perf_counter() - t0 < 5.0
            assert not obs.connected
            sims.start()  # back: the next call sets it up again
            assert obs.camera.expose(duration_s=0.1, frame_type="DARK").startswith(b"SIMPLE")
            assert obs.connected
        finally:
            obs.close()


def test_a_hung_device_ends_the_exposure_with_a_timeout(tmp_path):
    """A camera that stops answering (process stopped) ends the exposure with DeviceTimeout, not a hang."""
    _need_simulators()
    with _started(AlpacaSimulators(tmp_path, site=SITE)) as sims:
        obs = _connect(sims)
        for server in obs.alpaca.servers.values():
            server.timeout_s = 0.5  # HTTP read timeout: a frozen server is noticed quickly
        try:
            operation = obs.camera.start_exposure(duration_s=1.0)
            time.sleep(0.5)
            os.kill(sims.pid, signal.SIGSTOP)
            try:
                t0 = time.perf_counter()
                with pytest.raises(DeviceError) as info:
                    operation.wait(15.0)
                assert isinstance(info.value, DeviceTimeout | DeviceDisconnected) and not info.value.permanent
                assert time.perf_counter() - t0 < 6.0
            finally:
                os.kill(sims.pid, signal.SIGCONT)
        finally:
            obs.close()


def test_json_images_are_decoded_as_imagebytes_ones():
    import json

    from devices.alpaca.transport import _decode_imagebytes, _decode_json_image, _decode_json_image_slowly
    from devices.errors import DeviceRefused

    pixels = np.array([[1, -2, 3], [40000, 5, 6]])  # Alpaca order [x][y]: 2 columns, 3 rows
    body = json.dumps({"Type": 2, "Rank": 2, "Value": pixels.tolist(), "ErrorNumber": 0, "ErrorMessage": ""}).encode()
    for decode in (_decode_json_image, _decode_json_image_slowly):
        image = decode(body, "camera")
        assert image.shape == (3, 2) and (image == pixels.T).all()
    header = np.array([1, 0, 0, 0, 44, 2, 2, 2, 2, 3, 0], dtype="<i4").tobytes()
    assert (_decode_imagebytes(header + pixels.astype("<i4").tobytes(), "camera") == pixels.T).all()
    refused = json.dumps({"ErrorNumber": 0x40B, "ErrorMessage": "no image", "Value": None}).encode()
    with pytest.raises(DeviceRefused):
        _decode_json_image(refused, "camera")


def test_json_images_parsed_while_they_arrive_equal_the_whole_answer_parsed_by_json():
    import json

    from devices.alpaca.transport import JsonImageStream, _decode_json_image, _decode_json_image_slowly

    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 65535, size=(37, 23))  # [x][y]
    answers = {
        "type first": {"Type": 2, "Rank": 2, "Value": pixels.tolist(), "ErrorNumber": 0, "ErrorMessage": ""},
        "type after the array": {"Value": pixels.tolist(), "Rank": 2, "Type": 2, "ErrorNumber": 0},
        "doubles": {"Type": 3, "Rank": 2, "Value": (pixels / 7.0).tolist(), "ErrorNumber": 0},
    }
    for name, answer in answers.items():
        body = json.dumps(answer, separators=(",", ":")).encode()
        expected = _decode_json_image_slowly(body, "camera")
        for size in (1, 7, 64, 1000, len(body)):  # chunk boundaries anywhere: inside numbers, between "]" and "]"
            stream = JsonImageStream()
            for k in range(0, len(body), size):
                stream.feed(body[k:k + size])
            image = stream.finish("camera")
            assert image is not None, (name, size)
            assert image.shape == (23, 37) and np.array_equal(image, expected), (name, size)
            assert image.dtype == (np.float64 if name == "doubles" else np.int32)
    # Not shaped as expected: the stream says so and the whole answer is read by json, with the same pixels
    spaced = json.dumps({"Type": 2, "Rank": 2, "Value": pixels.tolist()}, indent=1).encode()
    stream = JsonImageStream()
    stream.feed(spaced)
    assert stream.finish("camera") is None
    assert np.array_equal(_decode_json_image(spaced, "camera"), pixels.T)
    garbled = json.dumps({"Type": 2, "Rank": 2, "Value": [[1, 2], [3, 4]]}).replace("3", "3x").encode()
    stream = JsonImageStream()
    stream.feed(garbled)
    assert stream.finish("camera") is None


def test_a_safety_monitor_alone_is_the_weather_station(sims):
    from devices.alpaca.connection import AlpacaSettings

    only_weather = {kind: "none" for kind in KINDS} | {"weather": "alpaca"}
    obs = connect(site=SITE, backends=only_weather, alpaca=AlpacaSettings(port=sims.port, devices={"weather": None}))
    try:
        assert set(obs.names) == {"weather"} and not obs.mount
        readings = obs.weather.readings()
        assert readings.station_safe is True and readings.wind_m_s is None
        obs.wait_connected(5.0)
    finally:
        obs.close()
