"""The request editor's target tools in a real browser (Playwright + Debian's Chromium): typing M51 and pressing
"Coordinates from the name" fills RA/Dec from PyROS's offline list; "Altitude preview" draws the target's and the
Moon's altitude over the window with the limit (Plotly, served by the project). No network: the online resolver
is off in tests."""

from __future__ import annotations

import re

import pytest

from dashboard.tests.test_browser import log_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def demo(transactional_db, settings):
    from pyros.demo import seed_demo

    settings.PYROS_NAME_RESOLVER_ONLINE = False
    return seed_demo()


def test_resolve_m51_then_preview_its_altitude(require_chromium, demo, live_server, page, screenshot_dir):
    log_in(page, live_server, *demo.credentials["astronomer"])

    page.goto(f"{live_server.url}/requests/")
    page.click("#new-request")
    row = page.locator(".sequence-row").nth(0)
    ra, dec = row.locator("input[name$='-ra_deg']"), row.locator("input[name$='-dec_deg']")
    ra.fill("")
    dec.fill("")
    row.locator("input[name$='-target_name']").fill("m 51")  # case, spaces and leading zeros do not matter
    row.locator("button.resolve-target").click()

    result = row.locator(".target-tools-result")
    page.wait_for_function("el => el.textContent.includes('RA')", arg=result.element_handle())
    assert abs(float(ra.input_value()) - 202.4696) < 1e-3 and abs(float(dec.input_value()) - 47.1953) < 1e-3
    assert "M51" in result.inner_text() and "text-success" in result.get_attribute("class")

    # An unknown name says so and leaves the coordinates alone.
    row.locator("input[name$='-target_name']").fill("Not A Catalogued Thing")
    row.locator("button.resolve-target").click()
    page.wait_for_function("el => el.classList.contains('text-danger')", arg=result.element_handle())
    assert result.inner_text() and float(ra.input_value()) == pytest.approx(202.4696, abs=1e-3)
    row.locator("input[name$='-target_name']").fill("M51")

    preview = row.locator(".altitude-preview")
    assert preview.is_hidden()
    row.locator("button.preview-altitude").click()
    preview.locator(".main-svg").first.wait_for()  # Plotly drew it (served locally, no CDN)
    assert preview.is_visible()
    assert "Highest altitude" in result.inner_text() and "limit" in result.inner_text()
    traces = page.evaluate("el => el.data.map(t => [t.name, t.y.length, Math.max(...t.y.filter(v => v !== null))])",
                           preview.element_handle())
    names = [name for name, _, _ in traces]
    assert names == ["target", "Moon"]
    target_points, highest = traces[0][1], traces[0][2]
    assert target_points > 50 and 0 < highest <= 90
    # The text says the highest altitude the curve reaches (the server's figure, rounded to a degree).
    said = re.search(r"Highest altitude (-?\d+)°", result.inner_text())
    assert said and abs(int(said.group(1)) - highest) <= 1
    page.screenshot(path=str(screenshot_dir / "request_editor_m51_preview.png"), full_page=True)
