"""Issue #16, the first hour: a newcomer registers, an administrator sees the account waiting on the
backoffice's home and validates it with a program and time, and the newcomer submits a request at once."""

from __future__ import annotations

import pytest
import time_machine
from django.test import Client
from django.urls import reverse

from pyrosapp.models import Allocation, Request, User
from pyrosapp.tests.factories import UserFactory
from routine_manager.tests.helpers import NOW, m51_data, make_observatory

pytestmark = pytest.mark.django_db
PASSWORD = "a-long-enough-pass-42"


@pytest.fixture(autouse=True)
def frozen_now():
    with time_machine.travel(NOW, tick=True):
        yield


def _validate(admin: Client, user: User, **choice) -> str:
    response = admin.post(reverse("admin:pyrosapp_user_changelist"), {
        "action": "validate_accounts", "_selected_action": [user.pk], "apply": "1", **choice}, follow=True)
    assert response.status_code == 200
    return response.content.decode()


def test_register_validate_submit_in_one_sitting():
    obs = make_observatory()  # an observatory with a camera, and someone else's program
    admin_user = UserFactory(email="boss@example.org", role=User.Role.ADMINISTRATOR, is_staff=True,
                             is_superuser=True)
    newcomer = Client()
    newcomer.post(reverse("user_manager:register"), {
        "email": "nova@example.org", "first_name": "Nova", "last_name": "Star", "institute": "IRAP",
        "password1": PASSWORD, "password2": PASSWORD})
    user = User.objects.get(email="nova@example.org")

    admin = Client()
    admin.force_login(admin_user)
    home = admin.get(reverse("admin:index")).content.decode()
    assert 'id="pending-accounts"' in home and "nova@example.org" in home
    assert "Accounts waiting for validation (1)" in home

    page = _validate(admin, user, program="", hours="3")
    assert "1 account(s) validated, each with a starter program of 3 h" in page
    assert "Accounts waiting for validation (0)" in admin.get(reverse("admin:index")).content.decode()
    allocation = Allocation.objects.get(program__pi=user)
    assert allocation.allocated_s == 3 * 3600 and allocation.period.start <= NOW < allocation.period.end

    assert newcomer.post(reverse("user_manager:login"),
                         {"username": "nova@example.org", "password": PASSWORD}).status_code == 302
    assert 'id="no-program"' not in newcomer.get(reverse("routine_manager:request_create")).content.decode()
    created = newcomer.post("/api/requests/", m51_data(allocation.program_id, name="My first request"),
                            content_type="application/json")
    assert created.status_code == 201, created.content
    request = Request.objects.get(name="My first request")
    assert request.owner == user and request.status == "submitted"
    assert obs.program.members.filter(pk=user.pk).count() == 0


def test_validation_into_an_existing_program_gives_it_time_only_if_it_has_none():
    obs = make_observatory()
    admin_user = UserFactory(email="boss@example.org", role=User.Role.ADMINISTRATOR, is_staff=True,
                             is_superuser=True)
    user = UserFactory(email="pending@example.org", account_state=User.AccountState.PENDING)
    admin = Client()
    admin.force_login(admin_user)
    page = _validate(admin, user, program=str(obs.program.pk), hours="5")
    assert f"members of {obs.program.name}" in page
    assert obs.program.members.filter(pk=user.pk).exists()
    obs.allocation.refresh_from_db()
    assert obs.allocation.allocated_s == 100 * 3600.0  # its current allocation is kept, not topped up
    assert Allocation.objects.filter(program=obs.program).count() == 1
