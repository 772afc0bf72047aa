"""Simulated CCD camera (standard INDI CCD properties) that renders the sky with devices.sky.

An exposure lasts its duration, then the readout time, then the FITS file goes out on the BLOB
``CCD1``. The frame is rendered in a worker thread while the exposure runs (pointing, filter and
dome state sampled at the start), so delivery does not wait for the renderer. ``SIM_TRANSIENT``
injects a fading point source; ``SIM_SKY`` sets seeing, Moon and Sun (for twilight).

The sky is the synthetic one unless ``PYROS_SIMULATOR_CATALOG`` names a catalogue
(``local:PATH`` a catalogue file, ``gaia:CACHE_DIR`` a Gaia DR3 cache: a simulated real field);
``PYROS_SIMULATOR_POINTING_ERROR_ARCSEC`` ("east,north") offsets the rendered sky from the header's
pointing and ``PYROS_SIMULATOR_DISTORTION_PX`` bends the field (stars moved that much at the corners)."""

from __future__ import annotations

import asyncio
import logging
import math
import os
from datetime import UTC, datetime

from indipydriver import BLOBMember, BLOBVector, Device, IPyDriver

from devices import catalogs, coords, sky
from devices.simulators.base import (
    SharedState,
    connection_vector,
    handle_connection_switch,
    number_vector,
    on_switch,
    publish,
    refuse_if_disconnected,
    spawn,
    switch_vector,
    text_vector,
)

FRAME_MEMBERS = {"FRAME_LIGHT": "LIGHT", "FRAME_BIAS": "BIAS", "FRAME_DARK": "DARK", "FRAME_FLAT": "FLAT"}
AMBIENT_C = 10.0
COOLING_C_PER_S = 1.0
log = logging.getLogger("pyros.devices.simulators")


def sky_from_environment() -> tuple[catalogs.ReferenceCatalog | None, tuple[float, float], float]:
    """(catalogue or None for the synthetic sky, pointing error east/north arcsec, distortion px)."""
    spec = os.environ.get("PYROS_SIMULATOR_CATALOG", "").strip()
    catalog = None if spec in ("", "simulated") else catalogs.catalog_from_spec(spec)
    error = os.environ.get("PYROS_SIMULATOR_POINTING_ERROR_ARCSEC", "").strip()
    east, _, north = error.partition(",")
    pointing_error = (float(east or 0.0), float(north or 0.0))
    distortion = float(os.environ.get("PYROS_SIMULATOR_DISTORTION_PX", "") or 0.0)
    return catalog, pointing_error, distortion


class CameraDriver(IPyDriver):
    def __init__(self, shared: SharedState, name: str, camera: sky.CameraModel | None = None) -> None:
        self.shared = shared
        self.cfg = shared.config
        self.model = camera or sky.CameraModel(readout_s=self.cfg.readout_s)
        m = self.model
        self.exposure = number_vector(
            "CCD_EXPOSURE",
            "Expose",
            "Main Control",
            "rw",
            [("CCD_EXPOSURE_VALUE", "Duration (s)", "%5.2f", 0, 3600, 0.001, 1.0)],
            state="Idle",
        )
        self.abort_vector = switch_vector(
            "CCD_ABORT_EXPOSURE", "Abort", "Main Control", "AtMostOne", [("ABORT", "Abort", "Off")]
        )
        self.frame_type = switch_vector(
            "CCD_FRAME_TYPE",
            "Frame Type",
            "Image Settings",
            "OneOfMany",
            [
                ("FRAME_LIGHT", "Light", "On"),
                ("FRAME_BIAS", "Bias", "Off"),
                ("FRAME_DARK", "Dark", "Off"),
                ("FRAME_FLAT", "Flat", "Off"),
            ],
            state="Ok",
        )
        self.binning = number_vector(
            "CCD_BINNING",
            "Binning",
            "Image Settings",
            "rw",
            [("HOR_BIN", "X", "%2.0f", 1, 4, 1, 1), ("VER_BIN", "Y", "%2.0f", 1, 4, 1, 1)],
            state="Ok",
        )
        self.temperature = number_vector(
            "CCD_TEMPERATURE",
            "Temperature",
            "Main Control",
            "rw",
            [("CCD_TEMPERATURE_VALUE", "Temperature (C)", "%5.2f", -50, 50, 0, AMBIENT_C)],
            state="Idle",
        )
        self.info = number_vector(
            "CCD_INFO",
            "CCD Information",
            "Image Info",
            "ro",
            [
                ("CCD_MAX_X", "Max. Width", "%4.0f", 1, 16000, 0, m.width_px),
                ("CCD_MAX_Y", "Max. Height", "%4.0f", 1, 16000, 0, m.height_px),
                ("CCD_PIXEL_SIZE", "Pixel size (um)", "%5.2f", 1, 40, 0, 13.5),
                ("CCD_PIXEL_SIZE_X", "Pixel size X", "%5.2f", 1, 40, 0, 13.5),
                ("CCD_PIXEL_SIZE_Y", "Pixel size Y", "%5.2f", 1, 40, 0, 13.5),
                ("CCD_BITSPERPIXEL", "Bits per pixel", "%3.0f", 8, 64, 0, 16),
            ],
            state="Ok",
        )
        self.upload_mode = switch_vector(
            "UPLOAD_MODE",
            "Upload",
            "Options",
            "OneOfMany",
            [("UPLOAD_CLIENT", "Client", "On"), ("UPLOAD_LOCAL", "Local", "Off"), ("UPLOAD_BOTH", "Both", "Off")],
            state="Ok",
        )
        self.fits_header = text_vector(
            "FITS_HEADER",
            "FITS Header",
            "Options",
            "rw",
            [("FITS_OBSERVER", "Observer", "PyROS"), ("FITS_OBJECT", "Object", "")],
            state="Ok",
        )
        self.active_devices = text_vector(
            "ACTIVE_DEVICES",
            "Snoop devices",
            "Options",
            "rw",
            [
                ("ACTIVE_TELESCOPE", "Telescope", shared.config.names["mount"]),
                ("ACTIVE_FILTER", "Filter", shared.config.names["filter_wheel"]),
                ("ACTIVE_FOCUSER", "Focuser", shared.config.names.get("focuser", "")),
            ],
            state="Ok",
        )
        self.ccd1 = BLOBVector(
            name="CCD1",
            label="Image Data",
            group="Image Info",
            perm="ro",
            state="Idle",
            blobmembers=[BLOBMember(name="CCD1", label="Image", blobformat=".fits")],
        )
        self.transient = number_vector(
            "SIM_TRANSIENT",
            "Inject transient",
            "Simulation",
            "rw",
            [
                ("RA", "RA J2000 (deg)", "%.6f", 0, 360, 0, 0.0),
                ("DEC", "Dec J2000 (deg)", "%.6f", -90, 90, 0, 0.0),
                ("MAG0", "Magnitude at t0", "%.3f", -5, 30, 0, 15.0),
                ("DECAY", "Decay index alpha", "%.3f", -5, 5, 0, 1.0),
                ("T0", "t0 (Unix s, UTC)", "%.3f", 0, 1e11, 0, 0.0),
                ("T_REF", "Plateau (s)", "%.1f", 0, 1e6, 0, 60.0),
            ],
        )
        self.transient_clear = switch_vector(
            "SIM_TRANSIENT_CLEAR", "Clear transients", "Simulation", "AtMostOne", [("CLEAR", "Clear all", "Off")]
        )
        self.sim_sky = number_vector(
            "SIM_SKY",
            "Sky conditions",
            "Simulation",
            "rw",
            [
                ("SEEING", "Seeing FWHM (arcsec)", "%.2f", 0.3, 20, 0, self.cfg.seeing_fwhm_arcsec),
                ("MOON_ILLUMINATION", "Moon illumination (0-1, 0 = below horizon)", "%.2f", 0, 1, 0, 0.0),
                ("MOON_SEPARATION", "Moon separation (deg)", "%.1f", 0, 180, 0, 90.0),
                ("SUN_ALT", "Sun altitude (deg)", "%.1f", -90, 90, 0, -30.0),
            ],
            state="Ok",
        )
        self.connection = connection_vector()
        super().__init__(
            Device(
                name,
                [
                    self.connection,
                    self.exposure,
                    self.abort_vector,
                    self.frame_type,
                    self.binning,
                    self.temperature,
                    self.info,
                    self.upload_mode,
                    self.fits_header,
                    self.active_devices,
                    self.ccd1,
                    self.transient,
                    self.transient_clear,
                    self.sim_sky,
                ],
            )
        )
        self.tasks: set = set()
        self.exposing: asyncio.Task | None = None
        self.temp_c = AMBIENT_C
        self.temp_target_c: float | None = None
        self.shared.seeing_fwhm_arcsec = self.cfg.seeing_fwhm_arcsec
        self.sky_catalog, self.pointing_error_arcsec, self.distortion_px = sky_from_environment()
        if self.sky_catalog is not None:
            log.info("simulated camera renders the stars of %r", self.sky_catalog)

    # -- hardware loop: cooler -------------------------------------------------------------

    async def hardware(self) -> None:
        while not self.stop:
            await asyncio.sleep(0.5)
            if self.temp_target_c is None:
                continue
            step = COOLING_C_PER_S * 0.5 * self.cfg.speed
            delta = self.temp_target_c - self.temp_c
            self.temp_c = self.temp_target_c if abs(delta) <= step else self.temp_c + math.copysign(step, delta)
            self.temperature["CCD_TEMPERATURE_VALUE"] = f"{self.temp_c:.2f}"
            reached = abs(self.temp_c - self.temp_target_c) < 1e-6
            await publish(self.temperature, "Ok" if reached else "Busy")
            if reached:
                self.temp_target_c = None

    # -- exposure ------------------------------------------------------------------------------

    def _conditions(self) -> sky.SkyConditions:
        """Sky conditions now; the stars' FWHM adds the focuser's defocus blur to the seeing."""
        seeing = float(self.sim_sky["SEEING"])
        self.shared.seeing_fwhm_arcsec = seeing
        return sky.SkyConditions(
            seeing_fwhm_arcsec=math.hypot(seeing, self.shared.defocus_blur_arcsec()),
            moon_illumination=float(self.sim_sky["MOON_ILLUMINATION"]),
            moon_separation_deg=float(self.sim_sky["MOON_SEPARATION"]),
            sun_alt_deg=float(self.sim_sky["SUN_ALT"]),
        )

    def _render(
        self,
        *,
        start: datetime,
        duration_s: float,
        frame_type: str,
        binning: int,
        ra_h: float,
        dec_deg: float,
        filter_name: str,
        light_reaches: bool,
        object_name: str,
        conditions: sky.SkyConditions,
        focus: tuple[float, float] | None,
    ) -> bytes:
        ra_deg, dec_j2000 = coords.apparent_to_j2000(ra_h, dec_deg, start)
        if frame_type == "LIGHT" and not light_reaches:
            # shutter closed: the camera sees the dark inside of the dome (a dark frame with LIGHT headers)
            data, header = sky.render_frame(
                ra_deg=ra_deg,
                dec_deg=dec_j2000,
                exposure_s=duration_s,
                frame_type="DARK",
                filter_name=filter_name,
                binning=binning,
                when_utc=start,
                camera=self.model,
                object_name=object_name,
            )
            header["IMAGETYP"] = sky.IMAGETYP["LIGHT"]
            header["FRAME"] = sky.IMAGETYP["LIGHT"]
            header["COMMENT"] = "Dome shutter closed during the exposure"
        else:
            data, header = sky.render_frame(
                ra_deg=ra_deg,
                dec_deg=dec_j2000,
                exposure_s=duration_s,
                frame_type=frame_type,
                filter_name=filter_name,
                binning=binning,
                when_utc=start,
                camera=self.model,
                conditions=conditions,
                transients=tuple(self.shared.transients),
                object_name=object_name,
                catalog=self.sky_catalog,
                pointing_error_arcsec=self.pointing_error_arcsec,
                distortion_corner_px=self.distortion_px,
            )
        header["CCD-TEMP"] = (round(self.temp_c, 2), "[C] sensor temperature")
        if focus is not None:
            if "SEEING" in header:  # the atmosphere's; the stars' FWHM adds the defocus
                header["SEEING"] = (round(self.shared.seeing_fwhm_arcsec, 3), "[arcsec] simulated seeing FWHM")
            header["FOCUSPOS"] = (int(round(focus[0])), "[step] focuser position")
            header["FOCUSTEM"] = (round(focus[1], 2), "[C] focuser temperature")
        header["OBSERVER"] = self.fits_header["FITS_OBSERVER"]
        header["SITELAT"] = self.shared.site.latitude_deg
        header["SITELONG"] = self.shared.site.longitude_deg
        header["SITEELEV"] = self.shared.site.elevation_m
        return sky.write_fits(data, header)

    async def _expose(self, duration_s: float) -> None:
        loop = asyncio.get_running_loop()
        start = datetime.now(UTC)
        t0 = loop.time()
        frame_type = next((v for k, v in FRAME_MEMBERS.items() if self.frame_type[k] == "On"), "LIGHT")
        binning = int(float(self.binning["HOR_BIN"]))
        filter_name = self.shared.filter_name if self.shared.filter_name in sky.FILTERS else "Clear"
        render = asyncio.ensure_future(
            asyncio.to_thread(
                self._render,
                start=start,
                duration_s=duration_s,
                frame_type=frame_type,
                binning=binning,
                ra_h=self.shared.mount_ra_h,
                dec_deg=self.shared.mount_dec_deg,
                filter_name=filter_name,
                light_reaches=self.shared.shutter_open or not self.cfg.dome_blocks_light,
                object_name=self.fits_header["FITS_OBJECT"],
                conditions=self._conditions(),
                focus=None
                if self.shared.focus_position is None
                else (self.shared.focus_position, self.shared.focus_temperature_c),
            )
        )
        try:
            # count down like libindi's CCD: Busy with the remaining seconds
            while True:
                remaining = duration_s - (loop.time() - t0)
                if remaining <= 0:
                    break
                self.exposure["CCD_EXPOSURE_VALUE"] = f"{remaining:.3f}"
                await publish(self.exposure, "Busy")
                await asyncio.sleep(min(0.2, remaining))
            readout_end = loop.time() + self.cfg.scaled(self.model.readout_s)
            fits_bytes = await render
            await asyncio.sleep(max(0.0, readout_end - loop.time()))
            self.ccd1["CCD1"] = fits_bytes
            self.ccd1.set_blobsize("CCD1", 0)  # else the first size sticks (indipydriver)
            self.ccd1.data["CCD1"].blobsize = len(fits_bytes)
            await self.ccd1.send_setVectorMembers(state="Ok", members=["CCD1"])
            self.exposure["CCD_EXPOSURE_VALUE"] = "0"
            await publish(self.exposure, "Ok", "Exposure complete")
        except asyncio.CancelledError:
            render.cancel()
            raise

    async def rxevent(self, event) -> None:
        name = event.vectorname
        if await handle_connection_switch(self.connection, event) or \
                await refuse_if_disconnected(self.connection, event):
            return
        if name == "CCD_EXPOSURE":
            try:
                duration_s = event.getfloatvalue("CCD_EXPOSURE_VALUE")
            except (KeyError, TypeError, ValueError):
                await publish(self.exposure, "Alert", "Invalid exposure time")
                return
            if not 0.0 <= duration_s <= 3600.0 or math.isnan(duration_s):
                await publish(self.exposure, "Alert", f"Exposure time {duration_s} s out of range 0-3600 s")
                return
            if self.exposing is not None and not self.exposing.done():
                await publish(self.exposure, "Alert", "Camera is busy with another exposure")
                return
            self.exposure["CCD_EXPOSURE_VALUE"] = f"{duration_s:.3f}"
            await publish(self.exposure, "Busy", "Exposure started")
            self.exposing = spawn(self.tasks, self._expose(duration_s), "exposure")
        elif name == "CCD_ABORT_EXPOSURE":
            running = self.exposing is not None and not self.exposing.done()
            if running:
                self.exposing.cancel()
                self.exposing = None
            await publish(self.abort_vector, "Ok", "Exposure aborted" if running else "No exposure to abort")
            if running:
                self.exposure["CCD_EXPOSURE_VALUE"] = "0"
                await publish(self.exposure, "Alert", "Exposure aborted")
        elif name == "CCD_FRAME_TYPE":
            member = on_switch(event)
            if member in FRAME_MEMBERS:
                for m in FRAME_MEMBERS:
                    self.frame_type[m] = "On" if m == member else "Off"
            await publish(self.frame_type, "Ok")
        elif name == "CCD_BINNING":
            values = {k: event.getfloatvalue(k) for k in event}
            b = int(round(values.get("HOR_BIN", values.get("VER_BIN", 1))))
            if b not in (1, 2, 3, 4):
                await publish(self.binning, "Alert", f"Binning {b} not supported (1-4)")
                return
            self.binning["HOR_BIN"] = b
            self.binning["VER_BIN"] = b
            await publish(self.binning, "Ok")
        elif name == "CCD_TEMPERATURE":
            target = event.getfloatvalue("CCD_TEMPERATURE_VALUE")
            if not -50.0 <= target <= 50.0:
                await publish(self.temperature, "Alert", f"Temperature {target} C out of range")
                return
            self.temp_target_c = target
            await publish(self.temperature, "Busy", f"Cooling to {target:.1f} C")
        elif name in ("UPLOAD_MODE", "FITS_HEADER", "ACTIVE_DEVICES"):
            vector = {
                "UPLOAD_MODE": self.upload_mode,
                "FITS_HEADER": self.fits_header,
                "ACTIVE_DEVICES": self.active_devices,
            }[name]
            for member, value in event.items():
                vector[member] = value
            await publish(vector, "Ok")
        elif name == "SIM_TRANSIENT":
            values = {k: event.getfloatvalue(k) for k in event}
            t0 = datetime.fromtimestamp(values.get("T0", datetime.now(UTC).timestamp()), UTC)
            transient = sky.Transient(
                ra_deg=values.get("RA", 0.0),
                dec_deg=values.get("DEC", 0.0),
                mag0=values.get("MAG0", 15.0),
                t0_utc=t0,
                decay_index=values.get("DECAY", 1.0),
                t_ref_s=max(values.get("T_REF", 60.0), 1e-3),
            )
            self.shared.transients.append(transient)
            for k, v in values.items():
                self.transient[k] = v
            await publish(self.transient, "Ok", f"{len(self.shared.transients)} transient(s) injected")
        elif name == "SIM_TRANSIENT_CLEAR":
            self.shared.transients.clear()
            await publish(self.transient_clear, "Ok", "Transients cleared")
        elif name == "SIM_SKY":
            for k in event:
                self.sim_sky[k] = event.getfloatvalue(k)
            self.shared.seeing_fwhm_arcsec = float(self.sim_sky["SEEING"])
            await publish(self.sim_sky, "Ok")
