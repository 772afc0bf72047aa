"""Pointing model grid, as a flow: for each point of an hour-angle x declination grid, slew, expose and
plate-solve (fanned out to the analysis workers: ``ctx.run("plate_solve", image_id)``); then the offsets of all points (the pointing model's input). Each point's steps are stored as they
end, so a run killed at point 31 is recovered (page, ``pyros queue recover``) from point 31: the points
already measured keep their frames and offsets. The plate-solve of a point runs while the telescope slews to
the next one (it is not a telescope step)."""

from __future__ import annotations

import math
from typing import Annotated

from procedures.sdk import Flow, Loop, Param, ProcedureError, Step, open_to_sky, procedure


def local_sidereal_deg(longitude_deg: float) -> float:
    from astropy import units as u
    from astropy.time import Time

    return float(Time.now().sidereal_time("mean", longitude=longitude_deg * u.deg).deg)


def prepare(ctx):
    """The sky: the dome unparked and open, the mount unparked."""
    ctx.publish(**open_to_sky(ctx))


def slew(ctx, *, settle_s: float):
    """To the point's hour angle and declination, with RA from the sidereal time now."""
    ha, dec = ctx.value
    site = ctx.observatory.site
    ra = (local_sidereal_deg(site.longitude_deg) - 15.0 * ha) % 360.0
    ctx.set_progress(0, 1, f"slewing to HA {ha:+.2f} h, Dec {dec:+.1f}")
    ctx.wait(ctx.mount.start_slew(ra_deg=ra, dec_deg=dec), 300)
    ctx.sleep(settle_s)
    state = ctx.mount.state()
    ctx.publish(ha_h=ha, dec_deg=dec, ra_deg=round(ra, 6), mount_ra_deg=state.ra_deg, mount_dec_deg=state.dec_deg)


def expose(ctx, *, exposure_s: float, filter_name: str):
    """One frame at the point; a frame an interrupted attempt already stored here is kept (not taken twice)."""
    if ctx.earlier_images:
        kept = ctx.earlier_images[-1]
        ctx.log.info("point %s: frame %s stored before the interruption is kept", ctx.key, kept["path"])
        ctx.publish(image=kept["id"], path=kept["path"], kept_from_earlier_attempt=True)
        return
    ha, dec = ctx.value
    frame = ctx.expose(exposure_s, filter_name=filter_name or None, target=f"pointing HA{ha:+.1f} D{dec:+.0f}")
    ctx.publish(image=frame.image_id, path=frame.path)


def solve(ctx, *, queue: str):
    """Plate-solve the point's frame on the analysis workers (fanned out: the analyzer's plate_solve task,
    the header's pointing refined against the reference catalogue, else astrometry.net): where it points and
    its offset from where the mount said it pointed."""
    image_id = ctx.data["expose"]["image"]
    ctx.set_progress(0, 1, f"plate-solving image {image_id}")
    solved = ctx.run("plate_solve", image_id, queue=queue or None, publish_as="")
    if not solved.get("solved"):
        reason = solved.get("failure_reason") or "no solution"
        ctx.publish(solved=False, reason=str(reason)[:300])
        ctx.log.warning("point %s not solved: %s", ctx.key, reason)
        return
    ctx.publish(solved=True, solved_ra_deg=solved["field"]["ra_deg"], solved_dec_deg=solved["field"]["dec_deg"],
                offset_ra_arcsec=solved["offset_ra_arcsec"], offset_dec_arcsec=solved["offset_dec_arcsec"],
                method=solved.get("method"), rms_arcsec=solved.get("rms_arcsec"))


def offsets(ctx):
    """The measured points and their mean offsets and scatter: what a pointing model is fitted to."""
    points = []
    for it in ctx.data["grid"]:
        s, solved = it.get("slew") or {}, it.get("solve") or {}
        if solved.get("solved"):
            points.append({"ha_h": s["ha_h"], "dec_deg": s["dec_deg"], "image": (it.get("expose") or {}).get("image"),
                           "offset_ra_arcsec": solved["offset_ra_arcsec"],
                           "offset_dec_arcsec": solved["offset_dec_arcsec"]})
    if not points:
        raise ProcedureError("no point of the grid was solved")
    n = len(points)
    mean_ra = sum(p["offset_ra_arcsec"] for p in points) / n
    mean_dec = sum(p["offset_dec_arcsec"] for p in points) / n
    rms = math.sqrt(sum((p["offset_ra_arcsec"] - mean_ra) ** 2 + (p["offset_dec_arcsec"] - mean_dec) ** 2
                        for p in points) / n)
    summary = {"solved": n, "of": len(ctx.data["grid"]), "mean_offset_ra_arcsec": round(mean_ra, 2),
               "mean_offset_dec_arcsec": round(mean_dec, 2), "rms_after_mean_arcsec": round(rms, 2)}
    ctx.publish_item(points=points, **summary)
    return summary


@procedure(title="Pointing model grid", timeout_s=7200, sky="dark", tags=("pointing", "flow"))
def pointing_grid(ctx, *,
                  hour_angles_h: Annotated[list[float], Param(minimum=-12, maximum=12, min_items=1)] = (-2.0, 0.0, 2.0),
                  declinations_deg: Annotated[list[float], Param(minimum=-90, maximum=90, min_items=1)] = (
                      0.0, 30.0, 60.0),
                  exposure_s: Annotated[float, Param(unit="s", minimum=0.01)] = 5.0,
                  filter_name: str = "",
                  settle_s: Annotated[float, Param(unit="s", minimum=0)] = 2.0,
                  analysis_queue: str = ""):
    """For each point of an hour-angle x declination grid: slew, take a frame, plate-solve it; then the
    offsets of every solved point. A flow: killed or failed, it is recovered without redoing the points done.

    Parameters:
        hour_angles_h (h): hour angles of the grid
        declinations_deg (deg): declinations of the grid
        exposure_s (s): exposure of each frame
        filter_name: filter (empty: the current one)
        settle_s (s): wait after each slew
        analysis_queue: Celery queue of the plate-solves (empty: the analysis workers')
    """
    points = [[float(ha), float(dec)] for dec in declinations_deg for ha in hour_angles_h]
    if not points:
        raise ProcedureError("the grid is empty: give hour angles and declinations")
    return Flow(
        Step("prepare", prepare, telescope=True),
        Loop("grid", points,
             Step("slew", slew, telescope=True, params={"settle_s": settle_s}),
             Step("expose", expose, telescope=True, params={"exposure_s": exposure_s, "filter_name": filter_name}),
             Step("solve", solve, params={"queue": analysis_queue}),
             require="prepare", overlap=True, title="grid points"),
        Step("offsets", offsets, require="grid"),
        max_concurrent=2,
    )
