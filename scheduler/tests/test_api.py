"""GET /api/schedule/current/: exact JSON shape, UTC times, 404 before any schedule, authentication."""

from __future__ import annotations

from datetime import datetime

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from pyrosapp import models as m
from pyrosapp.tests import factories as f
from scheduler import services
from scheduler.tests.test_services import add_sequence, night  # noqa: F401  (fixture)

URL = "/api/schedule/current/"


@pytest.fixture
def api_client():
    client = APIClient()
    token = Token.objects.create(user=f.UserFactory())
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def _utc(text: str) -> datetime:
    assert text.endswith("Z"), f"{text!r} is not a UTC ISO 8601 string"
    return datetime.fromisoformat(text)


@pytest.mark.django_db
def test_current_schedule_json(night, api_client):  # noqa: F811
    planned = [add_sequence("M45"), add_sequence("M42")]
    never_up = add_sequence("Southern target", ra_dec=(90.0, -80.0))
    schedule = services.schedule_make(reason="test").schedule

    response = api_client.get(URL)

    assert response.status_code == 200
    data = response.json()
    assert set(data) == {"id", "created", "plan_start", "plan_end", "entries", "rejected"}
    assert data["id"] == schedule.pk
    assert _utc(data["plan_start"]) == schedule.plan_start and _utc(data["plan_end"]) == schedule.plan_end
    _utc(data["created"])
    assert [set(e) for e in data["entries"]] == [{"sequence", "request", "tsp", "tep"}] * 2
    assert {e["sequence"] for e in data["entries"]} == {s.pk for s in planned}
    assert {e["request"] for e in data["entries"]} == {s.request_id for s in planned}
    starts = [_utc(e["tsp"]) for e in data["entries"]]
    assert starts == sorted(starts) and all(_utc(e["tep"]) > _utc(e["tsp"]) for e in data["entries"])
    [rejected] = data["rejected"]
    assert set(rejected) == {"sequence", "reason", "code", "values"}
    assert rejected["sequence"] == never_up.pk
    assert rejected["reason"] == schedule.entries.get(sequence=never_up).rejection_reason
    assert rejected["code"] == "too_low" and rejected["values"]["limit_deg"] == 30.0
    assert rejected["reason"].startswith("not observable: never above the altitude limit of 30° at night")


@pytest.mark.django_db
def test_a_newer_schedule_replaces_the_old_one_in_the_api(night, api_client):  # noqa: F811
    add_sequence("M45")
    services.schedule_make(reason="first")
    second = services.schedule_make(reason="second").schedule
    assert api_client.get(URL).json()["id"] == second.pk


@pytest.mark.django_db
def test_no_schedule_yet_is_a_clear_404(api_client):
    f.SiteFactory()
    response = api_client.get(URL)
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    assert "No schedule yet" in response.json()["detail"]


@pytest.mark.django_db
def test_credentials_are_required():
    response = APIClient().get(URL)
    assert response.status_code == 401
    assert "detail" in response.json()


@pytest.mark.django_db
def test_unvalidated_accounts_are_refused():
    client = APIClient()
    user = f.UserFactory(account_state=m.User.AccountState.PENDING)
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    assert client.get(URL).status_code == 403
