"""Standard stars: a photometric sequence on Landolt fields, each through every filter."""

from typing import Annotated

from procedures.sdk import Param, ProcedureError, procedure

# Landolt (1992, 2009) equatorial standard fields (J2000).
LANDOLT_FIELDS = {
    "SA92": (13.80, 0.87),
    "SA95": (58.40, 0.05),
    "SA98": (102.90, -0.33),
    "SA101": (149.10, -0.38),
    "SA104": (189.80, -0.50),
    "SA107": (234.80, -0.25),
    "SA110": (280.90, 0.40),
    "SA113": (328.40, 0.50),
    "PG1633+099": (248.85, 9.80),
    "PG2213-006": (334.05, -0.40),
}


@procedure(title="Standard-star sequence", timeout_s=5400, sky="dark", tags=("photometry",))
def standard_stars(ctx, *,
                   fields: Annotated[list[str], Param(min_items=1)] = ("SA92", "SA104", "SA110"),
                   filters: Annotated[list[str], Param(min_items=1)] = ("V", "R"),
                   exposure_s: Annotated[float, Param(unit="s", minimum=0.01)] = 10.0,
                   repeats: Annotated[int, Param(minimum=1, maximum=20)] = 1,
                   min_altitude_deg: Annotated[float, Param(unit="deg", minimum=0, maximum=89)] = 30.0):
    """Observe Landolt standard fields through each filter (fields below the altitude limit are skipped).

    Parameters:
        fields: Landolt field names (SA92, SA95, SA98, SA101, SA104, SA107, SA110, SA113, PG1633+099, PG2213-006)
        filters: filters, in order
        exposure_s (s): exposure of each frame
        repeats: frames per field and filter
        min_altitude_deg (deg): skip a field lower than this
    """
    unknown = [f for f in fields if f not in LANDOLT_FIELDS]
    if unknown:
        raise ProcedureError(f"unknown field(s): {', '.join(unknown)}")
    total = len(fields) * len(filters) * repeats
    n, observed = 0, []
    for name in fields:
        ra, dec = LANDOLT_FIELDS[name]
        ctx.set_progress(n, total, f"slewing to {name}")
        try:
            ctx.wait(ctx.mount.start_slew(ra_deg=ra, dec_deg=dec), 300)
        except Exception as exc:
            if ctx.abort_requested():
                raise
            ctx.log.warning("%s skipped: %s", name, exc)
            n += len(filters) * repeats
            continue
        alt = ctx.mount.state().alt_deg
        if alt is not None and alt < min_altitude_deg:
            ctx.log.warning("%s at %.0f deg: below %.0f deg, skipped", name, alt, min_altitude_deg)
            n += len(filters) * repeats
            continue
        for flt in filters:
            for _ in range(repeats):
                ctx.expose(exposure_s, filter_name=flt, target=name)
                n += 1
                ctx.set_progress(n, total, f"{name} {flt}")
        observed.append(name)
        ctx.publish(observed=observed)
    return {"observed": observed}
