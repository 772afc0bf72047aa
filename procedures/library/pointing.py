"""Pointing check: a grid of positions over the sky, one short frame at each (the analyzer solves each
frame and stores its offset from the commanded position: the pointing model's input)."""

from typing import Annotated

from procedures.sdk import Param, procedure


def grid_positions(lst_deg: float, latitude_deg: float, *, hour_angles_h, declinations_deg) -> list[tuple]:
    """(ra, dec, ha) of the grid from the local sidereal time: RA = LST - HA."""
    out = []
    for dec in declinations_deg:
        for ha in hour_angles_h:
            out.append((float((lst_deg - 15.0 * ha) % 360.0), float(dec), float(ha)))
    return out


@procedure(title="Pointing check grid", timeout_s=3600, sky="dark", tags=("pointing",))
def pointing_grid(ctx, *,
                  hour_angles_h: list[float] = (-2.0, 0.0, 2.0),
                  declinations_deg: list[float] = (0.0, 30.0, 60.0),
                  exposure_s: Annotated[float, Param(unit="s", minimum=0.01)] = 5.0,
                  filter_name: str = "",
                  settle_s: Annotated[float, Param(unit="s", minimum=0)] = 2.0):
    """Slew to each point of an hour-angle x declination grid and take one frame there.

    Parameters:
        hour_angles_h (h): hour angles of the grid
        declinations_deg (deg): declinations of the grid
        exposure_s (s): exposure of each frame
        filter_name: filter (empty: the current one)
        settle_s (s): wait after each slew
    """
    from astropy import units as u
    from astropy.time import Time

    site = ctx.observatory.site
    lst = Time.now().sidereal_time("mean", longitude=site.longitude_deg * u.deg).deg
    points = grid_positions(lst, site.latitude_deg, hour_angles_h=hour_angles_h, declinations_deg=declinations_deg)
    done = []
    for i, (ra, dec, ha) in enumerate(points, start=1):
        ctx.set_progress(i - 1, len(points), f"slewing to HA {ha:+.1f} h, Dec {dec:+.0f}")
        try:
            ctx.wait(ctx.mount.start_slew(ra_deg=ra, dec_deg=dec), 300)
        except Exception as exc:
            if ctx.abort_requested():
                raise
            ctx.log.warning("point HA %+.1f Dec %+.0f skipped: %s", ha, dec, exc)
            continue
        ctx.sleep(settle_s)
        state = ctx.mount.state()
        frame = ctx.expose(exposure_s, filter_name=filter_name or None, target=f"pointing HA{ha:+.1f} D{dec:+.0f}")
        done.append({"ra_deg": ra, "dec_deg": dec, "ha_h": ha, "mount_ra_deg": state.ra_deg,
                     "mount_dec_deg": state.dec_deg, "image": frame.image_id})
        ctx.publish(points=done)
    ctx.set_progress(len(points), len(points), "done")
    return {"points": len(done), "of": len(points)}

