"""Issue #16, "an API that holds": NUL bytes, error pages and bodies, throttles, login lockout,
password-reset and registration limits."""

from __future__ import annotations

from unittest import mock

import pytest
from django.core import mail
from django.urls import reverse
from rest_framework.authtoken.models import Token

from pyrosapp.models import User
from pyrosapp.tests.factories import UserFactory

pytestmark = pytest.mark.django_db
PASSWORD = "a-very-long-sky-password"


@pytest.fixture
def astronomer():
    user = UserFactory(email="ada@example.org", role=User.Role.ASTRONOMER)
    user.set_password(PASSWORD)
    user.save()
    return user


@pytest.fixture
def token_client(client, astronomer):
    token = Token.objects.create(user=astronomer)
    client.defaults["HTTP_AUTHORIZATION"] = f"Token {token.key}"
    return client


@pytest.mark.parametrize("debug", [True, False])
def test_nul_bytes_in_query_or_body_are_400_not_500(token_client, settings, debug):
    settings.DEBUG = debug
    response = token_client.get("/api/requests/?q=M%0031")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert "NUL" in response.json()["detail"]
    response = token_client.post("/api/requests/validate/", data='{"name": "a\\u0000b"}',
                                 content_type="application/json")
    assert response.status_code == 400 and "NUL" in response.json()["detail"]
    response = token_client.post("/api/requests/", data=b'{"name": "a\x00"}', content_type="application/json")
    assert response.status_code == 400
    # An escaped backslash followed by the letters u0000 is not a NUL.
    response = token_client.post("/api/requests/validate/", data='{"name": "a\\\\u0000"}',
                                 content_type="application/json")
    assert response.status_code == 400 and "NUL" not in response.json()["detail"]


def test_nul_byte_in_a_page_form_is_a_400_page(client, astronomer):
    client.force_login(astronomer)
    response = client.post(reverse("user_manager:profile"), data="first_name=A%00B",
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert b"Bad request" in response.content and b"navbar" in response.content


@pytest.mark.parametrize("debug", [True, False])
def test_error_pages_in_the_site_layout_never_debug_pages(client, astronomer, settings, debug):
    settings.DEBUG = debug
    client.raise_request_exception = False
    client.force_login(astronomer)
    page = client.get("/no/such/page/")
    assert page.status_code == 404
    text = page.content.decode()
    assert "Page not found" in text and 'class="navbar' in text
    assert "NOARCHIVE" not in text and "urlpatterns" not in text.lower() and "Traceback" not in text

    api = client.get("/api/requests/not-a-number/")
    assert api.status_code == 404 and api.json() == {"detail": "There is nothing at this address."}

    forbidden = client.get(reverse("admin:index"))  # an astronomer is sent to the admin login, not an error
    assert forbidden.status_code in (200, 302)

    with mock.patch("routine_manager.views.selectors.request_list", side_effect=RuntimeError("boom at /secret/path")):
        broken = client.get(reverse("routine_manager:request_list"))
    assert broken.status_code == 500
    text = broken.content.decode()
    assert "Server error" in text and "boom" not in text and "/secret/path" not in text and "Traceback" not in text

    with mock.patch("routine_manager.api.selectors.request_list", side_effect=RuntimeError("boom")):
        broken_api = client.get("/api/requests/")
    assert broken_api.status_code == 500 and broken_api["Content-Type"] == "application/json"
    assert "boom" not in broken_api.content.decode()


def test_validation_errors_have_one_body(token_client):
    response = token_client.get("/api/dashboard/status/?since_version=abc")
    assert response.status_code == 400
    assert response.json() == {"detail": "Invalid input.", "errors": {"since_version": ["must be an integer, got 'abc'"]}}
    response = token_client.post("/api/requests/validate/", data="{", content_type="application/json")
    assert response.status_code == 400 and "JSON parse error" in response.json()["detail"]


def test_numbers_beyond_the_database_are_400(token_client):
    response = token_client.get("/api/images/?request=85228880076559183029207040")
    assert response.status_code in (200, 400)  # never a 500
    response = token_client.get("/api/requests/?program=85228880076559183029207040")
    assert response.status_code == 200


def test_api_throttle_answers_429_with_retry_after(token_client, settings):
    settings.PYROS_API_THROTTLE_RATES = {"user": "3/min", "anon": "2/min"}
    codes = [token_client.get("/api/requests/").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    response = token_client.get("/api/requests/")
    assert response.status_code == 429 and int(response["Retry-After"]) > 0
    assert "throttled" in response.json()["detail"].lower()


def test_login_locked_out_after_repeated_failures_even_with_the_right_password(client, astronomer, settings):
    url = reverse("user_manager:login")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        response = client.post(url, {"username": astronomer.email, "password": "wrong-password"})
        assert response.status_code == 200 and "Wrong e-mail or password" in response.content.decode()
    # The failure that reaches the limit locks the e-mail out for this address, right password or not.
    assert client.post(url, {"username": astronomer.email, "password": "wrong-password"}).status_code == 429
    response = client.post(url, {"username": astronomer.email, "password": PASSWORD})
    assert response.status_code == 429
    assert "Too many failed logins" in response.content.decode()
    assert "_auth_user_id" not in client.session
    # Another account from the same address is not locked by this one's failures.
    other = UserFactory(email="bob@example.org")
    other.set_password(PASSWORD)
    other.save()
    assert client.post(url, {"username": other.email, "password": PASSWORD}).status_code == 302


def test_password_reset_emails_are_limited_per_address(client, astronomer, settings):
    for _ in range(20):
        response = client.post(reverse("user_manager:password_reset"), {"email": astronomer.email})
        assert response.status_code == 302  # the same answer every time: it tells nothing about accounts
    assert len(mail.outbox) == settings.PYROS_PASSWORD_RESET_PER_HOUR


def test_registrations_are_limited_per_client_address(client, settings):
    codes = []
    for n in range(settings.PYROS_REGISTRATIONS_PER_HOUR + 1):
        codes.append(client.post(reverse("user_manager:register"), {
            "email": f"new{n}@example.org", "first_name": "N", "last_name": "S", "institute": "IRAP",
            "password1": PASSWORD, "password2": PASSWORD}).status_code)
    assert codes[:-1] == [200] * settings.PYROS_REGISTRATIONS_PER_HOUR and codes[-1] == 429
    assert User.objects.filter(email__startswith="new").count() == settings.PYROS_REGISTRATIONS_PER_HOUR


def test_schema_documents_errors_pagination_and_nullable(token_client):
    schema = token_client.get("/api/schema/?format=json").json()
    assert "Error" in schema["components"]["schemas"]
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            for code in ("400", "401", "403", "429"):
                assert code in operation["responses"], (method, path, code)
    listing = schema["paths"]["/api/requests/"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert listing["$ref"].endswith("PaginatedRequestOutList")
    assert "404" in schema["paths"]["/api/requests/{id}/"]["get"]["responses"]


def test_alert_in_progress_is_json_null_when_none(token_client):
    response = token_client.get("/api/alerts/in-progress/")
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert response.content == b"null"
