"""The night planner: properties over random nights (hypothesis), rescheduling, reasons."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler.algorithm import RunningSequence, SequenceSpec, schedule_night
from scheduler.overheads import SlewModel, separation_matrix_deg
from sky.observability import Site, TargetSet, observable_windows

OHP = Site(latitude_deg=43.9317, longitude_deg=5.7122, elevation_m=650.0)
EVENING = datetime(2026, 12, 16, 17, 45, tzinfo=UTC)
MORNING = datetime(2026, 12, 17, 5, 21, tzinfo=UTC)
SLEW = SlewModel(rate_deg_s=0.5, settle_s=5.0)


@st.composite
def nights(draw) -> list[SequenceSpec]:
    n = draw(st.integers(min_value=1, max_value=14))
    specs = []
    for k in range(n):
        windowed = draw(st.booleans())
        earliest = EVENING + timedelta(minutes=draw(st.integers(0, 600))) if windowed else None
        specs.append(
            SequenceSpec(
                id=f"s{k:02d}",
                ra_deg=draw(st.floats(0, 359.9)),
                dec_deg=draw(st.floats(-20, 85)),
                duration_s=60.0 * draw(st.integers(5, 120)),
                priority=draw(st.integers(1, 10)),
                earliest_start_utc=earliest,
                latest_start_utc=earliest + timedelta(minutes=draw(st.integers(0, 240))) if windowed else None,
                min_altitude_deg=draw(st.sampled_from([20.0, 30.0, 45.0])),
                max_airmass=draw(st.sampled_from([None, 1.5])),
                min_moon_separation_deg=draw(st.sampled_from([None, 30.0])),
            )
        )
    return specs


def feasible_starts(spec: SequenceSpec) -> list[tuple[datetime, datetime]]:
    latest = min(spec.latest_start_utc or MORNING, MORNING - timedelta(seconds=spec.duration_s))
    (result,) = (
        observable_windows(
            site=OHP,
            ra_deg=[spec.ra_deg],
            dec_deg=[spec.dec_deg],
            earliest_start_utc=[max(spec.earliest_start_utc or EVENING, EVENING)],
            latest_start_utc=[latest],
            duration_s=[spec.duration_s],
            min_altitude_deg=spec.min_altitude_deg,
            max_airmass=spec.max_airmass,
            min_moon_separation_deg=spec.min_moon_separation_deg,
        )
        if latest >= (spec.earliest_start_utc or EVENING)
        else (None,)
    )
    return [] if result is None else result.start_intervals_utc


def overhead_s(a: SequenceSpec, b: SequenceSpec) -> float:
    return (
        float(separation_matrix_deg([a.ra_deg, b.ra_deg], [a.dec_deg, b.dec_deg])[0, 1]) / SLEW.rate_deg_s
        + SLEW.settle_s
    )


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nights())
def test_plans_respect_overlaps_windows_constraints_and_priorities(specs: list[SequenceSpec]) -> None:
    result = schedule_night(specs, OHP, EVENING, MORNING, SLEW)
    by_id = {s.id: s for s in specs}
    entries = sorted(result.entries, key=lambda e: e.start_utc)
    assert {e.id for e in entries} | set(result.rejected) == set(by_id)
    assert not {e.id for e in entries} & set(result.rejected)
    assert all(reason for reason in result.rejected.values())
    # No overlaps, and the slew between two blocks fits in the gap between them.
    for prev, nxt in zip(entries, entries[1:], strict=False):
        assert (nxt.start_utc - prev.end_utc).total_seconds() >= overhead_s(by_id[prev.id], by_id[nxt.id]) - 1e-6
    starts = {s.id: feasible_starts(s) for s in specs}
    for entry in entries:
        spec = by_id[entry.id]
        assert entry.end_utc - entry.start_utc == timedelta(seconds=spec.duration_s)
        assert EVENING <= entry.start_utc and entry.end_utc <= MORNING
        # Each placed start lies in one of the intervals where the whole block is observable.
        assert any(a <= entry.start_utc <= b for a, b in starts[entry.id]), entry
    # A feasible sequence is never rejected while a lower one sits where it could go (neighbours unchanged).
    for rejected_id in result.rejected:
        rejected = by_id[rejected_id]
        for k, lower in enumerate(entries):
            if by_id[lower.id].value >= rejected.value:
                continue
            lo = (
                EVENING
                if k == 0
                else entries[k - 1].end_utc + timedelta(seconds=overhead_s(by_id[entries[k - 1].id], rejected))
            )
            hi = (
                MORNING
                if k == len(entries) - 1
                else entries[k + 1].start_utc - timedelta(seconds=overhead_s(rejected, by_id[entries[k + 1].id]))
            )
            hi -= timedelta(seconds=rejected.duration_s)
            assert not any(max(a, lo) <= min(b, hi) for a, b in starts[rejected_id]), (rejected_id, lower.id)


@settings(max_examples=10, deadline=None)
@given(nights())
def test_same_input_same_plan(specs: list[SequenceSpec]) -> None:
    first = schedule_night(specs, OHP, EVENING, MORNING, SLEW)
    second = schedule_night(list(specs), OHP, EVENING, MORNING, SLEW)
    assert first.entries == second.entries and first.rejected == second.rejected


def ten_targets() -> list[SequenceSpec]:
    return [
        SequenceSpec(id=f"t{k}", ra_deg=20.0 + 15 * k, dec_deg=30.0, duration_s=3600, priority=1 + k % 10)
        for k in range(10)
    ]


def test_rescheduling_keeps_the_running_sequence_and_plans_from_now() -> None:
    specs = ten_targets()
    now = datetime(2026, 12, 16, 22, 0, tzinfo=UTC)
    running = RunningSequence("t3", 65.0, 30.0, now - timedelta(minutes=10), now + timedelta(minutes=20))
    result = schedule_night(specs, OHP, EVENING, MORNING, SLEW, now_utc=now, running=running)
    running_entries = [e for e in result.entries if e.running]
    assert [(e.id, e.start_utc, e.end_utc) for e in running_entries] == [("t3", running.start_utc, running.end_utc)]
    planned = sorted((e for e in result.entries if not e.running), key=lambda e: e.start_utc)
    assert planned and "t3" not in {e.id for e in planned} and "t3" not in result.rejected
    first = planned[0]
    spec = next(s for s in specs if s.id == first.id)
    assert first.start_utc >= running.end_utc + timedelta(seconds=overhead_s(specs[3], spec))


def test_an_alert_outweighs_everything_else() -> None:
    specs = ten_targets()
    alert = SequenceSpec(id="grb", ra_deg=80.0, dec_deg=30.0, duration_s=4 * 3600, priority=1, is_alert=True)
    result = schedule_night([*specs, alert], OHP, EVENING, MORNING, SLEW)
    assert "grb" in {e.id for e in result.entries}
    displaced = [reason for reason in result.reasons.values() if reason.code == "displaced"]
    assert displaced and all(reason.values["by"][0]["id"] == "grb" for reason in displaced)
    assert any(text.startswith("displaced by higher-priority sequences grb (an alert), t9 (priority 10 against ")
               for text in result.rejected.values())


def test_allocation_and_window_reasons() -> None:
    specs = [
        SequenceSpec(id="a", ra_deg=60.0, dec_deg=30.0, duration_s=3600, program="P"),
        SequenceSpec(id="b", ra_deg=75.0, dec_deg=30.0, duration_s=3600, program="P"),
        SequenceSpec(
            id="late", ra_deg=75.0, dec_deg=30.0, duration_s=600, latest_start_utc=EVENING - timedelta(hours=1)
        ),
    ]
    result = schedule_night(specs, OHP, EVENING, MORNING, SLEW, allocations_s={"P": 4000})
    assert len([e for e in result.entries if e.id in "ab"]) == 1
    assert "allocation exhausted" in next(r for k, r in result.rejected.items() if k in "ab")
    assert result.rejected["late"].startswith("outside its time window: it had to start by ")
    assert result.reasons["late"].code == "window_closed"


def test_target_set_margin_is_negative_below_the_limit() -> None:
    """The planner's own check: a target below the horizon fails the altitude constraint."""
    import numpy as np

    from sky.observability import ConstraintArrays, SkyGrid

    grid = SkyGrid(OHP, EVENING, MORNING)
    targets = TargetSet(grid, [0.0], [-80.0], ConstraintArrays.build(1, 30.0), -18.0)
    assert targets.intervals() == [[]]
    assert np.all(targets.margin(np.zeros(3, dtype=int), np.array([0.0, 100.0, 200.0])) < 0)
