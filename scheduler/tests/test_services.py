"""schedule_make / schedule_request_replan against the database, at OHP in the night of 2026-12-16/17."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest

from pyrosapp import models as m
from pyrosapp.tests import factories as f
from scheduler import selectors, services
from scheduler.tasks import make_schedule

# 22:00 UTC at OHP in mid-December: astronomical night from 17:45 to 05:21 UTC.
NIGHT_NOW = datetime(2026, 12, 16, 22, 0, tzinfo=UTC)
# Targets well up at OHP around 22:00 UTC in December (RA 1-6 h).
VISIBLE = {"M45": (56.75, 24.12), "M42": (83.82, -5.39), "M1": (83.63, 22.01), "M31": (10.68, 41.27),
           "M35": (92.25, 24.33)}


@pytest.fixture
def night(time_machine):
    """A frozen "now" inside the night, and an active OHP-like site with its telescope and wheel."""
    time_machine.move_to(NIGHT_NOW, tick=False)
    site = f.SiteFactory(name="OHP test", latitude_deg=43.9317, longitude_deg=5.7122, elevation_m=650.0)
    telescope = f.TelescopeFactory(site=site, slew_rate_deg_s=2.0, settle_s=5.0)
    f.FilterWheelFactory(telescope=telescope, change_time_s=4.0)
    return site


def add_sequence(target: str, *, ra_dec: tuple[float, float] | None = None, duration_s: float = 1800.0,
                 priority: int = 5, request: m.Request | None = None, program: m.ScientificProgram | None = None,
                 status: str = m.Sequence.Status.PENDING, is_alert: bool = False, **fields) -> m.Sequence:
    ra, dec = ra_dec or VISIBLE[target]
    if request is None:
        request = f.RequestFactory(status=m.Request.Status.SUBMITTED, is_alert=is_alert,
                                   **({"program": program} if program else {}))
    window_start = fields.pop("window_start", NIGHT_NOW - timedelta(hours=6))
    window_end = fields.pop("window_end", NIGHT_NOW + timedelta(hours=12))
    return f.SequenceFactory(request=request, target_name=target, ra_deg=ra, dec_deg=dec, priority=priority,
                             status=status, estimated_duration_s=duration_s, window_start=window_start,
                             window_end=window_end, min_altitude_deg=30.0, **fields)


def planned_entries(schedule: m.Schedule) -> list[m.ScheduleHasSequences]:
    return list(schedule.entries.filter(status="planned").order_by("tsp"))


@pytest.mark.django_db
def test_a_schedule_is_stored_with_entries_rejections_and_statuses(night):
    visible = [add_sequence(name) for name in ("M45", "M42", "M1")]
    # Dec -80 never rises above 30 deg at latitude 44 N.
    never_up = add_sequence("Southern target", ra_dec=(90.0, -80.0))

    outcome = services.schedule_make(reason="test")

    schedule = outcome.schedule
    assert schedule is not None and schedule.status == m.Schedule.Status.CURRENT
    assert schedule.plan_start == NIGHT_NOW
    assert schedule.plan_end.date().isoformat() == "2026-12-17" and schedule.plan_end.hour == 5
    entries = planned_entries(schedule)
    assert {e.sequence_id for e in entries} == {s.pk for s in visible}
    for before, after in zip(entries, entries[1:], strict=False):
        assert before.tep <= after.tsp, "blocks overlap"
    assert all(e.tsp >= NIGHT_NOW for e in entries)
    rejected = schedule.entries.get(status="rejected")
    assert rejected.sequence_id == never_up.pk
    assert "not observable" in rejected.rejection_reason and "30" in rejected.rejection_reason

    for sequence, entry in ((e.sequence, e) for e in entries):
        sequence.refresh_from_db()
        assert sequence.status == m.Sequence.Status.PLANNED
        assert (sequence.planned_start, sequence.planned_end) == (entry.tsp, entry.tep)
        sequence.request.refresh_from_db()
        assert sequence.request.status == m.Request.Status.SCHEDULED
    never_up.refresh_from_db()
    never_up.request.refresh_from_db()
    assert never_up.status == m.Sequence.Status.UNPLANNED
    assert never_up.status_reason == rejected.rejection_reason
    assert never_up.request.status == m.Request.Status.SUBMITTED


@pytest.mark.django_db
def test_a_new_run_supersedes_the_previous_schedule_and_unplans_what_no_longer_fits(night):
    keep = add_sequence("M45")
    dropped = add_sequence("M42", priority=9)
    first = services.schedule_make(reason="first").schedule
    dropped.refresh_from_db()
    assert dropped.status == m.Sequence.Status.PLANNED

    # Its window is moved before the night: it is not a candidate any more and goes back to pending.
    m.Sequence.objects.filter(pk=dropped.pk).update(window_start=NIGHT_NOW - timedelta(days=3),
                                                   window_end=NIGHT_NOW - timedelta(days=2))
    second = services.schedule_make(reason="second").schedule

    first.refresh_from_db()
    assert first.status == m.Schedule.Status.SUPERSEDED
    assert selectors.schedule_current() == second
    assert [e.sequence_id for e in planned_entries(second)] == [keep.pk]
    dropped.refresh_from_db()
    dropped.request.refresh_from_db()
    assert dropped.status == m.Sequence.Status.PENDING and dropped.planned_start is None
    assert dropped.request.status == m.Request.Status.SUBMITTED


@pytest.mark.django_db
def test_rescheduling_keeps_the_running_sequence_first_and_untouched(night):
    started = NIGHT_NOW - timedelta(minutes=10)
    running = add_sequence("M31", status=m.Sequence.Status.EXECUTING, duration_s=1800.0, started_at=started,
                           planned_start=started, planned_end=started + timedelta(minutes=30))
    m.Request.objects.filter(pk=running.request_id).update(status=m.Request.Status.EXECUTING)
    others = [add_sequence(name, priority=10) for name in ("M45", "M42", "M1")]

    schedule = services.schedule_make(reason="alert").schedule

    entries = planned_entries(schedule)
    assert entries[0].sequence_id == running.pk
    assert (entries[0].tsp, entries[0].tep) == (started, started + timedelta(minutes=30))
    assert {e.sequence_id for e in entries[1:]} == {s.pk for s in others}
    assert all(e.tsp >= entries[0].tep for e in entries[1:]), "a block overlaps the running sequence"
    running.refresh_from_db()
    assert running.status == m.Sequence.Status.EXECUTING
    assert running.started_at == started


@pytest.mark.django_db
def test_a_sequence_running_late_pushes_the_plan_after_now(night):
    started = NIGHT_NOW - timedelta(minutes=40)
    add_sequence("M31", status=m.Sequence.Status.EXECUTING, started_at=started,
                 planned_start=started, planned_end=started + timedelta(minutes=30))
    add_sequence("M45")

    entries = planned_entries(services.schedule_make(reason="late").schedule)

    assert entries[0].tep == NIGHT_NOW
    assert entries[1].tsp > NIGHT_NOW


@pytest.mark.django_db
def test_alerts_go_first_and_exhausted_allocations_are_explained(night):
    program = f.ProgramFactory(priority=3)
    period = m.Period.objects.create(name="2026B", start=datetime(2026, 7, 1, tzinfo=UTC),
                                     end=datetime(2027, 1, 1, tzinfo=UTC))
    m.Allocation.objects.create(program=program, period=period, allocated_s=3600.0, used_s=3000.0)
    starved = add_sequence("M45", program=program, priority=10)
    alert = add_sequence("GRB 261216A", ra_dec=(83.0, 20.0), is_alert=True, priority=1, duration_s=600.0)

    schedule = services.schedule_make(reason="alert").schedule

    entries = planned_entries(schedule)
    assert entries[0].sequence_id == alert.pk and entries[0].tsp == NIGHT_NOW
    reason = schedule.entries.get(sequence=starved).rejection_reason
    assert "allocation" in reason and program.name in reason


@pytest.mark.django_db
def test_sequences_without_duration_are_rejected_with_a_reason(night):
    add_sequence("M45", duration_s=0.0)

    schedule = services.schedule_make(reason="test").schedule

    assert "duration" in schedule.entries.get().rejection_reason


@pytest.mark.django_db
def test_duration_is_computed_from_the_plans_when_not_estimated(night):
    sequence = add_sequence("M45", duration_s=0.0)
    album = f.AlbumFactory(sequence=sequence)
    wheel = m.FilterWheel.objects.get()
    r_filter = f.FilterFactory(wheel=wheel, name="R", slot=4)
    m.Plan.objects.create(album=album, filter=r_filter, exposure_s=60.0, count=10)

    entry = planned_entries(services.schedule_make(reason="test").schedule)[0]

    # 10 x (60 s + readout) plus pointing overheads: more than 10 min, well under an hour.
    assert 600 < (entry.tep - entry.tsp).total_seconds() < 3600


@pytest.mark.django_db
def test_a_burst_of_replan_requests_gives_one_run(night, django_capture_on_commit_callbacks):
    add_sequence("M45")
    enqueued = []
    with mock.patch.object(make_schedule, "apply_async", side_effect=lambda **kw: enqueued.append(kw)):
        with django_capture_on_commit_callbacks(execute=True):
            for k in range(5):
                services.schedule_request_replan(reason=f"change {k}", delay_s=2.0)
    assert len(enqueued) == 5 and all(call["countdown"] == 2.0 for call in enqueued)

    # The worker runs them when their countdown ends (the clock is frozen: all were asked at NIGHT_NOW).
    results = [make_schedule.run(**call["kwargs"]) for call in enqueued]

    assert m.Schedule.objects.count() == 1
    assert sum(r["schedule_id"] is not None for r in results) == 1
    assert [r["skipped"] for r in results[1:]] == ["already covered by a newer schedule"] * 4

    # A change after that run gets its own run.
    enqueued.clear()
    with mock.patch.object(make_schedule, "apply_async", side_effect=lambda **kw: enqueued.append(kw)):
        with django_capture_on_commit_callbacks(execute=True):
            with mock.patch("django.utils.timezone.now", return_value=NIGHT_NOW + timedelta(seconds=30)):
                services.schedule_request_replan(reason="later change")
    make_schedule.run(**enqueued[0]["kwargs"])
    assert m.Schedule.objects.count() == 2


@pytest.mark.django_db
def test_without_an_active_site_nothing_is_planned(time_machine):
    time_machine.move_to(NIGHT_NOW, tick=False)
    assert services.schedule_make(reason="test").skipped == "no active site"
    assert not m.Schedule.objects.exists()


@pytest.mark.django_db
def test_in_daytime_the_next_night_is_planned(night, time_machine):
    time_machine.move_to(datetime(2026, 12, 16, 12, 0, tzinfo=UTC), tick=False)
    add_sequence("M45")

    schedule = services.schedule_make(reason="dusk").schedule

    assert schedule.plan_start == schedule.night_start
    assert datetime(2026, 12, 16, 17, 40, tzinfo=UTC) < schedule.plan_start < datetime(2026, 12, 16, 17, 50,
                                                                                          tzinfo=UTC)


@pytest.mark.django_db
def test_current_entries_tell_the_majordome_what_runs_next(night, time_machine):
    started = NIGHT_NOW - timedelta(minutes=10)
    running = add_sequence("M31", status=m.Sequence.Status.EXECUTING, started_at=started,
                           planned_start=started, planned_end=started + timedelta(minutes=20))
    waiting = [add_sequence(name, duration_s=900.0) for name in ("M45", "M42", "M1")]
    services.schedule_make(reason="test")

    everything = list(selectors.schedule_current_entries())
    assert everything[0].sequence_id == running.pk
    assert {e.sequence_id for e in everything[1:]} == {s.pk for s in waiting}
    next_up = list(selectors.schedule_current_entries(waiting_only=True))
    assert next_up[0].sequence_id != running.pk and len(next_up) == 3

    # Later in the night: the first waiting block has ended, it is no longer returned.
    later = next_up[0].tep + timedelta(seconds=1)
    assert next_up[0].sequence_id not in {e.sequence_id for e in selectors.schedule_current_entries(now=later)}


@pytest.mark.django_db
def test_timeline_data_distinguishes_executed_running_and_planned(night):
    started = NIGHT_NOW - timedelta(minutes=10)
    running = add_sequence("M31", status=m.Sequence.Status.EXECUTING, started_at=started,
                           planned_start=started, planned_end=started + timedelta(minutes=20))
    done, later = add_sequence("M45", duration_s=900.0), add_sequence("M42", duration_s=900.0)
    schedule = services.schedule_make(reason="test").schedule
    m.Sequence.objects.filter(pk=done.pk).update(status=m.Sequence.Status.COMPLETED)

    data = selectors.schedule_timeline_data(schedule)

    states = {e["sequence"]: e["state"] for e in data["entries"]}
    assert states == {running.pk: "running", done.pk: "executed", later.pk: "planned"}
    assert data["now"] == "2026-12-16T22:00:00Z"
    kinds = [band["kind"] for band in data["twilight"]]
    # Sunset to sunrise: day, the three twilights, night, and back.
    assert kinds == ["day", "civil", "nautical", "astronomical", "night", "astronomical", "nautical", "civil", "day"]
    assert {c["label"] for c in data["altitudes"]} == {e["label"] for e in data["entries"]}
