"""Where images are stored and what PyROS adds to their FITS headers (pure: no Django)."""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from astropy.io import fits


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


def add_pyros_headers(fits_bytes: bytes, ctx: ImageContext, *, airmass: float | None) -> tuple[bytes, fits.Header]:
    """The camera's FITS plus PyROS's provenance cards. Raises ValueError for a file that is not FITS."""
    try:
        with fits.open(io.BytesIO(fits_bytes), mode="readonly") as hdul:
            hdul.verify("silentfix")
            hdu = hdul[0]
            header = hdu.header
            cards = [
                ("ORIGIN", "PyROS", "software that took this image"),
                ("TELESCOP", ctx.telescope, "telescope"),
                ("INSTRUME", ctx.detector, "detector"),
                ("OBSERVAT", ctx.site_name, "observatory site"),
                ("SITELAT", ctx.site_lat_deg, "[deg] site latitude"),
                ("SITELONG", ctx.site_lon_deg, "[deg] site longitude, east positive"),
                ("SITEELEV", ctx.site_elev_m, "[m] site elevation"),
                ("PYFRAME", ctx.frame_type, "PyROS frame type"),
            ]
            if ctx.frame_type == "light":
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
            out = io.BytesIO()
            hdul.writeto(out, output_verify="silentfix")
            return out.getvalue(), header.copy()
    except OSError as exc:
        raise ValueError(f"the camera returned data that is not a FITS file: {exc}") from exc
