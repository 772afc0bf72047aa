"""The pages a user reaches, with data on them (requests in every status, a GRB event with a position,
tonight's plan, an account waiting): walked by the accessibility and format tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


@dataclass
class Site:
    seed: object
    request_ids: dict[str, int]
    event_id: int


def build_site() -> Site:
    """The demo observatory with requests in every status (long names, precise coordinates), a GRB
    event with a position, tonight's plan and an account waiting for validation."""
    from pyros.demo import seed_demo
    from pyrosapp import models as m
    from pyrosapp.tests.factories import RequestFactory, SequenceFactory

    seed = seed_demo()
    astronomer = m.User.objects.get(email=seed.credentials["astronomer"][0])
    now = datetime.now(UTC)
    ids = {}
    for status in ("draft", "submitted", "scheduled", "executing", "completed", "partially_completed",
                   "failed", "cancelled", "expired"):
        request = RequestFactory(owner=astronomer, program=seed.program, status=status,
                                 name=f"Monitoring of a long-named field ({status.replace('_', ' ')})")
        SequenceFactory(request=request, target_name="NGC 4486 (M87) jet knot A", ra_deg=187.70593041666667,
                        dec_deg=12.391123456789,
                        status={"scheduled": "planned", "executing": "executing"}.get(status, "pending"),
                        window_start=now, window_end=now + timedelta(days=2))
        ids[status] = request.pk
    sequence = m.Sequence.objects.filter(request_id=ids["scheduled"]).get()
    schedule = m.Schedule.objects.create(site=seed.site, status="current", plan_start=now,
                                         plan_end=now + timedelta(hours=6))
    m.ScheduleHasSequences.objects.create(schedule=schedule, sequence=sequence, status="planned",
                                          tsp=now + timedelta(minutes=30), tep=now + timedelta(minutes=50))
    executing = m.Sequence.objects.filter(request_id=ids["executing"]).get()  # a highlighted row on the schedule
    m.ScheduleHasSequences.objects.create(schedule=schedule, sequence=executing, status="planned",
                                          tsp=now - timedelta(minutes=5), tep=now + timedelta(minutes=15))
    event = m.AlertEvent.objects.create(name="GRB 261204A", missions=["Swift", "Fermi"], status="planned",
                                        burst_time=now - timedelta(minutes=7), ra_deg=187.70593041666667,
                                        dec_deg=12.391123456789, error_deg=0.0583333,
                                        status_reason="planned at the next observable time")
    m.User.objects.create_user(email="newcomer-with-a-long-address@observatory.example.org", password="x" * 12,
                               first_name="New", last_name="Comer", institute="Somewhere far away",
                               account_state=m.User.AccountState.PENDING)
    return Site(seed, ids, event.pk)


def user_pages(data: Site) -> dict[str, list[str]]:
    """The pages each user reaches: the astronomer's own requests, the operator's observatory."""
    r = data.request_ids
    return {
        "astronomer": ["/", "/requests/", f"/requests/{r['scheduled']}/", f"/requests/{r['cancelled']}/",
                       f"/requests/{r['draft']}/edit/", "/requests/new/", "/requests/import/",
                       "/accounts/profile/", "/schedule/", "/alerts/"],
        "operator": ["/", "/requests/", f"/alerts/{data.event_id}/", "/alerts/streams/", "/alerts/strategies/",
                     "/alerts/send-test/", "/schedule/", "/schedule/history/", "/schedule/simulate/", "/procedures/",
                     "/operations/", "/images/", "/images/masters/", "/monitoring/weather/", "/monitoring/devices/",
                     "/accounts/profile/"],
    }


ANONYMOUS_PAGES = ["/accounts/login/", "/accounts/register/", "/accounts/password/reset/"]
ADMIN_PAGES = ["/admin/", "/admin/pyrosapp/request/"]
