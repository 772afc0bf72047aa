"""In a real browser (Playwright + Debian's Chromium): an administrator opens a strategy's template form from the
strategies page, adds an exposure row (its filter offered from the camera's wheel), adds and removes a sequence,
and saves; the strategy's JSON has the new row."""

from __future__ import annotations

import re

import pytest

from alert_manager.tests.test_backoffice_guardrails import camera  # noqa: F401  (fixture: PyROS Camera, V R I)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def strategy(transactional_db, camera):  # noqa: F811
    from alert_manager.strategies import default_template
    from pyrosapp import models as m

    return m.Strategy.objects.create(name="Swift GRB", missions=["Swift"], template=default_template(),
                                     is_active=True)


def test_add_a_row_and_save(require_chromium, strategy, live_server, page, screenshot_dir):
    from pyrosapp import models as m
    from pyrosapp.tests.factories import UserFactory

    UserFactory(email="admin@example.org", role=m.User.Role.ADMINISTRATOR)
    page.set_default_timeout(20_000)
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", "admin@example.org")
    page.fill("input[name=password]", "correct-horse-battery")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/$"))

    page.goto(f"{live_server.url}/alerts/strategies/")
    page.locator("#strategies tr", has_text="Swift GRB").locator("a.edit-template").click()
    page.wait_for_url(re.compile(r".*/strategies/\d+/template/$"))

    first = page.locator(".strategy-sequence").nth(0)
    first.locator(".add-row").click()
    rows = first.locator(".plan-row")
    assert rows.count() == 2
    new = rows.nth(1)
    # The filters offered are the camera's.
    assert new.locator(".filter-select option").all_inner_texts() == ["V", "R", "I"]
    new.locator(".filter-select").select_option("I")
    new.locator("input[name$='-exposure_s']").fill("30")
    new.locator("input[name$='-count']").fill("3")

    # A sequence added by mistake, then removed.
    page.click("#add-sequence")
    assert page.locator(".strategy-sequence").count() == 3
    page.locator(".strategy-sequence").nth(2).locator("button", has_text="Remove sequence").click()
    assert page.locator(".strategy-sequence").count() == 2
    page.screenshot(path=str(screenshot_dir / "strategy_template_form.png"), full_page=True)

    page.click("#save-template")
    page.wait_for_url(re.compile(r".*/alerts/strategies/$"))
    assert "Template of 'Swift GRB' saved" in page.content()
    strategy.refresh_from_db()
    assert strategy.template["sequences"][0]["albums"] == [
        {"plans": [{"filter": "R", "exposure_s": 60, "count": 10}, {"filter": "I", "exposure_s": 30, "count": 3}]}]
    assert [s["name"] for s in strategy.template["sequences"]] == ["immediate", "cadence"]
