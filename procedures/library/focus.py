"""Focus: a sweep of the focuser through the best focus, the stars' FWHM at each step, and the V-curve."""

from typing import Annotated

import numpy as np

from procedures.sdk import Param, ProcedureError, open_to_sky, procedure


def star_fwhm_arcsec(pixels: np.ndarray, scale_arcsec: float) -> float | None:
    """Median FWHM of the frame's bright isolated stars (the analyzer's measurement), in arcseconds."""
    from analyzer.measure import estimate_background, extract_sources, seeing_fwhm_px

    data = np.ascontiguousarray(pixels, dtype=np.float64)
    bkg = estimate_background(data)
    sub = data - bkg.back
    objects = extract_sources(sub, bkg.noise_adu, threshold_sigma=3.0)
    fwhm_px = seeing_fwhm_px(sub, objects, bkg.noise_adu, None)
    return None if fwhm_px is None else fwhm_px * scale_arcsec


def v_curve_fit(positions, fwhm_arcsec) -> dict:
    """FWHM^2 = a (x - x0)^2 + c is a parabola in x (a hyperbola in FWHM): least squares, then the best focus
    x0 = -b / 2a and the FWHM there. Raises ProcedureError when the points make no V."""
    x = np.asarray(positions, dtype=float)
    y = np.asarray(fwhm_arcsec, dtype=float) ** 2
    if len(x) < 3:
        raise ProcedureError("fewer than 3 measured points: cannot fit a V-curve")
    a, b, c = np.polyfit(x, y, 2)
    if a <= 0:
        raise ProcedureError("the FWHM does not rise on both sides: the sweep does not cross the focus")
    best = -b / (2 * a)
    minimum = max(c - b * b / (4 * a), 0.0) ** 0.5
    return {"best_focus": float(best), "fwhm_at_best_arcsec": float(minimum), "coefficients": [a, b, c]}


@procedure(title="Focus sweep (V-curve)", timeout_s=1800, sky="dark", tags=("focus",))
def focus_sweep(ctx, *,
                half_width_steps: Annotated[int, Param(unit="step", minimum=10, maximum=20000)] = 400,
                points: Annotated[int, Param(minimum=5, maximum=41)] = 9,
                exposure_s: Annotated[float, Param(unit="s", minimum=0.01, maximum=120)] = 2.0,
                center: Annotated[int, Param(unit="step", minimum=-1)] = -1,
                filter_name: str = "",
                binning: Annotated[int, Param(minimum=1, maximum=4)] = 1,
                move_to_best: bool = True,
                ra_deg: Annotated[float | None, Param(unit="deg", minimum=0, maximum=360)] = None,
                dec_deg: Annotated[float | None, Param(unit="deg", minimum=-90, maximum=90)] = None):
    """Sweep the focuser across the focus, measure the stars' FWHM at each point, fit the V-curve and move to
    the best focus. Point the telescope at a field of stars first (the current pointing is used).

    Parameters:
        half_width_steps (step): the sweep goes from center - half_width to center + half_width
        points: number of focuser positions in the sweep
        exposure_s (s): exposure at each position
        center (step): middle of the sweep (-1: the focuser's current position)
        filter_name: filter to use (empty: the current one)
        binning: camera binning
        move_to_best: finish at the fitted best focus
        ra_deg (deg): field to point at first, with dec_deg (empty: stay where the telescope points)
        dec_deg (deg): declination of that field
    """
    if ra_deg is not None and dec_deg is not None:
        point_at(ctx, ra_deg, dec_deg)
    focuser = ctx.focuser
    start = focuser.position() if center < 0 else center
    positions = np.linspace(start - half_width_steps, start + half_width_steps, points).round().astype(int)
    scale = None
    measured = []
    ctx.log.info("focus sweep around %d: %d points of %g s", start, points, exposure_s)
    for i, pos in enumerate(positions, start=1):
        ctx.set_progress(i - 1, points, f"focuser to {pos}")
        ctx.wait(focuser.start_move(int(pos)), 300)
        frame = ctx.expose(exposure_s, filter_name=filter_name or None, binning=binning, target="focus")
        if scale is None:
            scale = frame_scale_arcsec(frame)
        fwhm = star_fwhm_arcsec(frame.pixels(), scale)
        ctx.log.info("position %d: FWHM %s", pos, "not measured" if fwhm is None else f'{fwhm:.2f}"')
        if fwhm is not None:
            measured.append((int(pos), round(float(fwhm), 3)))
        ctx.publish(v_curve=measured)
        ctx.set_progress(i, points, f"position {pos}: FWHM {fwhm:.2f}\"" if fwhm else f"position {pos}")
    fit = v_curve_fit([p for p, _ in measured], [f for _, f in measured])
    best = int(round(fit["best_focus"]))
    ctx.log.info("best focus %d (FWHM %.2f\")", best, fit["fwhm_at_best_arcsec"])
    if move_to_best:
        ctx.wait(focuser.start_move(best), 300)
    temperature = focuser.temperature_c()
    result = {"best_focus": best, "fwhm_at_best_arcsec": round(fit["fwhm_at_best_arcsec"], 3),
              "v_curve": measured, "fit": fit["coefficients"], "temperature_c": temperature}
    ctx.publish(**result)
    return result


def point_at(ctx, ra_deg: float, dec_deg: float) -> None:
    """Open the dome if it is closed, unpark, slew and let the dome follow."""
    open_to_sky(ctx)
    ctx.set_progress(0, None, f"slewing to RA {ra_deg:.3f} Dec {dec_deg:+.3f}")
    ctx.wait(ctx.mount.start_slew(ra_deg=ra_deg, dec_deg=dec_deg), 600)
    ctx.check()


def frame_scale_arcsec(frame) -> float:
    """The plate scale from the camera's header (PIXSCALE or CDELT), 1"/px when absent."""
    import io

    from astropy.io import fits

    with fits.open(io.BytesIO(frame.data)) as hdul:
        header = next(h for h in hdul if h.data is not None).header
        for key in ("PIXSCALE", "SCALE", "SECPIX"):
            if key in header:
                return float(header[key])
        if "CDELT1" in header:
            return abs(float(header["CDELT1"])) * 3600.0
        if "CD1_1" in header:
            return float(np.hypot(header["CD1_1"], header.get("CD2_1", 0.0))) * 3600.0
    return 1.0
