"""Issue #16: a self-service API token on the profile page (create, shown once, revoke) with examples."""

from __future__ import annotations

import pytest
from django.urls import reverse
from rest_framework.authtoken.models import Token

from pyrosapp.models import Log
from pyrosapp.tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_create_show_once_use_and_revoke(client):
    user = UserFactory(email="ada@example.org")
    client.force_login(user)
    assert "You have no API token" in client.get(reverse("user_manager:profile")).content.decode()

    page = client.post(reverse("user_manager:api_token"), {"action": "create"}).content.decode()
    key = Token.objects.get(user=user).key
    assert f'id="new-token">{key}<' in page
    assert f'Authorization: Token {key}' in page and "requests.get(api" in page
    assert not Log.objects.filter(message__contains=key).exists()

    again = client.get(reverse("user_manager:profile")).content.decode()
    assert key not in again and "You have a token, created" in again

    api = client.__class__()
    assert api.get("/api/requests/", HTTP_AUTHORIZATION=f"Token {key}").status_code == 200

    client.post(reverse("user_manager:api_token"), {"action": "revoke"})
    assert not Token.objects.filter(user=user).exists()
    assert api.get("/api/requests/", HTTP_AUTHORIZATION=f"Token {key}").status_code == 401


def test_replacing_a_token_invalidates_the_old_one(client):
    user = UserFactory(email="bob@example.org")
    client.force_login(user)
    client.post(reverse("user_manager:api_token"), {"action": "create"})
    old = Token.objects.get(user=user).key
    client.post(reverse("user_manager:api_token"), {"action": "create"})
    assert Token.objects.get(user=user).key != old
    assert client.__class__().get("/api/requests/", HTTP_AUTHORIZATION=f"Token {old}").status_code == 401


def test_the_editor_says_how_to_get_a_program(client):
    client.force_login(UserFactory(email="new@example.org"))
    page = client.get(reverse("routine_manager:request_create")).content.decode()
    assert 'id="no-program"' in page and "Ask an administrator of" in page
