"""Altitude plots of a request's targets over their windows (data for Plotly, served locally)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np

from pyrosapp.models import Request, Site
from routine_manager.coordinates import format_utc

from .visibility import Site as SkySite
from .visibility import altitude_curves, altitude_for_airmass_deg

MAX_PLOT_DAYS = 7  # a longer window is plotted over its first week


def altitude_figure(site: Site, *, ra_deg: float, dec_deg: float, start: datetime, end: datetime,
                    min_altitude_deg: float | None, max_airmass: float | None, title: str, figure_id: str,
                    planned: list[str] | None = None) -> dict[str, Any]:
    """Target and Moon altitude over [start, end] (at most MAX_PLOT_DAYS), nights shaded, the limit as a line."""
    end = min(end, start + timedelta(days=MAX_PLOT_DAYS))
    sky_site = SkySite(site.latitude_deg, site.longitude_deg, site.elevation_m, site.name)
    curves = altitude_curves(sky_site, site.twilight_deg, [ra_deg], [dec_deg], start, end)
    altitude = curves.altitude_deg[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        airmass = np.where(altitude > 0, 1.0 / np.sin(np.radians(altitude)), np.nan)
    limit = max(min_altitude_deg or 0.0, site.horizon_min_altitude_deg)
    if max_airmass:
        limit = max(limit, altitude_for_airmass_deg(max_airmass))
    return {
        "id": figure_id,
        "title": title,
        "times": [format_utc(t) for t in curves.times_utc],
        "altitude": [round(float(a), 2) for a in altitude],
        "airmass": [None if np.isnan(x) else round(float(x), 3) for x in airmass],
        "moon": [round(float(a), 2) for a in curves.moon_altitude_deg],
        "limit_deg": round(limit, 2),
        "nights": [[format_utc(max(a, start)), format_utc(min(b, end))] for a, b in curves.nights_utc],
        "planned": planned,
    }


def request_altitude_plots(request: Request) -> list[dict[str, Any]]:
    """One figure per sequence: target and Moon altitude, nights shaded, the altitude limit as a line."""
    figures = []
    for seq in request.sequences.all():
        album = seq.albums.select_related("detector__telescope__site").first()
        site: Site | None = album.detector.telescope.site if album else Site.objects.filter(is_active=True).first()
        if site is None:
            continue
        figures.append(altitude_figure(
            site, ra_deg=seq.ra_deg, dec_deg=seq.dec_deg, start=seq.window_start, end=seq.window_end,
            min_altitude_deg=seq.min_altitude_deg, max_airmass=seq.max_airmass,
            title=f"{seq.target_name} from {site.name}", figure_id=f"altitude-{seq.pk}",
            planned=[format_utc(seq.planned_start), format_utc(seq.planned_end)]
            if seq.planned_start and seq.planned_end else None))
    return figures
