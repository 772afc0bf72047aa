"""One persistent device connection per process, shared by its threads.

Each PyROS process that talks to devices (execution worker, alerts worker, safety process, procedures
worker) keeps a single `devices.observatory.Observatory`; it reconnects by itself after a drop (devices
layer). Processes that take no images connect without the BLOB channel.

Which backend drives each device kind (INDI, ASCOM Alpaca, none) and which device: the settings
(environment) give the defaults, the backoffice's device backends (pyrosapp.DeviceConfiguration) override
them per kind. A process reads that configuration when it connects, and again at its next device use once
CONFIG_CHECK_S have passed: when it changed, the connection is closed and made again with the new choice
(an operation running on the old connection ends with a device error, retried as any other).
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings

from devices.interfaces import Site as DeviceSite

log = logging.getLogger("pyros.majordome")

CONFIG_CHECK_S = 3.0  # how often a process looks for a new device configuration (at its next device use)

_lock = threading.Lock()
_observatory = None
_with_blobs = False
_configuration = None  # the EffectiveDevices the connection was made with
_checked_at = float("-inf")
_unreadable_logged = False


def device_site() -> DeviceSite:
    from majordome.selectors import active_site

    site = active_site()
    return DeviceSite(latitude_deg=site.latitude_deg, longitude_deg=site.longitude_deg, elevation_m=site.elevation_m,
                      min_altitude_deg=site.horizon_min_altitude_deg)


def _read_configuration():
    """The effective device configuration (settings overridden by the backoffice); when the database cannot
    be read, the one in use (or the settings alone before the first connection), logged once."""
    global _unreadable_logged
    from pyrosapp.models.devices import effective_device_configuration

    try:
        configuration = effective_device_configuration()
        _unreadable_logged = False
        return configuration
    except ValueError:
        raise  # a wrong setting: said by the connection attempt
    except Exception as exc:  # noqa: BLE001 - database down: keep driving the devices
        from django.db import connection

        try:
            connection.close()  # this thread's connection may be broken for good (a database restart): open anew
        except Exception:  # noqa: BLE001
            log.debug("closing the database connection failed", exc_info=True)
        if not _unreadable_logged:
            log.warning("device configuration not readable from the database (%s): %s", exc,
                        "keeping the current one" if _configuration is not None else "using the settings alone")
            _unreadable_logged = True
        return _configuration or effective_device_configuration(rows=[])


def get_observatory(*, blobs: bool = False, timeout_s: float = 10.0):
    """The process's observatory connection (created on first use). `blobs=True` for the process
    that takes images; a process that asked without BLOBs and later needs them reconnects once; a
    changed device configuration (backoffice) reconnects at the first call CONFIG_CHECK_S after the last look."""
    global _observatory, _with_blobs, _configuration, _checked_at
    from devices.observatory import connect

    with _lock:
        configuration = _configuration
        if _observatory is None or time.monotonic() - _checked_at >= CONFIG_CHECK_S:
            configuration = _read_configuration()
            _checked_at = time.monotonic()
        if _observatory is not None and configuration.signature != _configuration.signature:
            log.warning("device configuration changed (%s): reconnecting",
                        describe_change(_configuration, configuration))
            _observatory.close()
            _observatory = None
        if _observatory is not None and (blobs and not _with_blobs):
            _observatory.close()
            _observatory = None
        if _observatory is None:
            _observatory = connect(settings.PYROS_INDI_HOST, settings.PYROS_INDI_PORT, site=device_site(),
                                   timeout_s=timeout_s, blobs=blobs, backends=configuration.backends,
                                   alpaca=configuration.alpaca, names=configuration.indi_names)
            _with_blobs = blobs
            _configuration = configuration
            log.info("connected to the devices%s: %s", " (with images)" if blobs else "",
                     describe(_observatory, configuration))
        return _observatory


def describe(observatory, configuration=None) -> str:
    """What each device kind is connected to: backend, server, device, and where the choice came from."""
    from devices.observatory import KINDS

    chosen_here = set(configuration.from_backoffice) if configuration is not None else set()
    parts = []
    for kind in KINDS:
        backend = observatory.backends.get(kind, "indi")
        name = observatory.names.get(kind)
        if backend == "indi" and observatory.link is not None:
            where = f"INDI {observatory.link.host}:{observatory.link.port} " + (f'"{name}"' if name else "(absent)")
        elif backend == "alpaca" and observatory.alpaca is not None:
            address = observatory.alpaca.addresses.get(kind)
            where = (f'Alpaca {address.host}:{address.port} #{address.number} "{name}"' if address and name
                     else "Alpaca (absent)")
            safety = observatory.alpaca.addresses.get("safety_monitor") if kind == "weather" else None
            if safety is not None:
                where += f" + safety monitor {safety.host}:{safety.port} #{safety.number}"
        else:
            where = "none"
        parts.append(f"{kind} {where}" + (" [backoffice]" if kind in chosen_here else ""))
    return "; ".join(parts)


def describe_change(before, after) -> str:
    changed = [kind for kind in after.backends
               if before.backends.get(kind) != after.backends.get(kind)
               or str(before.alpaca.address(kind)) != str(after.alpaca.address(kind))
               or before.indi_names.get(kind) != after.indi_names.get(kind)]
    if str(before.alpaca.address("safety_monitor")) != str(after.alpaca.address("safety_monitor")):
        changed.append("safety_monitor")
    return ", ".join(f"{kind} -> {after.backends.get(kind, 'alpaca')}" for kind in changed) or "options"


def reset_observatory() -> None:
    """Drop the connection (tests, or after the site changed); the next use reads the configuration again."""
    global _observatory, _configuration, _checked_at
    with _lock:
        if _observatory is not None:
            _observatory.close()
        _observatory = None
        _configuration = None
        _checked_at = float("-inf")
