"""The simulated observatory: pure-Python INDI drivers (indipydriver) served by indipyserver.

Run ``python -m devices.simulators --host 127.0.0.1 --port 7624`` (see ``--help``). The drivers
use the standard INDI properties, so any INDI client (PyROS, KStars/Ekos, ``indi_getprop``) can
drive them; simulator-only controls are extra vectors (see :mod:`devices.simulators.control`).
"""

from __future__ import annotations

import asyncio
import logging
import signal

from devices.simulators.base import DEFAULT_NAMES, SharedState, SimulatorConfig, default_site
from devices.simulators.server import patch_indipyserver

__all__ = ["DEFAULT_NAMES", "SimulatorConfig", "build_drivers", "default_site", "serve"]

logger = logging.getLogger("devices.simulators")


def build_drivers(config: SimulatorConfig) -> list:
    from devices.simulators.camera import CameraDriver
    from devices.simulators.dome import DomeDriver
    from devices.simulators.focuser import FocuserDriver
    from devices.simulators.mount import MountDriver
    from devices.simulators.watchdog import WatchdogDriver
    from devices.simulators.weather import WeatherDriver
    from devices.simulators.wheel import FilterWheelDriver

    shared = SharedState(config=config, site=config.site)
    names = {**DEFAULT_NAMES, **config.names}
    drivers = [
        MountDriver(shared, names["mount"]),
        DomeDriver(shared, names["dome"]),
        FilterWheelDriver(shared, names["filter_wheel"]),
        FocuserDriver(shared, names["focuser"]),
        CameraDriver(shared, names["camera"]),
        WeatherDriver(shared, names["weather"]),
        WatchdogDriver(shared, names["watchdog"]),
    ]
    for driver in drivers:
        shared.drivers.update({device_name: driver for device_name in driver})
    return drivers


async def serve(config: SimulatorConfig, *, host: str = "127.0.0.1", port: int = 7624, max_clients: int = 10) -> None:
    """Serve the simulated observatory until SIGINT/SIGTERM."""
    patch_indipyserver()
    from indipyserver import IPyServer

    if not host:
        # indipyserver listens on every interface for host None/"": PyROS listeners bind loopback only
        raise ValueError("give an explicit host (127.0.0.1); an empty host would listen on every interface")
    server = IPyServer(*build_drivers(config), host=host, port=port, maxconnections=max_clients)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, server.shutdown)
        except (NotImplementedError, RuntimeError):
            pass
    logger.info("simulated observatory on %s:%s (speed x%g)", host, port, config.speed)
    await server.asyncrun()
