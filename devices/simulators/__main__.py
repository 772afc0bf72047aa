"""``python -m devices.simulators``: serve the simulated observatory over INDI."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os

from devices.interfaces import Site
from devices.simulators import DEFAULT_NAMES, SimulatorConfig, default_site, serve
from devices.simulators.base import DEFAULT_WATCHDOG_TIMEOUT_S


def main(argv: list[str] | None = None) -> None:
    site = default_site()
    parser = argparse.ArgumentParser(prog="python -m devices.simulators", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7624)
    parser.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="time factor for slews, settling, shutter, filter moves and readout (10 = ten times faster)",
    )
    parser.add_argument("--seeing", type=float, default=2.0, help="seeing FWHM in arcsec")
    parser.add_argument("--max-clients", type=int, default=10, help="simultaneous INDI clients (1-10)")
    parser.add_argument("--latitude", type=float, default=site.latitude_deg, help="site latitude (env PYROS_SITE_LAT)")
    parser.add_argument("--longitude", type=float, default=site.longitude_deg, help="east longitude (PYROS_SITE_LON)")
    parser.add_argument("--elevation", type=float, default=site.elevation_m, help="metres (PYROS_SITE_ELEV)")
    parser.add_argument("--min-altitude", type=float, default=site.min_altitude_deg, help="horizon limit, degrees")
    parser.add_argument("--readout", type=float, default=0.5, help="camera readout time, s (divided by --speed)")
    parser.add_argument("--weather-period", type=float, default=10.0, help="weather update period, s")
    parser.add_argument(
        "--watchdog-timeout",
        type=float,
        default=float(os.environ.get("PYROS_WATCHDOG_S", DEFAULT_WATCHDOG_TIMEOUT_S)),
        help="watchdog heartbeat threshold at start-up, real seconds (env PYROS_WATCHDOG_S, default 60); "
        "the watchdog starts disarmed",
    )
    parser.add_argument(
        "--no-dome-light-block", action="store_true", help="let light reach the camera with the dome shutter closed"
    )
    for kind, default in DEFAULT_NAMES.items():
        parser.add_argument(f"--{kind.replace('_', '-')}-name", default=default, help=f"INDI device name ({default!r})")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    if not 1 <= args.max_clients <= 10:
        parser.error("--max-clients must be 1-10 (indipyserver's limit)")
    if args.speed <= 0:
        parser.error("--speed must be > 0")
    if not 0 < args.watchdog_timeout <= 3600:
        parser.error("--watchdog-timeout must be in (0, 3600] s")
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = SimulatorConfig(
        speed=args.speed,
        seeing_fwhm_arcsec=args.seeing,
        site=Site(args.latitude, args.longitude, args.elevation, args.min_altitude),
        names={kind: getattr(args, f"{kind}_name") for kind in DEFAULT_NAMES},
        readout_s=args.readout,
        weather_period_s=args.weather_period,
        dome_blocks_light=not args.no_dome_light_block,
        watchdog_timeout_s=args.watchdog_timeout,
    )
    try:
        asyncio.run(serve(config, host=args.host, port=args.port, max_clients=args.max_clients))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
