"""Issue #16: irreversible or night-changing actions ask first and say their effect; a strategy switch
that would leave GRB alerts ignored needs an explicit confirmation and raises a dashboard alarm; a
favicon, and no asset from a CDN (the API docs page fetched its favicon from one)."""

from __future__ import annotations

import re

import pytest
from django.contrib.staticfiles import finders
from django.urls import reverse

from pyros.demo import seed_demo
from pyrosapp.models import ObservatoryState, Strategy, User
from pyrosapp.tests.factories import RequestFactory, UserFactory

pytestmark = pytest.mark.django_db
EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["'](?:https?:)?//""", re.IGNORECASE)


@pytest.fixture
def demo():
    seed = seed_demo()
    ObservatoryState.objects.filter(site=seed.site).update(phase="night", safety="safe", mode="automatic")
    return seed


def test_every_page_has_a_local_favicon_and_the_api_docs_use_no_cdn(client, demo):
    client.force_login(User.objects.get(email="astronomer@pyros.local"))
    for url in ("/", "/api/docs/", "/accounts/profile/", "/requests/"):
        html = client.get(url).content.decode()
        assert not EXTERNAL.search(html), (url, EXTERNAL.search(html).group(0))
    assert '<link rel="icon" href="/static/pyros/favicon.svg"' in client.get("/").content.decode()
    assert "/static/pyros/favicon.svg" in client.get("/api/docs/").content.decode()
    assert finders.find("pyros/favicon.svg")


def test_night_changing_controls_ask_and_say_their_effect(client, demo):
    client.force_login(User.objects.get(email="operator@pyros.local"))
    html = client.get(reverse("majordome:operator")).content.decode()
    for action, effect in (("stop", "nothing more is observed tonight"), ("close", "this also stops the night"),
                           ("calibrate", "bias, dark and flat"), ("abort", "its exposure stops now")):
        assert re.search(rf'data-action="{action}" data-confirm="[^"]*{effect}', html), action
    dashboard = client.get("/").content.decode()
    assert re.search(r'data-confirm="Close the dome and park: this also stops the night', dashboard)


def test_cancelling_a_request_asks_first(client, demo):
    owner = User.objects.get(email="astronomer@pyros.local")
    request = RequestFactory(owner=owner, program=demo.program, status="submitted")
    client.force_login(owner)
    html = client.get(reverse("routine_manager:request_detail", args=[request.pk])).content.decode()
    assert re.search(r'request_cancel|/cancel/', html)
    assert 'data-confirm="Cancel this request? Its sequences will not be observed' in html


def test_leaving_no_strategy_active_needs_a_confirmation_and_raises_an_alarm(client, demo):
    Strategy.objects.update(is_active=False)
    only = Strategy.objects.create(name="GRB only", missions=["Swift"], triggers=True, is_active=True,
                                   template={"sequences": []})
    client.force_login(UserFactory(role="operator"))
    page = client.get(reverse("alert_manager:strategy_list")).content.decode()
    assert "every GRB alert will be ignored" in page and 'name="confirmed"' in page
    assert "strategy-alarm" not in client.get("/dashboard/alert-banner/").content.decode()

    response = client.post(reverse("alert_manager:strategy_switch", args=[only.pk]), {"active": "0"}, follow=True)
    only.refresh_from_db()
    assert only.is_active and "GRB alerts are ignored" in response.content.decode()

    client.post(reverse("alert_manager:strategy_switch", args=[only.pk]), {"active": "0", "confirmed": "1"})
    only.refresh_from_db()
    assert not only.is_active
    banner = client.get("/dashboard/alert-banner/").content.decode()
    assert "strategy-alarm" in banner and "GRB alerts are received but ignored" in banner
