"""Issue #20: the backoffice chooses per device kind which backend (INDI, ASCOM Alpaca, none) and which device;
the settings are the defaults. A choice is checked against the Alpaca server when saved, the discovery page
lists what answers on the network, and the processes holding a device connection reconnect with the new
choice at their next device use. The connection log says what each kind is connected to."""

from __future__ import annotations

import io
import logging
import os
import socket

import pytest
from astropy.io import fits
from django.urls import reverse

from devices.interfaces import Site as DeviceSite
from devices.testing import AlpacaSimulators, alpaca_simulators_unavailable_reason
from pyrosapp import models as m
from pyrosapp.models.devices import effective_device_configuration
from pyrosapp.tests.factories import UserFactory

ADD_URL = "admin:pyrosapp_deviceconfiguration_add"
DISCOVER_URL = "admin:pyrosapp_deviceconfiguration_discover"


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def admin_client(client, transactional_db):
    client.force_login(UserFactory(email="devices@example.org", role=m.User.Role.ADMINISTRATOR, is_staff=True,
                                   is_superuser=True))
    return client


@pytest.fixture
def alpaca_sims(tmp_path):
    reason = alpaca_simulators_unavailable_reason()
    if reason:
        if os.environ.get("PYROS_REQUIRE_SERVICES") == "1":
            pytest.fail(f"required in CI: {reason}")
        pytest.skip(reason)
    sims = AlpacaSimulators(tmp_path / "alpaca", site=DeviceSite(43.93, 5.71, 650.0),
                            discovery_port=_free_udp_port()).start()
    try:
        yield sims
    finally:
        sims.stop()


def _add(admin_client, **fields):
    data = {"kind": "camera", "backend": "alpaca", "indi_device": "", "alpaca_host": "", "alpaca_port": "",
            "alpaca_number": ""}
    data.update({k: "" if v is None else str(v) for k, v in fields.items()})
    return admin_client.post(reverse(ADD_URL), data)


# -- precedence ---------------------------------------------------------------------------------

def test_the_backoffice_overrides_the_settings_per_kind_and_field():
    env = {"PYROS_DEVICE_BACKEND": "alpaca", "PYROS_ALPACA_HOST": "10.0.0.5", "PYROS_ALPACA_PORT": "11112",
           "PYROS_ALPACA_MOUNT": "3", "PYROS_ALPACA_CAMERA": "2", "PYROS_INDI_DOME": "Dome Simulator"}
    settings_only = effective_device_configuration(rows=[], env=env)
    assert settings_only.backends["camera"] == "alpaca" and settings_only.backends["watchdog"] == "none"
    assert str(settings_only.alpaca.address("camera")) == "10.0.0.5:11112/2"

    rows = [
        m.DeviceConfiguration(kind="camera", backend="indi", indi_device="CCD Simulator"),
        m.DeviceConfiguration(kind="mount", backend="alpaca", alpaca_port=11200),  # number and host: settings
        m.DeviceConfiguration(kind="focuser", backend="alpaca", alpaca_host="obs-pc", alpaca_number=1),
        m.DeviceConfiguration(kind="safety_monitor", backend="none"),
    ]
    both = effective_device_configuration(rows=rows, env=env)
    assert both.backends["camera"] == "indi" and both.indi_names == {"camera": "CCD Simulator",
                                                                     "dome": "Dome Simulator"}
    assert str(both.alpaca.address("mount")) == "10.0.0.5:11200/3"
    assert str(both.alpaca.address("focuser")) == "obs-pc:11112/1"
    assert both.alpaca.address("safety_monitor") is None
    assert both.backends["dome"] == "alpaca"  # no row: the settings decide
    assert set(both.from_backoffice) == {"camera", "mount", "focuser", "safety_monitor"}
    assert both.signature != settings_only.signature
    assert effective_device_configuration(rows=[], env=env).signature == settings_only.signature


def test_impossible_choices_are_refused_by_the_form(admin_client):
    response = _add(admin_client, kind="watchdog", backend="alpaca")
    assert response.status_code == 200
    assert "ASCOM Alpaca has no watchdog device" in response.content.decode()
    response = _add(admin_client, kind="safety_monitor", backend="indi")
    assert "The safety monitor is an Alpaca device" in response.content.decode()
    response = _add(admin_client, kind="camera", backend="alpaca", alpaca_host="127.0.0.1:11111", alpaca_number=0)
    assert "the port has its own field" in response.content.decode()
    assert not m.DeviceConfiguration.objects.exists()


def test_an_unreachable_alpaca_server_is_refused(admin_client):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    response = _add(admin_client, alpaca_host="127.0.0.1", alpaca_port=port, alpaca_number=0)
    assert response.status_code == 200
    assert f"the Alpaca server 127.0.0.1:{port} does not answer" in response.content.decode()
    assert not m.DeviceConfiguration.objects.exists()


# -- against the Alpaca simulators --------------------------------------------------------------

@pytest.mark.slow
def test_a_bad_device_number_is_refused_and_changes_nothing(admin_client, alpaca_sims):
    m.DeviceConfiguration.objects.create(kind="camera", backend="indi", indi_device="PyROS Camera")
    before = effective_device_configuration().signature
    row = m.DeviceConfiguration.objects.get(kind="camera")
    response = admin_client.post(reverse("admin:pyrosapp_deviceconfiguration_change", args=[row.pk]), {
        "kind": "camera", "backend": "alpaca", "indi_device": "PyROS Camera", "alpaca_host": "127.0.0.1",
        "alpaca_port": str(alpaca_sims.port), "alpaca_number": "7"})
    assert response.status_code == 200
    page = response.content.decode()
    assert f"the Alpaca server 127.0.0.1:{alpaca_sims.port} has no camera number 7" in page
    assert "camera numbers there: 0 (" in page  # what the operator can pick instead
    row.refresh_from_db()
    assert (row.backend, row.alpaca_number) == ("indi", None)
    assert effective_device_configuration().signature == before


@pytest.mark.slow
def test_the_discovery_page_lists_the_simulators_and_picks_one(admin_client, alpaca_sims, settings):
    settings.PYROS_ALPACA_DISCOVERY_PORT = alpaca_sims.discovery_port
    page = admin_client.get(reverse(DISCOVER_URL)).content.decode()
    server = f"127.0.0.1:{alpaca_sims.port}"
    assert server in page and "Use as the camera" in page and "Use as the safety monitor" in page
    assert "Use as the mount" in page and "Use as the filter wheel" in page
    assert 'id="device-configuration"' in page and "settings" in page  # what each kind uses now

    refused = admin_client.post(reverse(DISCOVER_URL), {"kind": "camera", "host": "127.0.0.1",
                                                        "port": alpaca_sims.port, "number": 9}, follow=True)
    assert "Nothing changed" in refused.content.decode() and "has no camera number 9" in refused.content.decode()
    assert not m.DeviceConfiguration.objects.exists()

    response = admin_client.post(reverse(DISCOVER_URL), {"kind": "camera", "host": "127.0.0.1",
                                                         "port": alpaca_sims.port, "number": 0}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("admin:pyrosapp_deviceconfiguration_changelist")
    row = m.DeviceConfiguration.objects.get(kind="camera")
    assert (row.backend, row.alpaca_host, row.alpaca_port, row.alpaca_number) == ("alpaca", "127.0.0.1",
                                                                                  alpaca_sims.port, 0)
    assert "reconnect with it at their next device use" in response.content.decode()
    page = admin_client.get(reverse(DISCOVER_URL)).content.decode()
    assert f"{server} #0</td><td>backoffice" in page
    listing = admin_client.get(reverse("admin:pyrosapp_deviceconfiguration_changelist")).content.decode()
    assert "Discover Alpaca devices" in listing and f"Alpaca {server}/0" in listing


@pytest.mark.slow
def test_choosing_alpaca_for_the_camera_in_the_backoffice_switches_the_next_connection(
        night_observatory, admin_client, alpaca_sims, caplog, monkeypatch):
    from devices.alpaca.backend import AlpacaCamera
    from majordome import device_link

    _, indi_port = night_observatory
    caplog.set_level(logging.INFO, logger="pyros.majordome")
    first = device_link.get_observatory()
    assert first.backends["camera"] == "indi"
    line = [r.getMessage() for r in caplog.records if r.getMessage().startswith("connected to the devices")][-1]
    assert f'camera INDI 127.0.0.1:{indi_port} "PyROS Camera"' in line and "Alpaca" not in line
    assert f'mount INDI 127.0.0.1:{indi_port} "PyROS Mount"' in line

    response = _add(admin_client, kind="camera", backend="alpaca", alpaca_host="127.0.0.1",
                    alpaca_port=alpaca_sims.port, alpaca_number=0)
    assert response.status_code == 302, response.content.decode()[:2000]

    caplog.clear()
    monkeypatch.setattr(device_link, "CONFIG_CHECK_S", 0.0)  # the next use looks at once
    observatory = device_link.get_observatory(blobs=True)
    assert observatory is not first and not first.link.connected  # the old connection is closed
    assert observatory.backends["camera"] == "alpaca" and isinstance(observatory.camera, AlpacaCamera)
    assert observatory.backends["mount"] == "indi"  # the other kinds keep the settings
    messages = [r.getMessage() for r in caplog.records]
    assert any(msg.startswith("device configuration changed (camera -> alpaca): reconnecting") for msg in messages)
    line = [msg for msg in messages if msg.startswith("connected to the devices (with images)")][-1]
    assert f"camera Alpaca 127.0.0.1:{alpaca_sims.port} #0 " in line and "[backoffice]" in line
    assert f'mount INDI 127.0.0.1:{indi_port} "PyROS Mount"' in line

    frame = observatory.camera.expose(duration_s=0.1, frame_type="DARK")
    header = fits.getheader(io.BytesIO(frame))
    assert header["SWCREATE"] == "PyROS devices.alpaca" and header["INSTRUME"] == observatory.names["camera"]
    assert device_link.get_observatory(blobs=True) is observatory  # unchanged configuration: same connection

    # the database unreadable: the connection in use is kept (said once)
    from django.db import OperationalError

    import pyrosapp.models.devices as devices_models

    def unreadable(*args, **kwargs):
        if kwargs.get("rows") == []:
            return effective(*args, **kwargs)
        raise OperationalError("server closed the connection")

    effective = devices_models.effective_device_configuration
    monkeypatch.setattr(devices_models, "effective_device_configuration", unreadable)
    caplog.clear()
    assert device_link.get_observatory(blobs=True) is observatory
    assert device_link.get_observatory(blobs=True) is observatory
    warnings = [r.getMessage() for r in caplog.records if "not readable" in r.getMessage()]
    assert len(warnings) == 1 and "keeping the current one" in warnings[0]
    monkeypatch.setattr(devices_models, "effective_device_configuration", effective)

    # the row deleted: back to the settings (INDI) at the next use
    m.DeviceConfiguration.objects.all().delete()
    assert device_link.get_observatory(blobs=True).backends["camera"] == "indi"
