"""Twilight sky flats: an exposure ramp that follows the sky's brightness toward a target level."""

from typing import Annotated

import numpy as np

from procedures.sdk import Param, procedure


def next_exposure_s(exposure_s: float, level_adu: float, target_adu: float, lo_s: float, hi_s: float) -> float:
    """The exposure that brings the median to the target, the sky level being proportional to the exposure."""
    if level_adu <= 0:
        return hi_s
    return float(np.clip(exposure_s * target_adu / level_adu, lo_s, hi_s))


@procedure(title="Sky flats (exposure ramp)", timeout_s=2400, sky="twilight", tags=("calibration",))
def sky_flats(ctx, *,
              filters: Annotated[list[str], Param(min_items=1)] = ("R",),
              per_filter: Annotated[int, Param(minimum=1, maximum=50)] = 5,
              target_adu: Annotated[float, Param(unit="ADU", minimum=100)] = 25000.0,
              tolerance: Annotated[float, Param(minimum=0.05, maximum=0.9)] = 0.3,
              first_exposure_s: Annotated[float, Param(unit="s", minimum=0.01)] = 1.0,
              min_exposure_s: Annotated[float, Param(unit="s", minimum=0.001)] = 0.1,
              max_exposure_s: Annotated[float, Param(unit="s", minimum=0.1)] = 60.0,
              max_tries: Annotated[int, Param(minimum=1, maximum=200)] = 40):
    """Take flats in each filter: each exposure is scaled from the last frame's median toward the target level
    (the twilight sky brightens or fades), and frames within the tolerance are kept as flats.

    Parameters:
        filters: filters, in order (bluest last at dusk, first at dawn)
        per_filter: flats to keep per filter
        target_adu (ADU): median level aimed at
        tolerance: a frame within target * (1 +/- tolerance) is kept
        first_exposure_s (s): exposure of the first test frame
        min_exposure_s (s): shortest exposure (shutter pattern below)
        max_exposure_s (s): longest exposure (stars appear above)
        max_tries: frames per filter before giving up
    """
    total = len(filters) * per_filter
    kept = {}
    exposure = first_exposure_s
    for name in filters:
        good, tries = 0, 0
        while good < per_filter and tries < max_tries:
            tries += 1
            test = ctx.expose(exposure, frame_type="flat", filter_name=name, target="skyflat", save=False)
            level = float(np.median(test.pixels()))
            within = abs(level - target_adu) <= tolerance * target_adu
            ctx.log.info("%s %.3g s: median %.0f ADU%s", name, exposure, level, " (kept)" if within else "")
            if within:
                ctx.expose(exposure, frame_type="flat", filter_name=name, target="skyflat")
                good += 1
                ctx.set_progress(sum(kept.values()) + good, total, f"{name}: {good}/{per_filter}")
            exposure = next_exposure_s(exposure, level, target_adu, min_exposure_s, max_exposure_s)
        kept[name] = good
        ctx.publish(kept=kept)
    return {"kept": kept, "last_exposure_s": exposure}
