"""Scheduler benchmark: PyROS's night planner against astroplan and an exact optimum, on the shared sets.

    .venv/bin/python scripts/bench/bench_scheduler.py [--full] [--cpsat-seconds 60]

For N = 50, 200, 1000 (``../shared/data/scheduling/set_N*.json``) it prints, side by side: our wall time
(warm process, median of 3 runs), astroplan 0.10.1 PriorityScheduler at 60 s resolution measured in
this same run (N=50 and 200; N=1000 only with ``--full``, otherwise the README's figure, marked so),
the exact optimum for N=50 (OR-Tools CP-SAT on the same feasible starts and overheads, time-bounded),
and the number of violations found by an independent check of our schedules, which recomputes
everything with plain astropy at 30 s steps including each block's end.

Occupancy = (observing time + transition time) / night length, as astroplan's schedules count it
(its TransitionBlocks fill the slews between observing blocks).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from astropy.coordinates import AltAz, SkyCoord, get_body  # noqa: E402

import sky.astro  # noqa: E402,F401  (astropy offline before astroplan is imported)
from scheduler.algorithm import schedule_night  # noqa: E402
from scheduler.overheads import transition_matrix_s  # noqa: E402
from scheduler.simulate import parse_night, result_document  # noqa: E402
from sky.astro import earth_location, to_time, u  # noqa: E402
from sky.observability import ConstraintArrays, SkyGrid, TargetSet, start_intervals  # noqa: E402

DATA = REPO / ".." / "shared" / "data" / "scheduling"
README_ASTROPLAN = {50: (5.7, 21, 138, 0.932), 200: (22.5, 22, 200, 0.934), 1000: (107.0, 26, 249, 0.938)}
TARGET_WALL_S = {200: 0.2, 1000: 1.0}
CHECK_STEP_S = 30.0


def run_ours(document: dict) -> tuple[float, dict]:
    kwargs = parse_night(document)
    walls = []
    result = None
    for _ in range(3):
        start = time.perf_counter()
        result = schedule_night(**kwargs)
        walls.append(time.perf_counter() - start)
    return statistics.median(walls), result_document(result)


def run_astroplan(document: dict) -> tuple[float, int, int, float]:
    from astroplan import (
        AirmassConstraint,
        AltitudeConstraint,
        AtNightConstraint,
        FixedTarget,
        MoonSeparationConstraint,
        Observer,
        ObservingBlock,
        PriorityScheduler,
        Schedule,
        TimeConstraint,
        Transitioner,
    )

    meta = document["meta"]
    site = meta["site"]
    location = earth_location(latitude_deg=site["lat_deg"], longitude_deg=site["lon_deg"], elevation_m=site["height_m"])
    observer = Observer(location=location)
    start = to_time(_utc(meta["night"]["start_utc"]))
    end = to_time(_utc(meta["night"]["end_utc"]))
    blocks = []
    for seq in document["sequences"]:
        c = seq["constraints"]
        constraints = [AltitudeConstraint(min=c["min_altitude_deg"] * u.deg)]
        if c["max_airmass"] is not None:
            constraints.append(AirmassConstraint(max=c["max_airmass"]))
        if c["min_moon_separation_deg"] is not None:
            constraints.append(MoonSeparationConstraint(min=c["min_moon_separation_deg"] * u.deg))
        if seq["earliest_start_utc"] is not None:
            constraints.append(
                TimeConstraint(
                    to_time(_utc(seq["earliest_start_utc"])),
                    to_time(_utc(seq["latest_start_utc"])) + seq["duration_s"] * u.s,
                )
            )
        target = FixedTarget(SkyCoord(seq["ra_deg"] * u.deg, seq["dec_deg"] * u.deg), name=seq["id"])
        blocks.append(
            ObservingBlock(target, seq["duration_s"] * u.s, seq["astroplan_priority"], constraints=constraints)
        )
    scheduler = PriorityScheduler(
        constraints=[AtNightConstraint.twilight_astronomical()],
        observer=observer,
        transitioner=Transitioner(slew_rate=meta["slew_model"]["rate_deg_per_s"] * u.deg / u.s),
        time_resolution=60 * u.s,
    )
    schedule = Schedule(start, end)
    wall_start = time.perf_counter()
    scheduler(blocks, schedule)
    wall = time.perf_counter() - wall_start
    observed = [b for b in schedule.observing_blocks]
    busy = sum(b.duration.to_value(u.s) for b in schedule.scheduled_blocks)
    priority_sum = sum(11 - b.priority for b in observed)
    return wall, len(observed), priority_sum, busy / (end - start).to_value(u.s)


def exact_optimum(document: dict, seconds: float) -> tuple[int, float, str]:
    """Max priority sum with CP-SAT on the same feasible starts (whole seconds) and overheads as ours."""
    from ortools.sat.python import cp_model

    kwargs = parse_night(document)
    specs, site = kwargs["specs"], kwargs["site"]
    start, end = kwargs["night_start_utc"], kwargs["night_end_utc"]
    horizon = math.floor((end - start).total_seconds())
    grid = SkyGrid(site, start, start + timedelta(seconds=horizon))
    constraints = ConstraintArrays.build(
        len(specs),
        [s.min_altitude_deg for s in specs],
        [s.max_airmass for s in specs],
        [s.min_moon_separation_deg for s in specs],
        [s.at_night for s in specs],
    )
    targets = TargetSet(grid, [s.ra_deg for s in specs], [s.dec_deg for s in specs], constraints, -18.0)
    model = cp_model.CpModel()
    items = []
    for row, (spec, good) in enumerate(zip(specs, targets.intervals(), strict=True)):
        lo = 0.0 if spec.earliest_start_utc is None else (spec.earliest_start_utc - start).total_seconds()
        hi = horizon - spec.duration_s
        if spec.latest_start_utc is not None:
            hi = min(hi, (spec.latest_start_utc - start).total_seconds())
        intervals = [
            [math.ceil(a), math.floor(b)]
            for a, b in start_intervals(good, spec.duration_s, lo, hi)
            if math.floor(b) >= math.ceil(a)
        ]
        if not intervals:
            continue
        d = int(spec.duration_s)
        s = model.NewIntVarFromDomain(cp_model.Domain.FromIntervals(intervals), f"s{row}")
        present = model.NewBoolVar(f"p{row}")
        interval = model.NewOptionalIntervalVar(s, d, s + d, present, f"i{row}")
        items.append((row, spec, s, present, interval, d))
    model.AddNoOverlap([item[4] for item in items])
    transitions = transition_matrix_s(
        kwargs["slew_model"],
        [it[1].ra_deg for it in items],
        [it[1].dec_deg for it in items],
        [None] * len(items),
        [None] * len(items),
    )
    for a in range(len(items)):
        for b in range(a + 1, len(items)):
            _, _, sa, pa, _, da = items[a]
            _, _, sb, pb, _, db = items[b]
            a_first = model.NewBoolVar("")
            model.Add(sb >= sa + da + int(transitions[a][b])).OnlyEnforceIf([a_first, pa, pb])
            model.Add(sa >= sb + db + int(transitions[b][a])).OnlyEnforceIf([a_first.Not(), pa, pb])
    model.Maximize(sum(item[1].priority * item[3] for item in items))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = seconds
    solver.parameters.num_workers = 2
    status = solver.Solve(model)
    return int(solver.ObjectiveValue()), solver.BestObjectiveBound(), solver.StatusName(status)


def _utc(text: str):
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def independent_check(document: dict, schedule: list[dict]) -> list[str]:
    """Violations of the README's rules by ``schedule``, recomputed with plain astropy (no PyROS code)."""
    meta = document["meta"]
    site = meta["site"]
    location = earth_location(latitude_deg=site["lat_deg"], longitude_deg=site["lon_deg"], elevation_m=site["height_m"])
    night_start, night_end = _utc(meta["night"]["start_utc"]), _utc(meta["night"]["end_utc"])
    rate = meta["slew_model"]["rate_deg_per_s"]
    settle = meta["slew_model"]["settle_s"]
    by_id = {s["id"]: s for s in document["sequences"]}
    problems = []
    blocks = sorted(schedule, key=lambda e: e["start_utc"])
    for entry in blocks:
        seq = by_id[entry["id"]]
        start, end = _utc(entry["start_utc"]), _utc(entry["end_utc"])
        if abs((end - start).total_seconds() - seq["duration_s"]) > 1e-6:
            problems.append(f"{seq['id']}: lasts {(end - start).total_seconds()} s, not {seq['duration_s']}")
        if start < night_start or end > night_end:
            problems.append(f"{seq['id']}: outside the night")
        if seq["earliest_start_utc"] and start < _utc(seq["earliest_start_utc"]):
            problems.append(f"{seq['id']}: starts before its window")
        if seq["latest_start_utc"] and start > _utc(seq["latest_start_utc"]):
            problems.append(f"{seq['id']}: starts after its window")
        span = (end - start).total_seconds()
        offsets = np.append(np.arange(0.0, span, CHECK_STEP_S), span)
        times = to_time(start) + offsets * u.s
        frame = AltAz(obstime=times, location=location, pressure=0 * u.hPa)
        altaz = SkyCoord(seq["ra_deg"] * u.deg, seq["dec_deg"] * u.deg).transform_to(frame)
        c = seq["constraints"]
        if np.any(altaz.alt.deg < c["min_altitude_deg"]):
            problems.append(f"{seq['id']}: below {c['min_altitude_deg']} deg (min {altaz.alt.deg.min():.4f})")
        if c["max_airmass"] is not None and np.any(altaz.secz > c["max_airmass"]):
            problems.append(f"{seq['id']}: airmass above {c['max_airmass']} ({float(altaz.secz.max()):.5f})")
        if c["min_moon_separation_deg"] is not None:
            moon = get_body("moon", times, location=location)
            separation = moon.separation(SkyCoord(seq["ra_deg"] * u.deg, seq["dec_deg"] * u.deg)).deg
            if np.any(separation < c["min_moon_separation_deg"]):
                problems.append(f"{seq['id']}: {separation.min():.4f} deg from the Moon")
        sun = get_body("sun", times, location=location).transform_to(frame)
        if np.any(sun.alt.deg > -18.0):
            problems.append(f"{seq['id']}: Sun at {sun.alt.deg.max():.4f} deg")
    for prev, nxt in zip(blocks, blocks[1:], strict=False):
        gap_s = (_utc(nxt["start_utc"]) - _utc(prev["end_utc"])).total_seconds()
        frame = AltAz(obstime=to_time(_utc(prev["end_utc"])), location=location, pressure=0 * u.hPa)
        a = SkyCoord(by_id[prev["id"]]["ra_deg"] * u.deg, by_id[prev["id"]]["dec_deg"] * u.deg).transform_to(frame)
        b = SkyCoord(by_id[nxt["id"]]["ra_deg"] * u.deg, by_id[nxt["id"]]["dec_deg"] * u.deg).transform_to(frame)
        needed_s = a.separation(b).deg / rate + settle
        if gap_s < needed_s - 1e-6:
            problems.append(f"{prev['id']} -> {nxt['id']}: {gap_s:.1f} s between blocks, slew needs {needed_s:.1f} s")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="also run astroplan on N=1000 (~105 s)")
    parser.add_argument("--cpsat-seconds", type=float, default=60.0, help="time limit of the exact optimum (N=50)")
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"no benchmark sets in {DATA.resolve()}")
        return 2
    documents = {n: json.loads((DATA / f"set_N{n}.json").read_text()) for n in (50, 200, 1000)}
    cold_start = time.perf_counter()
    schedule_night(**parse_night(documents[50]))
    print(f"first call in this process (astropy warm-up included): {time.perf_counter() - cold_start:.3f} s\n")

    failures = 0
    rows = []
    for n, document in documents.items():
        wall, ours = run_ours(document)
        if n < 1000 or args.full:
            ap_wall, ap_count, ap_sum, ap_occ = run_astroplan(document)
            ap_source = "this run"
        else:
            ap_wall, ap_count, ap_sum, ap_occ = README_ASTROPLAN[n]
            ap_source = "README (use --full to measure)"
        exact = exact_optimum(document, args.cpsat_seconds) if n == 50 else None
        violations = independent_check(document, ours["schedule"])
        rows.append((n, wall, ours, ap_wall, ap_count, ap_sum, ap_occ, ap_source, exact, violations))

    print(
        f"{'N':>5} {'ours s':>8} {'astroplan s':>12} {'speed-up':>9} {'ours sched':>10} {'ap sched':>8} "
        f"{'ours prio':>9} {'ap prio':>7} {'ours occ':>8} {'ap occ':>6} {'slew s':>6} {'violations':>10}  astroplan"
    )
    for n, wall, ours, ap_wall, ap_count, ap_sum, ap_occ, ap_source, _, violations in rows:
        m = ours["metrics"]
        print(
            f"{n:>5} {wall:>8.3f} {ap_wall:>12.2f} {ap_wall / wall:>8.0f}x {m['scheduled']:>10} {ap_count:>8} "
            f"{m['priority_sum']:>9} {ap_sum:>7} {m['occupancy']:>8.3f} {ap_occ:>6.3f} {m['slew_s']:>6} "
            f"{len(violations):>10}  {ap_source}"
        )
    print("\noccupancy = (observing + transition time) / night length, for both schedulers")
    print("\ntargets:")

    def verdict(ok: bool, text: str) -> None:
        nonlocal failures
        failures += 0 if ok else 1
        print(f"  {'PASS' if ok else 'FAIL'}  {text}")

    for n, wall, ours, ap_wall, _, ap_sum, _, ap_source, exact, violations in rows:
        m = ours["metrics"]
        if n in TARGET_WALL_S:
            verdict(wall <= TARGET_WALL_S[n], f"N={n}: wall {wall:.3f} s <= {TARGET_WALL_S[n]} s")
        verdict(ap_wall / wall >= 100, f"N={n}: {ap_wall / wall:.0f}x faster than astroplan ({ap_source}) >= 100x")
        verdict(m["priority_sum"] >= ap_sum, f"N={n}: priority sum {m['priority_sum']} >= astroplan's {ap_sum}")
        verdict(m["occupancy"] >= 0.95, f"N={n}: occupancy {m['occupancy']:.3f} >= 0.95")
        verdict(not violations, f"N={n}: {len(violations)} violations in the independent astropy check")
        for problem in violations[:5]:
            print(f"        {problem}")
        if exact is not None:
            best, bound, status = exact
            verdict(
                m["priority_sum"] >= 0.98 * best,
                f"N={n}: priority sum {m['priority_sum']} >= 98% of the CP-SAT optimum {best} "
                f"({status}, bound {bound:.0f}; ratio {m['priority_sum'] / best:.3f})",
            )
    print(f"\n{failures} target(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
