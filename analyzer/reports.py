"""What a GRB team sends out, per event (pure: numpy, astropy, Pillow; no Django).

* :func:`photometry_table` - one row per analysed image: time since T0, filter, exposure, the
  candidate's AB magnitude and error, or the 5-sigma AB upper limit where it was not detected
  (ECSV or CSV, :func:`table_bytes`);
* :func:`finding_chart_png` - a cut-out around the candidate (or the alert position), zscale, north
  up east left, the candidate marked, the error circle, a 1' scale bar and N/E arrows;
* :func:`circular_draft` - a GCN Circular in the community's usual wording (telescope, times since
  the trigger, filters, magnitudes or limits, the candidate's position with its error). It is a
  draft: PyROS never sends it; a person edits, checks and submits it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from astropy.coordinates import Angle
from astropy.table import Table
from astropy.visualization import ZScaleInterval
from astropy.wcs import WCS

from devices.catalogs import AB_MINUS_VEGA


@dataclass
class EventReport:
    """Everything the products need, gathered by analyzer.selectors.event_report."""

    event_name: str
    trigger_time_utc: datetime | None
    burst_ra_deg: float | None
    burst_dec_deg: float | None
    burst_error_deg: float | None
    missions: list[str]
    telescope: str
    site: str
    catalog_name: str | None
    rows: list[dict[str, Any]] = field(default_factory=list)  # photometry rows (see photometry_rows)
    candidate: dict[str, Any] | None = None  # the best track: ra_deg, dec_deg, error_arcsec, decay_index...


def ab_magnitude(mag: float | None, band: str | None, mag_ab: float | None = None) -> float | None:
    if mag_ab is not None:
        return mag_ab
    if mag is None:
        return None
    return round(mag + AB_MINUS_VEGA.get(band or "", 0.0), 3)


def photometry_rows(images: Sequence[dict[str, Any]], track: dict[str, Any] | None,
                    t0_utc: datetime | None) -> list[dict[str, Any]]:
    """One row per analysed image (time order). ``images``: image_id, mid_time_utc, filter, exposure_s,
    limiting_mag_ab (or limiting_mag + band). A detection of ``track`` in that image gives the
    magnitude; otherwise the 5-sigma limit is an upper limit."""
    detections = {d["image_id"]: d for d in (track or {}).get("detections", [])}
    rows = []
    for image in sorted(images, key=lambda i: i["mid_time_utc"]):
        mid = datetime.fromisoformat(image["mid_time_utc"])
        since = None if t0_utc is None else round((mid - t0_utc).total_seconds(), 1)
        band = image.get("filter")
        detection = detections.get(image["image_id"])
        limit_ab = image.get("limiting_mag_ab")
        if limit_ab is None and image.get("limiting_mag") is not None:
            limit_ab = ab_magnitude(image["limiting_mag"], band)
        row = {"image_id": image["image_id"], "time_utc": mid.isoformat(timespec="seconds"), "t_minus_t0_s": since,
               "filter": band, "exposure_s": image.get("exposure_s"), "mag_ab": None, "mag_ab_err": None,
               "upper_limit_ab": None, "detected": detection is not None}
        if detection is not None:
            row["mag_ab"] = ab_magnitude(detection.get("mag"), band, detection.get("mag_ab"))
            row["mag_ab_err"] = detection.get("mag_err")
        elif limit_ab is not None:
            row["upper_limit_ab"] = round(limit_ab, 2)
        rows.append(row)
    return rows


def photometry_table(report: EventReport) -> Table:
    names = ["time_utc", "t_minus_t0_s", "filter", "exposure_s", "mag_ab", "mag_ab_err", "upper_limit_ab",
             "detected", "image_id"]
    table = Table(rows=[[row[n] if row[n] is not None else (np.nan if n not in ("filter", "time_utc") else "")
                         for n in names] for row in report.rows] or None, names=names,
                  dtype=[str, float, str, float, float, float, float, bool, int] if not report.rows else None)
    for name, unit in (("t_minus_t0_s", "s"), ("exposure_s", "s"), ("mag_ab", "mag"), ("mag_ab_err", "mag"),
                       ("upper_limit_ab", "mag")):
        table[name].unit = unit
    table.meta.update({"event": report.event_name, "telescope": report.telescope, "site": report.site,
                       "trigger_time_utc": report.trigger_time_utc.isoformat() if report.trigger_time_utc else None,
                       "magnitude_system": "AB, not corrected for Galactic extinction",
                       "upper_limits": "5 sigma", "reference_catalogue": report.catalog_name})
    if report.candidate:
        table.meta["candidate"] = {k: report.candidate.get(k) for k in ("ra_deg", "dec_deg", "error_arcsec")}
    return table


def table_bytes(table: Table, fmt: str) -> bytes:
    out = io.StringIO()
    table.write(out, format={"ecsv": "ascii.ecsv", "csv": "ascii.csv"}[fmt])
    return out.getvalue().encode()


# --------------------------------------------------------------------------------------------
# GCN Circular draft
# --------------------------------------------------------------------------------------------


def _hms(ra_deg: float) -> str:
    return Angle(ra_deg, unit="deg").to_string(unit="hourangle", sep=":", precision=2, pad=True)


def _dms(dec_deg: float) -> str:
    return Angle(dec_deg, unit="deg").to_string(unit="deg", sep=":", precision=1, alwayssign=True, pad=True)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60.0:.1f} min"
    return f"{seconds / 3600.0:.2f} h"


def circular_draft(report: EventReport) -> str:
    """The usual GCN Circular wording for an optical follow-up (detection or upper limits)."""
    mission = "/".join(report.missions) if report.missions else "the"
    lines = [f"{report.event_name}: {report.telescope} optical "
             + ("afterglow candidate" if report.candidate else "upper limits"), "",
             "<authors> (<institutes>) report on behalf of the PyROS team:", ""]
    rows = report.rows
    first = rows[0] if rows else None
    if first is None:
        lines.append(f"We have not yet observed the field of {report.event_name}.")
        return "\n".join(lines) + "\n"
    start = datetime.fromisoformat(first["time_utc"])
    when = f"{start:%Y-%m-%d} at {start:%H:%M:%S} UT"
    since = "" if first["t_minus_t0_s"] is None else f", {_duration(first['t_minus_t0_s'])} after the trigger"
    filters = sorted({r["filter"] for r in rows if r["filter"]})
    lines.append(f"We observed the field of {report.event_name} ({mission} trigger) with the {report.telescope} "
                 f"at {report.site}, starting on {when}{since}. We obtained {len(rows)} image"
                 f"{'s' if len(rows) != 1 else ''} in the {', '.join(filters)} filter{'s' if len(filters) != 1 else ''}.")
    lines.append("")
    if report.candidate:
        c = report.candidate
        catalog = report.catalog_name or "the reference catalogue"
        lines += [f"Within the error circle we detect a source not present in {catalog} at", "",
                  f"RA (J2000) = {_hms(c['ra_deg'])}", f"Dec (J2000) = {_dms(c['dec_deg'])}", "",
                  f"with an uncertainty of {max(c.get('error_arcsec') or 0.0, 0.1):.1f} arcsec (1 sigma, statistical "
                  f"and astrometric). We consider it the optical afterglow candidate of {report.event_name}.", ""]
        decay = c.get("decay_index")
        if decay is not None and c.get("decay_index_err") is not None:
            trend = "fades" if c.get("fading") else "varies"
            lines += [f"The source {trend} with a power-law decay index alpha = {decay:.2f} +/- "
                      f"{c['decay_index_err']:.2f} (F ~ t^-alpha).", ""]
    else:
        lines += ["No new source is detected within the error circle down to the 5-sigma limits below.", ""]
    lines.append("Preliminary photometry (AB magnitudes, not corrected for the Galactic extinction):")
    lines.append("")
    lines.append("T-T0 (s)   Exp (s)  Filter  Mag (AB)")
    for row in rows:
        t = "      ?" if row["t_minus_t0_s"] is None else f"{row['t_minus_t0_s']:8.0f}"
        mag = (f"{row['mag_ab']:.2f} +/- {row['mag_ab_err']:.2f}" if row["mag_ab"] is not None
               else f"> {row['upper_limit_ab']:.2f}" if row["upper_limit_ab"] is not None else "n/a")
        lines.append(f"{t}   {row['exposure_s'] or 0:6.0f}   {row['filter'] or '-':>6}  {mag}")
    lines += ["", f"Magnitudes are calibrated against nearby stars of {report.catalog_name or 'the reference catalogue'}"
              " (transformed to the Johnson-Cousins system, then to AB).", "",
              "This circular is an official product of the PyROS team. <edit before submitting>"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Finding chart
# --------------------------------------------------------------------------------------------


def finding_chart_png(data: np.ndarray, wcs: WCS, *, centre_ra_deg: float, centre_dec_deg: float,
                      candidate: dict[str, Any] | None, error_radius_deg: float | None, title: str,
                      size_arcmin: float = 4.0) -> bytes:
    """A zscale cut-out of ``size_arcmin`` (north up, east left) around the centre, with the candidate
    marked (two ticks, as charts in circulars do), the error circle, a 1' bar and the N/E arrows."""
    from PIL import Image, ImageDraw

    from analyzer.measure import pixel_scale_arcsec

    scale = pixel_scale_arcsec(wcs)
    (cx, cy), = wcs.all_world2pix([[centre_ra_deg, centre_dec_deg]], 0)
    half = int(round(size_arcmin * 60.0 / scale / 2.0))
    height, width = data.shape
    x0, x1 = int(max(cx - half, 0)), int(min(cx + half, width))
    y0, y1 = int(max(cy - half, 0)), int(min(cy + half, height))
    cut = np.asarray(data[y0:y1, x0:x1], dtype=np.float64)
    if cut.size == 0:
        raise ValueError("the position is outside the image")
    low, high = ZScaleInterval().get_limits(cut)
    grey = np.clip((cut - low) / max(high - low, 1e-9), 0, 1)
    # Black stars on white, as printed finding charts; numpy row 0 is the bottom (y up = north).
    pixels = (255 * (1.0 - grey)).astype(np.uint8)[::-1]
    zoom = max(1, int(600 / max(cut.shape)))
    image = Image.fromarray(pixels, mode="L").resize((cut.shape[1] * zoom, cut.shape[0] * zoom)).convert("RGB")
    draw = ImageDraw.Draw(image)
    w_img, h_img = image.size

    def to_img(x: float, y: float) -> tuple[float, float]:
        return (x - x0 + 0.5) * zoom, (y1 - 1 - y + 0.5) * zoom

    if error_radius_deg:
        (bx, by), = wcs.all_world2pix([[centre_ra_deg, centre_dec_deg]], 0) if candidate is None else \
            wcs.all_world2pix([[candidate["burst_ra_deg"], candidate["burst_dec_deg"]]], 0)
        ex, ey = to_img(bx, by)
        r = error_radius_deg * 3600.0 / scale * zoom
        draw.ellipse([ex - r, ey - r, ex + r, ey + r], outline=(0, 90, 220), width=2)
    if candidate is not None:
        (sx, sy), = wcs.all_world2pix([[candidate["ra_deg"], candidate["dec_deg"]]], 0)
        px, py = to_img(sx, sy)
        gap, length = 6 * zoom / 2 + 6, 14 * zoom / 2 + 10
        draw.line([px + gap, py, px + gap + length, py], fill=(220, 0, 0), width=3)
        draw.line([px, py - gap, px, py - gap - length], fill=(220, 0, 0), width=3)
    bar = 60.0 / scale * zoom  # 1 arcmin
    draw.line([12, h_img - 16, 12 + bar, h_img - 16], fill=(0, 0, 0), width=3)
    draw.text((12, h_img - 34), "1'", fill=(0, 0, 0))
    ax, ay = w_img - 20, h_img - 20
    draw.line([ax, ay, ax, ay - 50], fill=(0, 0, 0), width=2)
    draw.text((ax - 4, ay - 64), "N", fill=(0, 0, 0))
    draw.line([ax, ay, ax - 50, ay], fill=(0, 0, 0), width=2)
    draw.text((ax - 64, ay - 6), "E", fill=(0, 0, 0))
    draw.text((10, 8), title, fill=(0, 0, 0))
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()


def chart_title(report: EventReport, row: dict[str, Any] | None) -> str:
    parts = [report.event_name, report.telescope]
    if row is not None:
        parts.append(f"{row['filter']} {row['exposure_s']:.0f} s")
        if row["t_minus_t0_s"] is not None:
            parts.append(f"T0+{_duration(row['t_minus_t0_s'])}")
    return "  ".join(parts)
