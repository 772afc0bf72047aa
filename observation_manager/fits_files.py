"""Where images are stored and what PyROS adds to their FITS headers (pure: no Django).

Every frame PyROS writes carries the usual keywords whatever the camera driver sent (DATE-OBS,
MJD-OBS, EXPTIME, FILTER, the observatory, telescope, instrument and site, the CCD temperature) and,
for a light frame, OBJECT, the pointing (RA/DEC, EQUINOX/RADESYS), AIRMASS and a TAN WCS built from
the pointing and the plate scale (north up, east left: the camera's usual orientation). The analyzer
replaces that WCS with the solved one (``WCSSRC`` says which it is). The result passes astropy's FITS
verification without a warning, so DS9, Aladin and astropy read the same sky.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from astropy.io import fits
from astropy.time import Time

from common.formats import finite_number

# DATE-OBS as the FITS standard writes it (ISO 8601, UTC, no zone suffix), to the millisecond.
DATE_OBS_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"
# The WCS keywords PyROS writes (and replaces): a camera's own partial or stale WCS must not mix with ours.
WCS_KEYWORDS = ("WCSAXES", "CTYPE1", "CTYPE2", "CUNIT1", "CUNIT2", "CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2",
                "CD1_1", "CD1_2", "CD2_1", "CD2_2", "CDELT1", "CDELT2", "CROTA1", "CROTA2", "PC1_1", "PC1_2",
                "PC2_1", "PC2_2", "LONPOLE", "LATPOLE", "A_ORDER", "B_ORDER", "AP_ORDER", "BP_ORDER")


@dataclass(frozen=True)
class ImageContext:
    """Who and what an image belongs to: written into its header and its file name."""

    telescope: str
    detector: str
    target: str
    frame_type: str          # light / bias / dark / flat
    filter_name: str
    exposure_s: float
    site_name: str
    site_lat_deg: float
    site_lon_deg: float
    site_elev_m: float
    request_id: int | None = None
    sequence_id: int | None = None
    album_id: int | None = None
    plan_id: int | None = None
    index: int | None = None
    count: int | None = None
    program: str = ""
    observer: str = ""
    is_alert: bool = False
    # The pointing (ICRS/J2000 degrees) and the detector's unbinned plate scale: they make the WCS.
    ra_deg: float | None = None
    dec_deg: float | None = None
    pixel_scale_arcsec: float | None = None
    binning: int = 1


def night_date(when: datetime, longitude_deg: float) -> str:
    """The date of the evening a night started on, at the site (local mean solar time - 12 h), so
    that every image of one night lands in one folder even when it crosses 0 h UTC."""
    local = when.astimezone(UTC) + timedelta(hours=longitude_deg / 15.0) - timedelta(hours=12)
    return local.strftime("%Y-%m-%d")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9+-]+", "_", text).strip("_")[:40] or "unnamed"


def relative_path(ctx: ImageContext, date_obs: datetime) -> Path:
    """`<night>/<frame>/<time>_<target>_<filter>_<exp>s[_s<seq>p<plan>_<i>of<n>].fits` — the name says
    what it is; the ids make it unique, so a retried exposure overwrites rather than duplicates."""
    folder = Path(night_date(date_obs, ctx.site_lon_deg)) / ctx.frame_type
    stamp = date_obs.astimezone(UTC).strftime("%Y%m%dT%H%M%S")
    parts = [ctx.frame_type if ctx.frame_type != "light" else _slug(ctx.target), ctx.filter_name or "nofilter",
             f"{ctx.exposure_s:g}s"]
    if ctx.plan_id is not None:
        parts.append(f"s{ctx.sequence_id}p{ctx.plan_id}_{ctx.index:03d}of{ctx.count:03d}")
        return folder / ("_".join(_slug(p) for p in parts) + ".fits")
    return folder / (stamp + "_" + "_".join(_slug(p) for p in parts) + ".fits")


def airmass_from_altitude(alt_deg: float | None) -> float | None:
    """Pickering (2002) airmass, good to the horizon; None below it."""
    if alt_deg is None or alt_deg <= 0:
        return None
    h = alt_deg
    return 1.0 / math.sin(math.radians(h + 244.0 / (165.0 + 47.0 * h ** 1.1)))


def add_pyros_headers(
    fits_bytes: bytes,
    ctx: ImageContext,
    *,
    airmass: float | None,
    date_obs: datetime | None = None,
    ccd_temp_c: float | None = None,
) -> tuple[bytes, fits.Header]:
    """The camera's FITS plus PyROS's standard and provenance cards. Raises ValueError for a file that
    is not FITS. ``date_obs`` (when PyROS started the exposure) and ``ccd_temp_c`` are used when the
    camera's header lacks them; the camera's own DATE-OBS and CCD-TEMP are kept when readable."""
    try:
        with fits.open(io.BytesIO(fits_bytes), mode="readonly") as hdul:
            hdul.verify("silentfix")
            hdu = hdul[0]
            header = hdu.header
            _standard_cards(header, ctx, airmass=airmass, date_obs=date_obs, ccd_temp_c=ccd_temp_c)
            out = io.BytesIO()
            hdul.writeto(out, output_verify="silentfix")
            return out.getvalue(), header.copy()
    except OSError as exc:
        raise ValueError(f"the camera returned data that is not a FITS file: {exc}") from exc


def header_date_obs(header: fits.Header) -> datetime | None:
    """DATE-OBS as an aware UTC datetime (None when absent or unreadable)."""
    value = str(header.get("DATE-OBS", "")).strip()
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value.rstrip("Z"))
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _standard_cards(header: fits.Header, ctx: ImageContext, *, airmass: float | None, date_obs: datetime | None,
                    ccd_temp_c: float | None) -> None:
    light = ctx.frame_type == "light"
    start = header_date_obs(header) or (date_obs.astimezone(UTC) if date_obs is not None else None)
    cards: list[tuple[str, object, str]] = [("ORIGIN", "PyROS", "software that took this image")]
    if start is not None:
        cards += [
            ("DATE-OBS", start.strftime(DATE_OBS_FORMAT)[:-3], "UTC start of exposure"),
            ("MJD-OBS", round(float(Time(start).mjd), 8), "[d] MJD (UTC) of the start of exposure"),
        ]
    exposure_s = finite_number(header.get("EXPTIME"))
    if exposure_s is None:
        exposure_s = finite_number(header.get("EXPOSURE"))
    cards += [
        ("EXPTIME", exposure_s if exposure_s is not None else float(ctx.exposure_s), "[s] exposure time"),
        ("FILTER", ctx.filter_name or str(header.get("FILTER", "")) or "none", "filter"),
        ("TELESCOP", ctx.telescope, "telescope"),
        ("INSTRUME", ctx.detector, "detector"),
        ("OBSERVAT", ctx.site_name, "observatory site"),
        ("SITELAT", ctx.site_lat_deg, "[deg] site latitude"),
        ("SITELONG", ctx.site_lon_deg, "[deg] site longitude, east positive"),
        ("SITEELEV", ctx.site_elev_m, "[m] site elevation"),
        ("PYFRAME", ctx.frame_type, "PyROS frame type"),
    ]
    camera_temp = finite_number(header.get("CCD-TEMP"))
    temp = camera_temp if camera_temp is not None else ccd_temp_c
    if temp is not None:
        cards.append(("CCD-TEMP", round(float(temp), 2), "[C] sensor temperature"))
    if light:
        cards += [
            ("OBJECT", ctx.target, "target name"),
            ("PYREQID", ctx.request_id, "PyROS request id"),
            ("PYSEQID", ctx.sequence_id, "PyROS sequence id"),
            ("PYALBID", ctx.album_id, "PyROS album id"),
            ("PYPLANID", ctx.plan_id, "PyROS plan id"),
            ("PYIMGNUM", ctx.index, "image number within its plan"),
            ("PYIMGTOT", ctx.count, "images in the plan"),
            ("PROGRAM", ctx.program[:68], "scientific program"),
            ("OBSERVER", ctx.observer[:68], "who asked for this observation"),
            ("PYALERT", ctx.is_alert, "taken for an alert"),
        ]
        if airmass is not None:
            cards.append(("AIRMASS", round(airmass, 4), "airmass at start (Pickering 2002)"))
    for key, value, comment in cards:
        if value is not None:
            header[key] = (value, comment)
    if light:
        _pointing_and_wcs(header, ctx)


def _pointing_and_wcs(header: fits.Header, ctx: ImageContext) -> None:
    """RA/DEC of the pointing and a TAN WCS centred on it; the camera's numeric RA/DEC when PyROS has none."""
    ra = ctx.ra_deg if ctx.ra_deg is not None else finite_number(header.get("RA"))
    dec = ctx.dec_deg if ctx.dec_deg is not None else finite_number(header.get("DEC"))
    if ra is None or dec is None:
        return
    header["RA"] = (round(float(ra) % 360.0, 7), "[deg] telescope pointing RA (ICRS)")
    header["DEC"] = (round(float(dec), 7), "[deg] telescope pointing Dec (ICRS)")
    header["EQUINOX"] = (2000.0, "equinox of the coordinates")
    header["RADESYS"] = ("ICRS", "reference frame of the coordinates")
    width, height = header.get("NAXIS1"), header.get("NAXIS2")
    scale = ctx.pixel_scale_arcsec
    if scale is None or scale <= 0:
        scale = finite_number(header.get("PIXSCALE"))
        binning = 1  # a camera's PIXSCALE is already the binned one
    else:
        binning = max(int(ctx.binning or 1), 1)
    if not width or not height or scale is None or scale <= 0:
        return
    for key in WCS_KEYWORDS:
        header.remove(key, ignore_missing=True, remove_all=True)
    for key in list(header.keys()):
        if re.fullmatch(r"(A|B|AP|BP)_\d+_\d+", key):
            header.remove(key, remove_all=True)
    scale_deg = scale * binning / 3600.0
    header["PIXSCALE"] = (scale * binning, "[arcsec/px] binned pixel scale")
    header["WCSAXES"] = 2
    header["CTYPE1"] = "RA---TAN"
    header["CTYPE2"] = "DEC--TAN"
    header["CUNIT1"] = "deg"
    header["CUNIT2"] = "deg"
    header["CRVAL1"] = (header["RA"], "[deg] RA at the reference pixel")
    header["CRVAL2"] = (header["DEC"], "[deg] Dec at the reference pixel")
    header["CRPIX1"] = (width / 2.0 + 0.5, "reference pixel: the centre of the frame")
    header["CRPIX2"] = (height / 2.0 + 0.5, "reference pixel: the centre of the frame")
    header["CD1_1"] = (-scale_deg, "[deg/px] east left")
    header["CD1_2"] = 0.0
    header["CD2_1"] = 0.0
    header["CD2_2"] = (scale_deg, "[deg/px] north up")
    header["WCSSRC"] = ("pointing", "WCS from: pointing, refine, astrometry.net")
