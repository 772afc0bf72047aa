"""One persistent INDI connection per process, shared by its threads.

Each PyROS process that talks to devices (execution worker, alerts worker, monitoring worker)
keeps a single `devices.observatory.Observatory`; it reconnects by itself after a drop
(devices layer). Processes that take no images connect without the BLOB channel.
"""

from __future__ import annotations

import logging
import threading

from django.conf import settings

from devices.interfaces import Site as DeviceSite

log = logging.getLogger("pyros.majordome")

_lock = threading.Lock()
_observatory = None
_with_blobs = False


def device_site() -> DeviceSite:
    from majordome.selectors import active_site

    site = active_site()
    return DeviceSite(latitude_deg=site.latitude_deg, longitude_deg=site.longitude_deg, elevation_m=site.elevation_m,
                      min_altitude_deg=site.horizon_min_altitude_deg)


def get_observatory(*, blobs: bool = False, timeout_s: float = 10.0):
    """The process's observatory connection (created on first use). `blobs=True` for the process
    that takes images; a process that asked without BLOBs and later needs them reconnects once."""
    global _observatory, _with_blobs
    from devices.observatory import connect

    with _lock:
        if _observatory is not None and (blobs and not _with_blobs):
            _observatory.close()
            _observatory = None
        if _observatory is None:
            _observatory = connect(settings.PYROS_INDI_HOST, settings.PYROS_INDI_PORT, site=device_site(),
                                   timeout_s=timeout_s, blobs=blobs)
            _with_blobs = blobs
            log.info("connected to the INDI server %s:%s%s", settings.PYROS_INDI_HOST, settings.PYROS_INDI_PORT,
                     " (with images)" if blobs else "")
        return _observatory


def reset_observatory() -> None:
    """Drop the connection (tests, or after the site changed)."""
    global _observatory
    with _lock:
        if _observatory is not None:
            _observatory.close()
        _observatory = None
