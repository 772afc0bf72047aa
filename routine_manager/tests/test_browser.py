"""In a real browser (Playwright + Debian's Chromium): the demo astronomer creates a 2-sequence request
through the forms, sees the error for an unobservable target, fixes it, submits, finds it in "My
requests", and cancels it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from dashboard.tests.test_browser import log_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def demo(transactional_db):
    from pyros.demo import seed_demo

    return seed_demo()


def _zenith_now(site) -> tuple[float, float]:
    """RA/Dec overhead at the demo site now (it is night there): observable at once."""
    from sky.astro import to_time, u

    lst = to_time(datetime.now(UTC)).sidereal_time("apparent", longitude=site.longitude_deg * u.deg)
    return round(float(lst.deg), 4), round(site.latitude_deg, 4)


def test_create_check_fix_submit_list_cancel(require_chromium, demo, live_server, page, screenshot_dir):
    from pyrosapp.models import Request

    log_in(page, live_server, *demo.credentials["astronomer"])

    page.goto(f"{live_server.url}/requests/")
    page.click("#new-request")
    page.fill("#id-name", "Browser request")
    ra, dec = _zenith_now(demo.site)
    # Never rises at the demo site (|latitude| <= 30 deg): it culminates below 5 deg.
    bad_dec = -85.0 if demo.site.latitude_deg >= 0 else 85.0
    first = page.locator(".sequence-row").nth(0)
    first.locator("input[name$='-target_name']").fill("Zenith")
    first.locator("input[name$='-ra_deg']").fill(str(ra))
    first.locator("input[name$='-dec_deg']").fill(str(dec))
    first.locator("input[name$='-min_moon_separation_deg']").fill("")

    page.click("#add-sequence")
    second = page.locator(".sequence-row").nth(1)
    now = datetime.now(UTC)
    second.locator("input[name$='-target_name']").fill("Deep south")
    second.locator("input[name$='-ra_deg']").fill("6:00:00")
    second.locator("input[name$='-dec_deg']").fill(str(bad_dec))
    second.locator("input[name$='-window_start']").fill(now.strftime("%Y-%m-%dT%H:%M"))
    second.locator("input[name$='-window_end']").fill((now + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M"))
    second.locator("input[name$='-min_moon_separation_deg']").fill("")
    second.locator(".add-plan").click()
    plans = second.locator(".plan-row")
    assert plans.count() == 2
    # The filter choices come from the camera's filter wheel.
    assert plans.nth(1).locator("select option").all_inner_texts() == ["U", "B", "V", "R", "I", "Clear"]
    plans.nth(1).locator("select").select_option("V")
    plans.nth(1).locator("input[name$='-exposure_s']").fill("30")

    page.click("button[value=check]")
    error = page.locator(".sequence-row").nth(1).locator(".sequence-error")
    assert "never above" in error.inner_text()
    assert Request.objects.count() == 0
    page.screenshot(path=str(screenshot_dir / "request_unobservable.png"), full_page=True)

    page.locator(".sequence-row").nth(1).locator("input[name$='-dec_deg']").fill(str(dec))
    page.locator(".sequence-row").nth(1).locator("input[name$='-ra_deg']").fill(str(ra))
    page.click("button[value=submit]")
    page.wait_for_url(re.compile(r".*/requests/\d+/$"))
    assert page.locator("#request-status").get_attribute("data-status") == "submitted"
    page.wait_for_selector(".altitude-plot .main-svg")  # Plotly drew the altitude plots (served locally)
    page.screenshot(path=str(screenshot_dir / "request_detail.png"), full_page=True)

    page.goto(f"{live_server.url}/requests/")
    row = page.locator("#request-table tr", has_text="Browser request")
    assert row.locator("[data-status]").get_attribute("data-status") == "submitted"
    row.locator("a").click()
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#cancel-request")
    page.wait_for_selector("#request-status[data-status=cancelled]")
    request = Request.objects.get(name="Browser request")
    assert request.status == "cancelled" and request.sequences.count() == 2
    assert {p.filter.name for s in request.sequences.all() for a in s.albums.all() for p in a.plans.all()} == {"R", "V"}
