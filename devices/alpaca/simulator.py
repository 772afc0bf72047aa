"""``python -m devices.alpaca.simulator``: the ASCOM Alpaca simulators of PyPI's ``alpaca-simulators``,
offline and on loopback, configured as a PyROS observatory.

What this launcher adds to ``alpaca-simulators`` 1.3.2 (whose own ``alpaca-simulators`` command binds
0.0.0.0 and keeps its configuration inside site-packages):

- a configuration file of its own (``--workdir``): site, a 1280x1024 camera at 1"/px (10 um pixels
  behind a 2.063 m focal length), filters U B V R I Clear, a J2000 mount (``EquatorialSystem`` 2: the
  simulated camera renders the sky at the mount's coordinates as catalogue (J2000) positions);
- the camera's sky from a local SQLite catalogue (``tap_source``, table ``gaia_sources``) written from
  :func:`devices.sky.catalog_stars` around the ``--field`` centres given, so the analyzer's reference
  catalogue (the same function) matches the stars in the frames; no network access;
- a UDP discovery responder (ASCOM Alpaca discovery, ``alpacadiscovery1`` -> ``{"AlpacaPort": N}``)
  on ``--discovery-host``:``--discovery-port`` (the simulators have none);
- two fixes: ``AbortExposure`` cancels the running exposure (1.3.2 leaves it running, and when it ends
  it marks its image ready in the middle of the next exposure), and ``ImageArray`` answers JSON to a
  client that does not accept ``application/imagebytes`` (1.3.2 always sends ImageBytes, which the
  Alpaca API only allows when the client asks for it);
- a focuser that takes time to move (``--focuser-speed`` steps/s; 1.3.2's moves are instantaneous, so
  ``Halt`` could never stop one): ``IsMoving`` is true and ``Position`` changes until it arrives or halts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import sqlite3
from pathlib import Path

import numpy as np

from devices.interfaces import Site

logger = logging.getLogger("devices.alpaca.simulator")

FILTER_NAMES = ["U", "B", "V", "R", "I", "Clear"]
CAMERA_WIDTH, CAMERA_HEIGHT = 1280, 1024
PIXEL_SIZE_UM = 10.0
FOCAL_LENGTH_M = PIXEL_SIZE_UM * 1e-6 * 206264.806  # 1.0 arcsec per pixel
# The simulated camera's seeing is 1" x (1 + |focuser - 10000| / 100), at most 5": 10100 gives 2", as the
# INDI simulator's default seeing.
FOCUSER_START = 10100
CATALOGUE_MAG_LIMIT = 21.0


def write_catalogue(path: Path, fields: list[tuple[float, float, float]]) -> int:
    """SQLite catalogue (table ``gaia_sources``: ra, dec, phot_g_mean_mag) of devices.sky's stars within
    each (ra_deg, dec_deg, radius_deg) field, V magnitudes as G. Returns the number of stars."""
    from devices.sky import catalog_stars

    rows: dict[tuple[float, float], float] = {}
    for ra, dec, radius in fields:
        stars = catalog_stars(ra, dec, radius, mag_limit=CATALOGUE_MAG_LIMIT)
        for s_ra, s_dec, mag in zip(stars["ra_deg"], stars["dec_deg"], stars["mag_V"], strict=True):
            rows[(round(float(s_ra), 9), round(float(s_dec), 9))] = float(mag)
    path.unlink(missing_ok=True)
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE gaia_sources (ra REAL, dec REAL, phot_g_mean_mag REAL)")
        db.executemany("INSERT INTO gaia_sources VALUES (?, ?, ?)", [(r, d, m) for (r, d), m in rows.items()])
        db.execute("CREATE INDEX gaia_sources_dec ON gaia_sources (dec)")
    return len(rows)


def write_config(path: Path, *, site: Site, catalogue: Path, slew_rate_deg_s: float = 10.0) -> None:
    """The simulators' YAML configuration (the package's template with PyROS's devices)."""
    import yaml
    from alpaca_simulators.config import CONFIG_DIR

    config = yaml.safe_load((CONFIG_DIR / "template.yaml").read_text(encoding="utf-8"))
    devices = config["devices"]
    camera = devices["camera"][0]
    camera.update(
        cameraxsize=CAMERA_WIDTH, cameraysize=CAMERA_HEIGHT, numx=CAMERA_WIDTH, numy=CAMERA_HEIGHT,
        pixelsizex=PIXEL_SIZE_UM, pixelsizey=PIXEL_SIZE_UM, maxbinx=4, maxbiny=4, exposuremin=0.0,
    )
    telescope = devices["telescope"][0]
    telescope.update(
        focallength=FOCAL_LENGTH_M, aperturediameter=0.6, aperturearea=0.283, equatorialsystem=2,
        sitelatitude=site.latitude_deg, sitelongitude=((site.longitude_deg + 180.0) % 360.0) - 180.0,
        siteelevation=site.elevation_m, slew_rate=slew_rate_deg_s,
    )
    devices["filterwheel"][0].update(names=list(FILTER_NAMES), focusoffsets=[0] * len(FILTER_NAMES), position=0)
    devices["focuser"][0].update(position=FOCUSER_START, temperature=12.0)
    config.update(tap_source=str(catalogue), gaia_query_timeout=30, sunlight=False, bad_tracking=False)
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# Fixes to alpaca-simulators 1.3.2
# ---------------------------------------------------------------------------------------------

_ABORT_PATH = re.compile(r"^/api/v1/camera/(\d+)/(abortexposure|stopexposure)$")
_IMAGE_PATH = re.compile(r"^/api/v1/camera/(\d+)/imagearray(variant)?$")
_FOCUSER_PATH = re.compile(r"^/api/v1/focuser/(\d+)/(move|halt)$")
_IMAGE_DTYPES = {1: "<i2", 2: "<i4", 3: "<f8", 4: "<f4", 6: "u1", 8: "<u2", 9: "<u4"}
_exposures: dict[int, asyncio.Task] = {}
_focuser_moves: dict[int, asyncio.Task] = {}
focuser_speed_steps_s = 10000.0  # 0: instantaneous moves, as alpaca-simulators' own


def patch_simulators() -> None:
    """Track each exposure task so that AbortExposure can cancel it."""
    from alpaca_simulators.api import camera

    original = camera.exposure_task
    if getattr(original, "pyros_tracked", False):
        return

    async def tracked_exposure(device_number: int, duration: float, light: bool) -> None:
        previous = _exposures.pop(device_number, None)
        if previous is not None:
            previous.cancel()
        task = asyncio.get_running_loop().create_task(original(device_number, duration, light))
        _exposures[device_number] = task
        task.add_done_callback(lambda t: _exposures.pop(device_number, None) if _exposures.get(device_number) is t
                               else None)

    tracked_exposure.pyros_tracked = True
    camera.exposure_task = tracked_exposure


def _imagebytes_to_json(body: bytes) -> bytes:
    """An ImageBytes body as the Alpaca JSON image answer (Type, Rank, Value[x][y])."""
    header = np.frombuffer(body[:44], dtype="<i4")
    error, data_start, element_type, transmission_type, rank = header[1], header[4], header[5], header[6], header[7]
    if error:
        message = body[data_start:].decode("utf-8", "replace")
        return json.dumps({"ErrorNumber": int(error), "ErrorMessage": message, "Value": None}).encode()
    dims = [int(d) for d in header[8 : 8 + rank]]
    pixels = np.frombuffer(body[data_start:], dtype=_IMAGE_DTYPES[int(transmission_type)]).reshape(dims)
    value = pixels.tolist()
    return json.dumps({"Type": int(element_type), "Rank": int(rank), "Value": value, "ClientTransactionID": 0,
                       "ServerTransactionID": 0, "ErrorNumber": 0, "ErrorMessage": ""}, separators=(",", ":")).encode()


async def _move_focuser(device_number: int, start: int, target: int) -> None:
    from alpaca_simulators.state import update_device_state

    position, step_s = float(start), 0.02
    try:
        while int(round(position)) != target:
            await asyncio.sleep(step_s)
            delta = focuser_speed_steps_s * step_s
            position = min(position + delta, target) if target > position else max(position - delta, target)
            update_device_state("focuser", device_number, {"position": int(round(position)), "ismoving": True})
    finally:
        update_device_state("focuser", device_number, {"ismoving": False})


class FixesMiddleware:
    """ASGI middleware: cancel an exposure on AbortExposure (StopExposure still reads it out), turn
    ImageBytes into JSON for clients that did not ask for ImageBytes, and make focuser moves take time
    (``Halt`` cancels the motion where it is)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        abort = _ABORT_PATH.match(path)
        if abort and scope["method"] == "PUT" and abort.group(2) == "abortexposure":
            task = _exposures.pop(int(abort.group(1)), None)
            if task is not None:
                task.cancel()
            return await self.app(scope, receive, send)
        focuser = _FOCUSER_PATH.match(path)
        if focuser and scope["method"] == "PUT" and focuser_speed_steps_s > 0:
            return await self._focuser(int(focuser.group(1)), focuser.group(2), scope, receive, send)
        if _IMAGE_PATH.match(path) and scope["method"] == "GET":
            accept = dict(scope.get("headers") or []).get(b"accept", b"")
            if b"application/imagebytes" not in accept.lower():
                return await self._as_json(scope, receive, send)
        return await self.app(scope, receive, send)

    async def _focuser(self, number: int, action: str, scope, receive, send):
        from alpaca_simulators.state import get_device_state, update_device_state

        moving = _focuser_moves.pop(number, None)
        if moving is not None:
            moving.cancel()
        if action == "halt":
            return await self.app(scope, receive, send)
        start = int(get_device_state("focuser", number).get("position", 0))

        async def rewind(message):
            # the simulator has put the focuser at its target: put it back and move it there in time,
            # before the answer leaves (nobody can read the instantaneous position in between)
            if message["type"] == "http.response.start":
                target = int(get_device_state("focuser", number).get("position", start))
                if target != start:
                    update_device_state("focuser", number, {"position": start, "ismoving": True})
                    task = asyncio.get_running_loop().create_task(_move_focuser(number, start, target))
                    _focuser_moves[number] = task
            await send(message)

        return await self.app(scope, receive, rewind)

    async def _as_json(self, scope, receive, send):
        start: dict = {}
        chunks: list[bytes] = []

        async def capture(message):
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    body = b"".join(chunks)
                    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() not in (b"content-type",
                                                                                             b"content-length")]
                    content_type = dict(start.get("headers", [])).get(b"content-type", b"")
                    if b"imagebytes" in content_type:
                        body = await asyncio.to_thread(_imagebytes_to_json, body)
                    headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
                    await send({"type": "http.response.start", "status": start.get("status", 200), "headers": headers})
                    await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, capture)


def main(argv: list[str] | None = None) -> None:
    from devices.simulators.base import default_site

    site = default_site()
    parser = argparse.ArgumentParser(prog="python -m devices.alpaca.simulator", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=11111)
    parser.add_argument("--workdir", required=True, help="folder for the configuration and the catalogue")
    parser.add_argument("--latitude", type=float, default=site.latitude_deg)
    parser.add_argument("--longitude", type=float, default=site.longitude_deg)
    parser.add_argument("--elevation", type=float, default=site.elevation_m)
    parser.add_argument("--field", action="append", default=[], metavar="RA,DEC[,RADIUS]",
                        help="render catalogue stars around this J2000 centre (degrees; radius 1 by default); "
                             "repeat for several fields; elsewhere the sky has no stars")
    parser.add_argument("--slew-rate", type=float, default=10.0, help="mount slew rate, deg/s")
    parser.add_argument("--focuser-speed", type=float, default=10000.0,
                        help="focuser speed, steps/s (0: instantaneous moves, as alpaca-simulators' own)")
    parser.add_argument("--discovery-port", type=int, default=32227, help="UDP discovery port (0: no responder)")
    parser.add_argument("--discovery-host", default="127.0.0.1")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    fields = []
    for text in args.field:
        parts = [float(p) for p in text.split(",")]
        fields.append((parts[0], parts[1], parts[2] if len(parts) > 2 else 1.0))
    catalogue = workdir / "catalogue.sqlite"
    count = write_catalogue(catalogue, fields)
    config_path = workdir / "config.yaml"
    write_config(config_path, site=Site(args.latitude, args.longitude, args.elevation), catalogue=catalogue,
                 slew_rate_deg_s=args.slew_rate)
    logger.info("catalogue of %d stars in %s", count, catalogue)

    # alpaca_simulators reads its configuration's name from the environment when first imported
    os.environ["ASTRA_SIMULATORS_CONFIG"] = str(config_path)
    import uvicorn
    from alpaca_simulators.main import app

    global focuser_speed_steps_s
    focuser_speed_steps_s = max(0.0, args.focuser_speed)
    patch_simulators()
    app.add_middleware(FixesMiddleware)
    responder = None
    if args.discovery_port:
        from devices.alpaca.discovery import DiscoveryResponder

        responder = DiscoveryResponder(args.port, host=args.discovery_host, port=args.discovery_port)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level.lower(), timeout_keep_alive=300,
                    access_log=False)
    finally:
        if responder is not None:
            responder.close()


if __name__ == "__main__":
    main()
