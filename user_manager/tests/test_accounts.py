"""Registration -> pending -> validated by an administrator -> login, and what pending/refused users see."""

from __future__ import annotations

import pytest
from django.core import mail
from django.urls import reverse

from pyrosapp.models import User
from pyrosapp.tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "a-very-long-sky-password"


def _register(client, email="new@example.org"):
    return client.post(reverse("user_manager:register"), {
        "email": email, "first_name": "Nova", "last_name": "Star", "institute": "IRAP",
        "password1": PASSWORD, "password2": PASSWORD,
    })


def _login(client, email, password=PASSWORD):
    return client.post(reverse("user_manager:login"), {"username": email, "password": password})


def test_registration_validation_login(client):
    response = _register(client)
    assert response.status_code == 200
    assert "awaiting validation by an administrator" in response.content.decode()
    user = User.objects.get(email="new@example.org")
    assert user.account_state == User.AccountState.PENDING

    response = _login(client, "new@example.org")
    assert response.status_code == 200
    assert "awaiting validation" in response.content.decode()
    assert "_auth_user_id" not in client.session

    admin = UserFactory(email="boss@example.org", role="administrator", is_staff=True, is_superuser=True)
    admin_client = client.__class__()
    admin_client.force_login(admin)
    # The action asks first what the account may observe with (program and time).
    response = admin_client.post(reverse("admin:pyrosapp_user_changelist"),
                                 {"action": "validate_accounts", "_selected_action": [user.pk]})
    assert response.status_code == 200 and "Hours in the current period" in response.content.decode()
    user.refresh_from_db()
    assert user.account_state == User.AccountState.PENDING
    response = admin_client.post(reverse("admin:pyrosapp_user_changelist"),
                                 {"action": "validate_accounts", "_selected_action": [user.pk], "apply": "1",
                                  "program": "", "hours": "0"}, follow=True)
    assert response.status_code == 200
    user.refresh_from_db()
    assert user.account_state == User.AccountState.VALIDATED
    assert any("validated" in message.body for message in mail.outbox)

    response = _login(client, "new@example.org")
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(user.pk)
    home = client.get("/")
    assert home.status_code == 200
    assert "new@example.org" not in home.content.decode() or "Nova" in home.content.decode()


def test_refused_account_cannot_log_in(client):
    UserFactory(email="no@example.org", account_state=User.AccountState.REFUSED, password=PASSWORD)
    user = User.objects.get(email="no@example.org")
    user.set_password(PASSWORD)
    user.save()
    response = _login(client, "no@example.org")
    assert response.status_code == 200
    assert "refused" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_wrong_password_is_a_field_error_not_a_crash(client):
    UserFactory(email="ok@example.org")
    response = _login(client, "ok@example.org", "wrong")
    assert response.status_code == 200
    assert "Wrong e-mail or password" in response.content.decode()


@pytest.mark.parametrize("data, field", [
    ({"email": "not-an-email"}, "email"),
    ({"password2": "different-password-x"}, "password2"),
    ({"password1": "123", "password2": "123"}, "password1"),
])
def test_registration_bad_input_gives_field_errors(client, data, field):
    payload = {"email": "x@example.org", "first_name": "A", "last_name": "B", "institute": "C",
               "password1": PASSWORD, "password2": PASSWORD, **data}
    response = client.post(reverse("user_manager:register"), payload)
    assert response.status_code == 200
    assert field in response.context["form"].errors
    assert not User.objects.filter(email="x@example.org").exists()


def test_duplicate_email_is_refused(client):
    UserFactory(email="dup@example.org")
    response = _register(client, "DUP@example.org")
    assert "already exists" in response.content.decode()


def test_pages_need_login_except_auth_pages(client):
    assert client.get("/").status_code == 302
    assert client.get(reverse("user_manager:profile")).status_code == 302
    for name in ("login", "register", "password_reset"):
        assert client.get(reverse(f"user_manager:{name}")).status_code == 200


def test_profile_edit_and_programs(client):
    from pyrosapp.tests.factories import ProgramFactory

    user = UserFactory()
    program = ProgramFactory(name="Afterglows")
    program.members.add(user)
    client.force_login(user)
    response = client.get(reverse("user_manager:profile"))
    assert "Afterglows" in response.content.decode()
    client.post(reverse("user_manager:profile"), {"first_name": "Vera", "last_name": "Rubin", "institute": "CTIO"})
    user.refresh_from_db()
    assert (user.first_name, user.institute) == ("Vera", "CTIO")


def test_password_reset_sends_a_working_link(client):
    user = UserFactory(email="forgot@example.org")
    client.post(reverse("user_manager:password_reset"), {"email": "forgot@example.org"})
    assert len(mail.outbox) == 1
    link = next(line for line in mail.outbox[0].body.splitlines() if "/password/reset/" in line)
    path = link.split("testserver", 1)[1]
    response = client.get(path, follow=True)
    form_url = response.redirect_chain[-1][0] if response.redirect_chain else path
    response = client.post(form_url, {"new_password1": "brand-new-pass-42", "new_password2": "brand-new-pass-42"})
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password("brand-new-pass-42")


def test_astronomer_cannot_reach_the_backoffice(client):
    client.force_login(UserFactory(role="astronomer"))
    response = client.get("/admin/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_operator_cannot_reach_the_backoffice_but_administrator_can(client):
    client.force_login(UserFactory(role="operator", is_staff=True))
    assert client.get("/admin/").status_code == 302
    client.force_login(UserFactory(role="administrator", is_staff=True))
    assert client.get("/admin/").status_code == 200


def test_role_helper():
    from django.contrib.auth.models import AnonymousUser

    from user_manager.roles import has_role

    astronomer = UserFactory(role="astronomer")
    operator = UserFactory(role="operator")
    admin = UserFactory(role="administrator")
    pending = UserFactory(role="operator", account_state="pending")
    assert has_role(astronomer, "astronomer") and not has_role(astronomer, "operator")
    assert has_role(operator, "operator") and not has_role(operator, "administrator")
    assert has_role(admin, "operator") and has_role(admin, "administrator")
    assert not has_role(pending, "operator")
    assert not has_role(AnonymousUser(), "astronomer")
