"""The night plan: which sequences run tonight, and when (pure: plain dataclasses in and out, no Django).

Objective: maximise the value of the night, the sum of :attr:`SequenceSpec.value` over placed sequences.
The value makes an alert outweigh every ordinary sequence together, then orders by program priority,
then by request priority (1..10, 10 = most important).

Method (deterministic: no randomness, no clock-dependent decisions):

1. Observability (:mod:`sky.observability`) turns each sequence into the intervals of whole
   seconds where it can START and run whole with all its constraints held, inside its window.
2. Greedy placement in value order (ties: the least flexible first, then id). A sequence is inserted
   between two neighbours *with shifting*: its predecessors may move earlier and its successors later,
   each within its own feasible intervals, as far as the overheads allow (the classic earliest/latest
   start passes over the current order). Among the positions that fit, the one that moves the others
   least is taken, then the one nearest the preferred start, then the earliest.
3. Improvement, until nothing changes: an unplaced sequence replaces one or two adjacent placed
   sequences of lower total value (those are re-inserted elsewhere when they fit), and each placed
   sequence is tentatively removed to see if the freed time takes more value. Every accepted move
   strictly raises the value of the night, so this ends; and at the end no unplaced sequence could
   use the place of a single lower-value placed one.

Times are integers: seconds since the start of the plan (the night start, or ``now``). Overheads are
rounded up to whole seconds, observability edges inward, so the plan never claims a fraction of a
second that it does not have.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from scheduler.overheads import SlewModel, transition_matrix_s
from scheduler.reasons import MAX_NAMED, Reason
from sky.observability import (
    ASTRONOMICAL_TWILIGHT_DEG,
    ConstraintArrays,
    Site,
    SkyGrid,
    TargetSet,
    start_intervals,
    unobservable_cause,
)

# One alert outweighs any set of ordinary sequences of a night (at most a few hundred blocks).
ALERT_VALUE = 1_000_000
# Program priority is compared before request priority: one program level outweighs the 1..10 range.
PROGRAM_PRIORITY_STEP = 11
# Improvement rounds are bounded so that a pathological input cannot loop long; in practice a round
# that changes nothing comes after 2-3.
MAX_IMPROVEMENT_ROUNDS = 6


@dataclass(frozen=True)
class SequenceSpec:
    """One sequence to schedule. ``earliest/latest_start_utc`` bound its START time (inclusive)."""

    id: str
    ra_deg: float
    dec_deg: float
    duration_s: float
    priority: int = 5
    program_priority: int = 0
    is_alert: bool = False
    program: str | None = None
    earliest_start_utc: datetime | None = None
    latest_start_utc: datetime | None = None
    preferred_start_utc: datetime | None = None
    # PyROS deltaTL/deltaTR: when given, the start must lie in [preferred - early, preferred + late];
    # without them the preferred start is only a preference.
    tolerance_early_s: float | None = None
    tolerance_late_s: float | None = None
    min_altitude_deg: float = 30.0
    max_airmass: float | None = None
    min_moon_separation_deg: float | None = None
    at_night: bool = True
    filters: tuple[str, ...] = ()

    @property
    def value(self) -> int:
        return (ALERT_VALUE if self.is_alert else 0) + PROGRAM_PRIORITY_STEP * self.program_priority + self.priority


@dataclass(frozen=True)
class RunningSequence:
    """The sequence executing now: it stays where it is, and the next block slews from it."""

    id: str
    ra_deg: float
    dec_deg: float
    start_utc: datetime
    end_utc: datetime
    filters: tuple[str, ...] = ()


@dataclass(frozen=True)
class ScheduledEntry:
    id: str
    start_utc: datetime
    end_utc: datetime
    overhead_before_s: int  # slew/settle/filter time from the previous block (0 for the first)
    slack_early_s: int  # how much earlier it could start, others unchanged
    slack_late_s: int  # how much later it could start, others unchanged
    running: bool = False


@dataclass
class ScheduleResult:
    entries: list[ScheduledEntry]
    reasons: dict[str, Reason]  # why each sequence not placed is not (scheduler.reasons)
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def rejected(self) -> dict[str, str]:
        """The sequences not placed, with their reasons in words."""
        return {spec_id: reason.text for spec_id, reason in self.reasons.items()}


class _Planner:
    """Insertion with shifting and local improvement on integer seconds. Candidates are 0..n-1."""

    def __init__(
        self,
        durations: list[int],
        values: list[int],
        feasible: list[list[tuple[int, int]]],
        preferred: list[int | None],
        programs: list[str | None],
        transitions: list[list[int]],
        allocations: Mapping[str, float],
        anchor: tuple[int, int] | None,
        flexibility: list[int],
        ids: list[str],
    ) -> None:
        self.d = durations
        self.v = values
        self.F = feasible
        self.F_lo = [[a for a, _ in intervals] for intervals in feasible]
        self.F_hi = [[b for _, b in intervals] for intervals in feasible]
        self.pref = preferred
        self.prog = programs
        self.T = transitions
        self.alloc = allocations
        self.used: dict[str, int] = {}
        self.anchor = anchor  # (transition row index of the running sequence, its end in seconds)
        self.n = len(durations)
        self.order = sorted(range(self.n), key=lambda i: (-values[i] / durations[i], flexibility[i], ids[i]))
        self.rank = [0] * self.n
        for position, i in enumerate(self.order):
            self.rank[i] = position
        self.blocks: list[int] = []
        self.starts: list[int] = []
        self.placed = [False] * self.n
        # Every change of the plan gets a new version: the earliest/latest starts and the "does not fit"
        # verdicts below are valid for one version only (most insertion attempts fail and change nothing).
        self.version = 0
        self._last_version = 0
        self._bounds_version = -1
        self._bounds: tuple[list[int], list[int]] = ([], [])
        self._failed_at = [-1] * self.n

    # -- feasible starts --------------------------------------------------------------------
    def first_at_or_after(self, i: int, t: int) -> int | None:
        k = bisect.bisect_left(self.F_hi[i], t)
        if k == len(self.F_hi[i]):
            return None
        return max(t, self.F_lo[i][k])

    def last_at_or_before(self, i: int, t: int) -> int | None:
        k = bisect.bisect_right(self.F_lo[i], t) - 1
        if k < 0:
            return None
        return min(t, self.F_hi[i][k])

    # -- earliest / latest starts of the current order ---------------------------------------
    def _first_bound(self, i: int) -> int:
        if self.anchor is None:
            return 0  # no slew before the first block of the night
        row, end = self.anchor
        return max(0, end + self.T[row][i])

    def _earliest_starts(self) -> list[int]:
        es: list[int] = []
        for k, b in enumerate(self.blocks):
            bound = (
                self._first_bound(b) if k == 0 else es[-1] + self.d[self.blocks[k - 1]] + self.T[self.blocks[k - 1]][b]
            )
            es.append(self.first_at_or_after(b, bound))  # type: ignore[arg-type]
        return es

    def _latest_starts(self) -> list[int]:
        n = len(self.blocks)
        ls = [0] * n
        for k in range(n - 1, -1, -1):
            b = self.blocks[k]
            bound = self.F_hi[b][-1] if k == n - 1 else ls[k + 1] - self.T[b][self.blocks[k + 1]] - self.d[b]
            ls[k] = self.last_at_or_before(b, bound)  # type: ignore[assignment]
        return ls

    def bounds(self) -> tuple[list[int], list[int]]:
        """Earliest and latest starts of the current order, computed once per version of the plan."""
        if self._bounds_version != self.version:
            self._bounds = (self._earliest_starts(), self._latest_starts())
            self._bounds_version = self.version
        return self._bounds

    # -- insertion ---------------------------------------------------------------------------
    def allocation_allows(self, i: int) -> bool:
        program = self.prog[i]
        if program is None or program not in self.alloc:
            return True
        return self.used.get(program, 0) + self.d[i] <= self.alloc[program]

    def best_insertion(self, i: int) -> tuple[tuple[int, int, int], int, int] | None:
        """The best (cost, gap, start) to insert ``i`` with shifting, or None if it cannot fit."""
        blocks, starts, d, T = self.blocks, self.starts, self.d, self.T
        n = len(blocks)
        es, ls = self.bounds()
        lo_i, hi_i = self.F_lo[i][0], self.F_hi[i][-1]
        pref = self.pref[i]
        best: tuple[tuple[int, int, int], int, int] | None = None
        # Gaps before a block whose latest start is before i's first possible start cannot take i.
        for g in range(bisect.bisect_left(ls, lo_i), n + 1):
            if g > 0:
                prev = blocks[g - 1]
                lower = es[g - 1] + d[prev] + T[prev][i]
                free_lo = starts[g - 1] + d[prev] + T[prev][i]
            else:
                lower = free_lo = self._first_bound(i)
            if lower > hi_i:
                break
            if g < n:
                nxt = blocks[g]
                upper = ls[g] - T[i][nxt] - d[i]
                free_hi = starts[g] - T[i][nxt] - d[i]
                if upper < lo_i:
                    continue
            else:
                upper = free_hi = hi_i
            if upper < lower:
                continue
            desired = pref if pref is not None else free_lo
            if free_lo <= free_hi:
                desired = min(max(desired, free_lo), free_hi)
            k0 = max(0, bisect.bisect_left(self.F_hi[i], lower))
            for k in range(k0, len(self.F_lo[i])):
                a, b = self.F_lo[i][k], self.F_hi[i][k]
                if a > upper:
                    break
                lo, hi = max(a, lower), min(b, upper)
                if lo > hi:
                    continue
                s = min(max(desired, lo), hi)
                displacement = max(0, free_lo - s) + max(0, s - free_hi)
                cost = (displacement, abs(s - pref) if pref is not None else 0, s)
                if best is None or cost < best[0]:
                    best = (cost, g, s)
        return best

    def insert_at(self, i: int, g: int, s: int) -> None:
        blocks, starts, d, T = self.blocks, self.starts, self.d, self.T
        blocks.insert(g, i)
        starts.insert(g, s)
        for k in range(g - 1, -1, -1):  # predecessors move earlier, only as much as needed
            bound = starts[k + 1] - T[blocks[k]][blocks[k + 1]] - d[blocks[k]]
            if starts[k] <= bound:
                break
            starts[k] = self.last_at_or_before(blocks[k], bound)  # type: ignore[assignment]
        for k in range(g + 1, len(blocks)):  # successors move later
            bound = starts[k - 1] + d[blocks[k - 1]] + T[blocks[k - 1]][blocks[k]]
            if starts[k] >= bound:
                break
            starts[k] = self.first_at_or_after(blocks[k], bound)  # type: ignore[assignment]
        self.placed[i] = True
        self._new_version()
        if self.prog[i] is not None:
            self.used[self.prog[i]] = self.used.get(self.prog[i], 0) + d[i]

    def try_insert(self, i: int) -> bool:
        if self._failed_at[i] == self.version or not self.allocation_allows(i):
            return False
        found = self.best_insertion(i)
        if found is None:
            self._failed_at[i] = self.version
            return False
        self.insert_at(i, found[1], found[2])
        return True

    def remove(self, k: int) -> int:
        """Remove the k-th block (the rest stays feasible: overheads obey the triangle inequality)."""
        i = self.blocks.pop(k)
        self.starts.pop(k)
        self.placed[i] = False
        self._new_version()
        if self.prog[i] is not None:
            self.used[self.prog[i]] -= self.d[i]
        return i

    # -- state -------------------------------------------------------------------------------
    def _new_version(self) -> None:
        self._last_version += 1
        self.version = self._last_version

    def snapshot(self) -> tuple[list[int], list[int], list[bool], dict[str, int], int]:
        return list(self.blocks), list(self.starts), list(self.placed), dict(self.used), self.version

    def restore(self, state: tuple[list[int], list[int], list[bool], dict[str, int], int]) -> None:
        # The plan is again exactly the one of that version, so what was known about it still holds.
        self.blocks, self.starts, self.placed, self.used = (
            list(state[0]),
            list(state[1]),
            list(state[2]),
            dict(state[3]),
        )
        self.version = state[4]

    def total_value(self) -> int:
        return sum(self.v[b] for b in self.blocks)

    # -- the algorithm -----------------------------------------------------------------------
    def insert_all_unplaced(self, candidates: Sequence[int] | None = None) -> bool:
        changed = False
        for i in self.order if candidates is None else candidates:
            if not self.placed[i] and self.try_insert(i):
                changed = True
        return changed

    def fits_between(self, i: int, k_prev: int, k_next: int) -> bool:
        """Whether ``i`` fits (with shifting) between blocks ``k_prev`` and ``k_next`` once those in between go.

        The earliest starts before a removed stretch and the latest starts after it do not depend on it,
        so this is exact for the current plan, and costs a couple of look-ups instead of a trial.
        """
        es, ls = self.bounds()
        if k_prev >= 0:
            prev = self.blocks[k_prev]
            lower = es[k_prev] + self.d[prev] + self.T[prev][i]
        else:
            lower = self._first_bound(i)
        start = self.first_at_or_after(i, lower)
        if start is None:
            return False
        if k_next >= len(self.blocks):
            return True
        nxt = self.blocks[k_next]
        return start <= ls[k_next] - self.T[i][nxt] - self.d[i]

    def replace_lower(self) -> bool:
        """Unplaced sequences take the place of one or two adjacent placed ones worth less."""
        improved = False
        for i in self.order:
            if self.placed[i] or not self.allocation_allows_after_removal(i):
                continue
            for width in (1, 2):
                done = False
                for k in range(len(self.blocks) - width + 1):
                    removed = self.blocks[k : k + width]
                    if sum(self.v[b] for b in removed) >= self.v[i] or not self.fits_between(i, k - 1, k + width):
                        continue
                    before = self.snapshot()
                    value_before = self.total_value()
                    for _ in range(width):
                        self.remove(k)
                    if self.try_insert(i):
                        self.insert_all_unplaced(sorted(removed, key=self.rank.__getitem__))
                        if self.total_value() > value_before:
                            improved = done = True
                            break
                    self.restore(before)
                if done:
                    break
        return improved

    def allocation_allows_after_removal(self, i: int) -> bool:
        program = self.prog[i]
        return program is None or program not in self.alloc or self.d[i] <= self.alloc[program]

    def remove_and_refill(self) -> bool:
        """Each placed block in turn is removed; keep the change if the freed time takes more value."""
        improved = False
        k = 0
        while k < len(self.blocks):
            before = self.snapshot()
            value_before = self.total_value()
            removed_block = self.remove(k)
            # Refill the freed gap: only sequences that fit right there (a quick exact test) are tried.
            refill = [
                i for i in self.order if not self.placed[i] and (i == removed_block or self.fits_between(i, k - 1, k))
            ]
            self.insert_all_unplaced(refill)
            if self.total_value() > value_before:
                improved = True
            else:
                self.restore(before)
            k += 1
        return improved

    def run(self, improve: bool = True) -> None:
        self.insert_all_unplaced()
        if not improve:
            return
        for _ in range(MAX_IMPROVEMENT_ROUNDS):
            changed = self.replace_lower()
            changed = self.remove_and_refill() or changed
            changed = self.insert_all_unplaced() or changed
            if not changed:
                break

    def slack(self, k: int) -> tuple[int, int]:
        b, s = self.blocks[k], self.starts[k]
        lower = (
            self._first_bound(b)
            if k == 0
            else self.starts[k - 1] + self.d[self.blocks[k - 1]] + self.T[self.blocks[k - 1]][b]
        )
        upper = (
            self.F_hi[b][-1]
            if k == len(self.blocks) - 1
            else self.starts[k + 1] - self.T[b][self.blocks[k + 1]] - self.d[b]
        )
        interval = bisect.bisect_right(self.F_lo[b], s) - 1
        lower = max(lower, self.F_lo[b][interval])
        upper = min(upper, self.F_hi[b][interval])
        return s - lower, upper - s


def _seconds(value: datetime, origin: datetime) -> float:
    if value.tzinfo is None:
        raise ValueError("naive datetime: PyROS works in aware UTC datetimes only")
    return (value - origin).total_seconds()


def _validate(specs: Sequence[SequenceSpec]) -> None:
    seen: set[str] = set()
    for spec in specs:
        if spec.id in seen:
            raise ValueError(f"duplicate sequence id {spec.id!r}")
        seen.add(spec.id)
        if not (spec.duration_s > 0 and math.isfinite(spec.duration_s)):
            raise ValueError(f"{spec.id}: duration_s must be > 0, got {spec.duration_s}")
        if not (-90.0 <= spec.dec_deg <= 90.0) or not math.isfinite(spec.ra_deg):
            raise ValueError(f"{spec.id}: bad coordinates ra={spec.ra_deg} dec={spec.dec_deg}")
        if spec.max_airmass is not None and spec.max_airmass < 1.0:
            raise ValueError(f"{spec.id}: max_airmass must be >= 1, got {spec.max_airmass}")


def schedule_night(
    specs: Sequence[SequenceSpec],
    site: Site,
    night_start_utc: datetime,
    night_end_utc: datetime,
    slew_model: SlewModel | None = None,
    *,
    now_utc: datetime | None = None,
    running: RunningSequence | None = None,
    allocations_s: Mapping[str, float] | None = None,
    twilight_deg: float = ASTRONOMICAL_TWILIGHT_DEG,
    grid_step_s: float = 60.0,
    improve: bool = True,
) -> ScheduleResult:
    """Plan ``specs`` between ``max(night_start, now)`` and ``night_end``; see the module docstring.

    ``running`` is kept as it is (it is not re-planned even if it is also in ``specs``);
    ``allocations_s`` maps a program to the observing time it has left (programs not listed: no limit).
    """
    wall_start = time.perf_counter()
    slew_model = slew_model or SlewModel()
    allocations_s = allocations_s or {}
    _validate(specs)
    origin = max(night_start_utc, now_utc) if now_utc is not None else night_start_utc
    horizon_s = math.floor(_seconds(night_end_utc, origin))
    rejected: dict[str, Reason] = {}
    specs = [spec for spec in specs if running is None or spec.id != running.id]
    if horizon_s <= 0:
        for spec in specs:
            rejected[spec.id] = Reason.of("night_over", night_end=night_end_utc, duration_s=spec.duration_s)
        return _result([], rejected, [], None, running, origin, 0, slew_model, wall_start)

    # Start windows in seconds since the origin, before any sky computation.
    earliest = np.zeros(len(specs))
    latest = np.zeros(len(specs))
    for row, spec in enumerate(specs):
        lo, hi = 0.0, horizon_s - spec.duration_s
        if spec.earliest_start_utc is not None:
            lo = max(lo, _seconds(spec.earliest_start_utc, origin))
        if spec.latest_start_utc is not None:
            hi = min(hi, _seconds(spec.latest_start_utc, origin))
        if spec.preferred_start_utc is not None and spec.tolerance_early_s is not None:
            lo = max(lo, _seconds(spec.preferred_start_utc, origin) - spec.tolerance_early_s)
        if spec.preferred_start_utc is not None and spec.tolerance_late_s is not None:
            hi = min(hi, _seconds(spec.preferred_start_utc, origin) + spec.tolerance_late_s)
        earliest[row], latest[row] = lo, hi

    grid = SkyGrid(site, origin, origin + timedelta(seconds=horizon_s), grid_step_s)
    constraints = ConstraintArrays.build(
        len(specs),
        [s.min_altitude_deg for s in specs],
        [s.max_airmass for s in specs],
        [s.min_moon_separation_deg for s in specs],
        [s.at_night for s in specs],
    )
    targets = TargetSet(grid, [s.ra_deg for s in specs], [s.dec_deg for s in specs], constraints, twilight_deg)
    good = targets.intervals() if specs else []

    candidates: list[int] = []
    feasible: list[list[tuple[int, int]]] = []
    for row, spec in enumerate(specs):
        reason = _window_reason(spec, earliest[row], latest[row], origin, night_end_utc, horizon_s)
        if reason is not None:
            rejected[spec.id] = reason
            continue
        intervals = [
            (math.ceil(a), math.floor(b))
            for a, b in start_intervals(good[row], spec.duration_s, earliest[row], latest[row])
            if math.floor(b) >= math.ceil(a)
        ]
        if not intervals:
            rejected[spec.id] = Reason.from_cause(
                unobservable_cause(targets, row, spec.duration_s, earliest[row], latest[row])
            )
            continue
        program = spec.program
        if program is not None and program in allocations_s and spec.duration_s > allocations_s[program]:
            rejected[spec.id] = Reason.of(
                "allocation_exhausted", program=program, left_s=allocations_s[program],
                duration_s=spec.duration_s, after_others=False,
            )
            continue
        candidates.append(row)
        feasible.append(intervals)

    chosen = [specs[row] for row in candidates]
    ra = [s.ra_deg for s in chosen] + ([running.ra_deg] if running else [])
    dec = [s.dec_deg for s in chosen] + ([running.dec_deg] if running else [])
    first_filter = [s.filters[0] if s.filters else None for s in chosen]
    last_filter = [s.filters[-1] if s.filters else None for s in chosen]
    if running:
        first_filter.append(running.filters[0] if running.filters else None)
        last_filter.append(running.filters[-1] if running.filters else None)
    transitions = transition_matrix_s(slew_model, ra, dec, first_filter, last_filter).tolist() if ra else []
    anchor = None
    if running is not None and running.end_utc > origin:
        anchor = (len(chosen), math.ceil(_seconds(running.end_utc, origin)))
    elif running is not None:
        anchor = (len(chosen), 0)

    planner = _Planner(
        durations=[math.ceil(s.duration_s) for s in chosen],
        values=[s.value for s in chosen],
        feasible=feasible,
        preferred=[
            None if s.preferred_start_utc is None else round(_seconds(s.preferred_start_utc, origin)) for s in chosen
        ],
        programs=[s.program for s in chosen],
        transitions=transitions,
        allocations=allocations_s,
        anchor=anchor,
        flexibility=[sum(b - a for a, b in f) for f in feasible],
        ids=[s.id for s in chosen],
    )
    planner.run(improve=improve)
    for i, spec in enumerate(chosen):
        if not planner.placed[i]:
            rejected[spec.id] = _displaced_reason(planner, i, chosen, origin)
    return _result(chosen, rejected, [], planner, running, origin, horizon_s, slew_model, wall_start)


def _window_reason(
    spec: SequenceSpec, lo_s: float, hi_s: float, origin: datetime, night_end: datetime, horizon_s: int
) -> Reason | None:
    if hi_s >= lo_s:
        return None
    if spec.duration_s > horizon_s:
        return Reason.of("longer_than_night", duration_s=spec.duration_s, plan_start=origin, night_end=night_end)
    if spec.latest_start_utc is not None and spec.latest_start_utc < origin:
        return Reason.of("window_closed", duration_s=spec.duration_s, latest_start=spec.latest_start_utc)
    if spec.earliest_start_utc is not None and spec.earliest_start_utc > night_end:
        return Reason.of("window_after_night", duration_s=spec.duration_s, earliest_start=spec.earliest_start_utc)
    return Reason.of("window_outside_night", duration_s=spec.duration_s, plan_start=origin, night_end=night_end)


def _describe(spec: SequenceSpec) -> dict:
    """What a reason says of a sequence in the way: its id and why it comes first (no internal scores)."""
    return {"id": spec.id, "alert": spec.is_alert, "program": spec.program, "program_priority": spec.program_priority,
            "priority": spec.priority}


def _displaced_reason(planner: _Planner, i: int, chosen: Sequence[SequenceSpec], origin: datetime) -> Reason:
    spec = chosen[i]
    lo, hi = planner.F_lo[i][0], planner.F_hi[i][-1]
    if not planner.allocation_allows(i) and spec.program is not None:
        left = planner.alloc[spec.program] - planner.used.get(spec.program, 0)
        return Reason.of("allocation_exhausted", program=spec.program, left_s=max(0.0, left),
                         duration_s=spec.duration_s, after_others=True)
    takers = sorted(
        ((planner.v[b], chosen[b].id, b) for b, s in zip(planner.blocks, planner.starts, strict=True)
         if s < hi + spec.duration_s and s + planner.d[b] > lo),
        key=lambda t: (-t[0], t[1]),
    )
    higher = [t for t in takers if t[0] > spec.value]
    # Placed first because worth more (displaced), or several in its place that together are worth more.
    code, shown = ("displaced", higher) if higher else ("no_room", takers)
    return Reason.of(
        code, duration_s=spec.duration_s, by=[_describe(chosen[b]) for _, _, b in shown[:MAX_NAMED]],
        more=max(0, len(shown) - MAX_NAMED), possible_from=origin + timedelta(seconds=lo),
        possible_to=origin + timedelta(seconds=hi), alert=spec.is_alert, program_priority=spec.program_priority,
        priority=spec.priority,
    )


def _result(
    chosen: Sequence[SequenceSpec],
    rejected: dict[str, Reason],
    entries: list[ScheduledEntry],
    planner: _Planner | None,
    running: RunningSequence | None,
    origin: datetime,
    horizon_s: int,
    slew_model: SlewModel,
    wall_start: float,
) -> ScheduleResult:
    if running is not None:
        entries.append(ScheduledEntry(running.id, running.start_utc, running.end_utc, 0, 0, 0, running=True))
    busy_s = 0
    overhead_total_s = 0
    priority_sum = 0
    value_sum = 0
    if planner is not None:
        for k, (b, s) in enumerate(zip(planner.blocks, planner.starts, strict=True)):
            if k > 0:
                overhead = planner.T[planner.blocks[k - 1]][b]
            elif planner.anchor is not None:
                overhead = planner.T[planner.anchor[0]][b]
            else:
                overhead = 0
            early, late = planner.slack(k)
            entries.append(
                ScheduledEntry(
                    chosen[b].id,
                    origin + timedelta(seconds=s),
                    origin + timedelta(seconds=s + planner.d[b]),
                    overhead,
                    early,
                    late,
                )
            )
            busy_s += planner.d[b]
            overhead_total_s += overhead
            priority_sum += chosen[b].priority
            value_sum += chosen[b].value
    return ScheduleResult(
        entries=entries,
        reasons=rejected,
        metrics={
            "wall_s": time.perf_counter() - wall_start,
            "scheduled": len(entries) - (1 if running is not None else 0),
            "priority_sum": priority_sum,
            "value_sum": value_sum,
            # As astroplan's schedules count it: observing plus transition blocks over the plan length.
            "occupancy": (busy_s + overhead_total_s) / horizon_s if horizon_s > 0 else 0.0,
            "slew_s": overhead_total_s,
            "observing_s": busy_s,
            "plan_length_s": horizon_s,
        },
    )
