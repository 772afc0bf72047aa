"""Engineering checks that need no sky (they may run by day): the filter wheel, the dome's rotation, and a
calibration set (bias and darks) after a camera change."""

import time
from typing import Annotated

from procedures.sdk import Param, ProcedureError, procedure


@procedure(title="Filter-wheel check", timeout_s=900, sky="none", tags=("engineering",))
def filter_wheel_check(ctx, *, rounds: Annotated[int, Param(minimum=1, maximum=10)] = 1,
                       dark_exposure_s: Annotated[float, Param(unit="s", minimum=0)] = 0.0):
    """Visit every filter of the wheel, check that it reports the filter asked for and time each move.

    Parameters:
        rounds: times around the wheel
        dark_exposure_s (s): take a dark of this length at each filter (0: none)
    """
    wheel = ctx.filter_wheel
    names = list(wheel.filters())
    total = rounds * len(names)
    moves, errors = [], []
    for r in range(rounds):
        for i, name in enumerate(names, start=1):
            ctx.check()
            t0 = time.monotonic()
            wheel.select(name)
            seconds = round(time.monotonic() - t0, 3)
            now = wheel.current()
            ok = now == name
            moves.append({"filter": name, "move_s": seconds, "ok": ok})
            if not ok:
                errors.append(f"asked {name}, wheel reports {now}")
                ctx.log.error("asked %s, the wheel reports %s", name, now)
            if dark_exposure_s > 0:
                ctx.expose(dark_exposure_s, frame_type="dark", filter_name=name, target="wheel check")
            ctx.set_progress(r * len(names) + i, total, f"{name}: {seconds:.2f} s")
            ctx.publish(moves=moves)
    if errors:
        raise ProcedureError("; ".join(errors))
    return {"filters": names, "slowest_move_s": max(m["move_s"] for m in moves)}


@procedure(title="Dome rotation check", timeout_s=900, sky="none", tags=("engineering",))
def dome_check(ctx, *, azimuths_deg: Annotated[list[float], Param(unit="deg", minimum=0, maximum=360, min_items=1)] = (
                   90.0, 180.0, 270.0, 0.0),
               tolerance_deg: Annotated[float, Param(unit="deg", minimum=0.1)] = 2.0):
    """Rotate the dome to each azimuth (the shutter is not opened) and check where it arrives.

    Parameters:
        azimuths_deg (deg): azimuths to visit, in order
        tolerance_deg (deg): allowed difference between asked and reached azimuth
    """
    dome = ctx.dome
    if dome.state().parked:
        dome.unpark()
    reached = []
    for i, az in enumerate(azimuths_deg, start=1):
        ctx.check()
        t0 = time.monotonic()
        dome.slew_to_azimuth(az)
        got = dome.state().azimuth_deg
        diff = None if got is None else abs((got - az + 180.0) % 360.0 - 180.0)
        reached.append({"asked_deg": az, "reached_deg": got, "seconds": round(time.monotonic() - t0, 2)})
        ctx.set_progress(i, len(azimuths_deg), f"azimuth {az:g}")
        ctx.publish(reached=reached)
        if diff is not None and diff > tolerance_deg:
            raise ProcedureError(f"asked {az:g} deg, the dome reached {got:.1f} deg")
    return {"reached": reached}


@procedure(title="Calibration set (bias and darks)", timeout_s=3600, sky="none", tags=("calibration",))
def calibration_set(ctx, *, bias: Annotated[int, Param(minimum=0, maximum=100)] = 10,
                    dark_exposures_s: Annotated[list[float], Param(unit="s", minimum=0, min_items=1)] = (10.0, 60.0),
                    darks_each: Annotated[int, Param(minimum=0, maximum=100)] = 5):
    """Bias frames and darks of each exposure, stored like the night's calibrations (the analyzer builds masters
    from them). Run it with the dome closed after a camera change.

    Parameters:
        bias: number of bias frames
        dark_exposures_s (s): exposure of each dark series
        darks_each: darks per exposure
    """
    series = [("bias", 0.0)] * bias + [("dark", e) for e in dark_exposures_s for _ in range(darks_each)]
    for i, (kind, exposure) in enumerate(series, start=1):
        ctx.expose(exposure, frame_type=kind, target=kind)
        ctx.set_progress(i, len(series), f"{kind} {exposure:g} s")
    return {"frames": len(series)}
