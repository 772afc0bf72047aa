"""Accessibility of the rendered pages (#16), in a real browser (Playwright driving Debian's Chromium)
against a live server: the skip link, the contrast of what is actually drawn (computed colours of
every visible text, badge and button), every page usable at phone size (375×740: nothing wider than
the screen, tables scroll inside their wrapper, the menu opens), the page scripts' formats.

Screenshots of the phone-size pages go to test-artifacts/screenshots/ (kept as CI artifacts)."""

from __future__ import annotations

import re

import pytest

from dashboard.tests.pages import ADMIN_PAGES, ANONYMOUS_PAGES, Site, build_site, user_pages
from dashboard.tests.test_browser import log_in  # the login form, then the dashboard
from dashboard.tests.wcag import contrast, parse_colour

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PHONE = {"width": 375, "height": 740}
DESKTOP = {"width": 1400, "height": 1000}


@pytest.fixture
def site_with_data(transactional_db) -> Site:
    return build_site()


def settle(page) -> None:
    """Loaded, and the page scripts' first round of fetches answered."""
    page.wait_for_load_state("load")
    page.wait_for_timeout(600)


# --- Contrast of what is drawn -----------------------------------------------------------------
CONTRAST_SCRIPT = """
() => {
  const parse = (c) => {
    const m = c && c.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return null;
    const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const over = (t, b) => [0, 1, 2].map((i) => t[i] * t[3] + b[i] * (1 - t[3])).concat([1]);
  const lum = (c) => {
    const [r, g, b] = c.slice(0, 3).map((v) => { v /= 255; return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
  const background = (el, upTo) => {  // what lies beneath el: its ancestors' backgrounds composed
    const chain = [];
    for (let e = el; e && e !== upTo; e = e.parentElement) chain.unshift(e);
    let c = [255, 255, 255, 1];
    for (const e of chain) { const b = parse(getComputedStyle(e).backgroundColor); if (b && b[3] > 0) c = over(b, c); }
    return c;
  };
  const opacity = (el) => { let o = 1; for (let e = el; e; e = e.parentElement) o *= Number(getComputedStyle(e).opacity); return o; };
  const failures = [];
  let checked = 0;
  for (const el of document.querySelectorAll("body *")) {
    if (el.closest("svg, canvas, script, style, .visually-hidden, .visually-hidden-focusable, [hidden], option")) continue;
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own) continue;
    const rect = el.getBoundingClientRect();
    const style = getComputedStyle(el);
    if (!rect.width || !rect.height || style.visibility !== "visible" || style.display === "none") continue;
    if (el.closest(":disabled, .disabled, [aria-disabled=true]")) continue;  // WCAG exempts inactive controls
    const bg = background(el);
    const fg0 = parse(style.color);
    const fg = over([fg0[0], fg0[1], fg0[2], fg0[3] * opacity(el)], bg);
    const size = parseFloat(style.fontSize), bold = Number(style.fontWeight) >= 700;
    const large = size >= 24 || (bold && size >= 18.66);
    const r = ratio(fg, bg);
    checked++;
    const text = [...el.childNodes].filter((n) => n.nodeType === 3).map((n) => n.textContent.trim()).join(" ").slice(0, 40);
    if (r < (large ? 3 : 4.5)) failures.push(`${el.tagName.toLowerCase()}.${[...el.classList].join(".")} "${text}": ${r.toFixed(2)}`);
    if (el.classList.contains("badge")) {
      const page = background(el.parentElement);
      const edge = ratio(background(el), page);
      if (edge < 1.5 && style.boxShadow === "none") failures.push(`badge "${text}" melts into the page: ${edge.toFixed(2)}`);
    }
  }
  return {checked, failures};
}
"""


CHARTS_SCRIPT = """
() => {
  const parse = (c) => { const m = c && c.match(/rgba?\\(([^)]+)\\)/); if (!m) return null;
    const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; };
  const over = (t, b) => [0, 1, 2].map((i) => t[i] * t[3] + b[i] * (1 - t[3])).concat([1]);
  const lum = (c) => { const [r, g, b] = c.slice(0, 3).map((v) => { v /= 255; return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
  const page = (el) => { let c = [255, 255, 255, 1]; const chain = [];
    for (let e = el; e; e = e.parentElement) chain.unshift(e);
    for (const e of chain) { const b = parse(getComputedStyle(e).backgroundColor); if (b && b[3] > 0) c = over(b, c); } return c; };
  return [...document.querySelectorAll(".js-plotly-plot")].map((el) => {
    const named = el.closest("[aria-label]");
    const text = (selector) => [...el.querySelectorAll(selector)].map((t) => t.textContent.trim()).filter(Boolean);
    const bg = page(el);
    const texts = [...el.querySelectorAll("svg text")].filter((t) => t.textContent.trim() && !t.closest(".modebar"));
    const faint = texts.map((t) => {
      let opacity = 1; for (let e = t; e && e !== el; e = e.parentElement) opacity *= Number(getComputedStyle(e).opacity);
      const f = parse(getComputedStyle(t).fill); if (!f) return null;
      const r = ratio(over([f[0], f[1], f[2], f[3] * opacity], bg), bg);
      return r < 4.5 ? `"${t.textContent.trim().slice(0, 30)}" ${r.toFixed(2)}` : null;
    }).filter(Boolean);
    return {id: el.id || el.className, name: named ? named.getAttribute("aria-label") : "",
            role: named ? named.getAttribute("role") : "", title: text(".gtitle"), faint, texts: texts.length,
            x: text(".g-xtitle text, .g-x2title text"), y: text(".g-ytitle text, .g-y2title text")};
  });
}
"""


def chart_problems(charts: list[dict]) -> list[str]:
    """A chart needs a name for assistive technology; one drawn with axes also a visible title and axis
    titles (the sparkline, a picture named by its label, has neither axes nor title)."""
    problems = []
    for chart in charts:
        if chart["faint"]:
            problems.append(f"{chart['id']}: text under 4.5:1 {chart['faint'][:5]}")
        if len(chart["name"]) < 10:
            problems.append(f"{chart['id']}: no accessible name")
        if chart["role"] == "img":
            continue
        if not chart["title"]:
            problems.append(f"{chart['id']}: no visible title")
        if not chart["x"] or not chart["y"]:
            problems.append(f"{chart['id']}: axis without a title (x {chart['x']}, y {chart['y']})")
        elif not any("(" in t for t in chart["x"] + chart["y"]):
            problems.append(f"{chart['id']}: no unit in the axis titles {chart['x'] + chart['y']}")
    return problems


def test_rendered_text_badges_and_buttons_reach_wcag_aa(require_chromium, site_with_data, live_server, browser,
                                                         screenshot_dir):
    """Every visible text on every page a user reaches, as drawn: 4.5:1 (3:1 for large text); badges
    stand out from the page. On the way, every chart drawn: a name, a title, axis titles with units."""
    data = site_with_data
    failures, checked, charts, chart_texts, chart_failures = {}, 0, 0, 0, {}
    for role, pages in [*user_pages(data).items(), ("administrator", ADMIN_PAGES)]:
        context = browser.new_context(viewport=DESKTOP)
        page = context.new_page()
        log_in(page, live_server, *data.seed.credentials[role])
        for path in pages:
            page.goto(live_server.url + path)
            settle(page)
            if path == "/schedule/":  # the executing sequence's highlighted row is among the texts checked
                assert page.locator("#planned-table tr.table-warning a").count() >= 1
            result = page.evaluate(CONTRAST_SCRIPT)
            checked += result["checked"]
            if result["failures"]:
                failures[f"{role} {path}"] = result["failures"]
            drawn = page.evaluate(CHARTS_SCRIPT)
            charts += len(drawn)
            chart_texts += sum(chart["texts"] for chart in drawn)
            if drawn:
                name = re.sub(r"\W+", "_", path).strip("_") or "home"
                page.screenshot(path=str(screenshot_dir / f"charts_{role}_{name}.png"), full_page=True)
            if chart_problems(drawn):
                chart_failures[f"{role} {path}"] = chart_problems(drawn)
        context.close()
    assert checked > 500  # the walk saw the pages' texts
    assert not failures
    assert charts >= 4  # the plan on the dashboard and the schedule, the schedule's altitudes, a request's
    assert chart_texts >= 40  # their titles, ticks and labels were read
    assert not chart_failures


def test_the_cancelled_badge_is_visible_and_readable(require_chromium, site_with_data, live_server, page):
    data = site_with_data
    log_in(page, live_server, *data.seed.credentials["astronomer"])
    page.goto(f"{live_server.url}/requests/")
    badge = page.locator("tr", has_text="(cancelled)").locator(".status-badge")
    assert badge.inner_text().strip().lower() == "cancelled"
    colours = badge.evaluate("""(el) => [getComputedStyle(el).color, getComputedStyle(el).backgroundColor,
                                         getComputedStyle(document.body).backgroundColor]""")
    assert colours[1] != colours[2]  # not the page's own colour any more
    assert page.evaluate(CONTRAST_SCRIPT)["failures"] == []


# --- Skip link ---------------------------------------------------------------------------------
def test_the_skip_link_comes_first_shows_on_focus_and_moves_to_the_content(require_chromium, site_with_data,
                                                                            live_server, page):
    data = site_with_data
    log_in(page, live_server, *data.seed.credentials["astronomer"])
    for path in ("/", "/requests/", "/accounts/profile/"):
        page.goto(live_server.url + path)
        link = page.locator("a.skip-link")
        assert link.text_content() == "Skip to main content"
        assert link.bounding_box()["width"] <= 1  # hidden until focused
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.textContent.trim()")
        assert focused == "Skip to main content", (path, page.evaluate("document.activeElement.outerHTML.slice(0, 200)"))
        box = link.bounding_box()
        assert box["width"] > 50 and box["height"] > 10 and box["y"] >= 0  # shown, on screen
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "main"
        assert page.url.endswith("#main")
        page.keyboard.press("Tab")  # the next Tab lands inside the content, not back in the menu
        assert page.evaluate("!!document.activeElement.closest('main')"), path
        # and shows where it is: a solid outline of 3:1 or more against the page
        outline = page.evaluate("""() => { const s = getComputedStyle(document.activeElement);
                                           return [s.outlineStyle, parseFloat(s.outlineWidth), s.outlineColor]; }""")
        assert outline[0] == "solid" and outline[1] >= 2, (path, outline)
        assert contrast(parse_colour(outline[2]), parse_colour("#212529")) >= 3.0, (path, outline)
    page.context.clear_cookies()
    for path in ANONYMOUS_PAGES:  # the login form puts the cursor in its first field; the link still leads
        page.goto(live_server.url + path)
        first = page.evaluate("""() => [...document.querySelectorAll('a[href], button, input, select, textarea')]
                                       .filter((el) => el.tabIndex >= 0 && !el.disabled)[0].textContent.trim()""")
        assert first == "Skip to main content", path


# --- Phone size --------------------------------------------------------------------------------
WIDTH_SCRIPT = """
() => {
  const doc = document.documentElement;
  const wide = [...document.querySelectorAll("body *")].filter((el) => {
    const r = el.getBoundingClientRect();
    if (!r.width || el.closest(".table-responsive, .overflow-auto, pre, .navbar-collapse:not(.show)")) return false;
    return r.right > doc.clientWidth + 1;
  }).slice(0, 5).map((el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + "." + [...el.classList].join(".") +
                          " right=" + Math.round(el.getBoundingClientRect().right));
  return {scrollWidth: doc.scrollWidth, width: doc.clientWidth, wide};
}
"""


def test_no_page_is_wider_than_a_phone(require_chromium, site_with_data, live_server, browser, screenshot_dir):
    data = site_with_data
    too_wide = {}

    def walk(page, paths, tag):
        for path in paths:
            page.goto(live_server.url + path)
            settle(page)
            result = page.evaluate(WIDTH_SCRIPT)
            if result["scrollWidth"] > result["width"]:
                too_wide[path] = result
            name = re.sub(r"\W+", "_", path).strip("_") or "home"
            page.screenshot(path=str(screenshot_dir / f"phone_{tag}_{name}.png"), full_page=True)

    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.set_default_timeout(20_000)
    walk(page, ANONYMOUS_PAGES, "anonymous")
    for role, paths in user_pages(data).items():
        context.clear_cookies()
        log_in(page, live_server, *data.seed.credentials[role])
        walk(page, paths, role)
    context.close()
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = context.new_page()
    log_in(page, live_server, *data.seed.credentials["administrator"])
    walk(page, ADMIN_PAGES, "administrator")
    context.close()
    assert not too_wide, "\n".join(f"{path}: {result}" for path, result in too_wide.items())


def test_the_menu_works_on_a_phone(require_chromium, site_with_data, live_server, browser):
    data = site_with_data
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = context.new_page()
    log_in(page, live_server, *data.seed.credentials["operator"])
    nav = page.locator("#nav")
    assert not nav.is_visible()
    toggler = page.locator("button.navbar-toggler")
    box = toggler.bounding_box()
    assert box["width"] >= 44 and box["height"] >= 24  # a target a thumb can hit
    assert toggler.get_attribute("aria-expanded") == "false"
    toggler.click()
    page.locator("#nav a.nav-link").first.wait_for(state="visible")
    assert toggler.get_attribute("aria-expanded") == "true"
    links = page.locator("#nav a.nav-link")
    assert links.count() >= 5
    for i in range(links.count()):
        b = links.nth(i).bounding_box()
        assert b["x"] >= 0 and b["x"] + b["width"] <= PHONE["width"] + 1 and b["height"] >= 24
    assert page.locator("#nav button", has_text="Log out").is_visible()
    links.filter(has_text="Requests").first.click()
    page.wait_for_url(re.compile(r".*/requests/$"))
    assert page.evaluate(WIDTH_SCRIPT)["scrollWidth"] <= PHONE["width"]
    context.close()


# --- Page scripts' formats ---------------------------------------------------------------------
def test_page_scripts_format_like_the_template_filters(require_chromium, site_with_data, live_server, page):
    from common import formats

    log_in(page, live_server, *site_with_data.seed.credentials["astronomer"])
    values = [187.70593041666667, 0, 359.99999999, 14.999999999, -15, 12.391123456789, -5.5, -0.00001, -0.0001,
              -45.99999999, 90, 0.0583333, 0.001, 0.0139, 0.5, 2.5, 12.3456, 180]
    times = ["2026-12-04T23:41:07.123456Z", "2026-12-04T23:41:07+00:00", "2026-12-05T00:41:07+01:00",
             "2026-12-04 23:41:07"]
    got = page.evaluate("""([values, times]) => ({
        ra: values.map(pyrosFormat.ra), dec: values.map(pyrosFormat.dec), angle: values.map(pyrosFormat.angle),
        utc: times.map((t) => ["s", "min", "ms", "time", "hm"].map((s) => pyrosFormat.utc(t, s))),
        empty: [pyrosFormat.ra(null), pyrosFormat.dec(undefined), pyrosFormat.utc(null), pyrosFormat.utc("nonsense")]})""",
                        [values, times])
    assert got["ra"] == [formats.ra(v) for v in values]
    assert got["dec"] == [formats.dec(v) for v in values]
    assert got["angle"] == [formats.angle(v) for v in values]
    assert got["utc"] == [[formats.utc(t, s) for s in ("s", "min", "ms", "time", "hm")] for t in times]
    assert got["empty"] == ["—"] * 4
    # A live value drawn by the dashboard's script reads the same way
    page.goto(f"{live_server.url}/")
    page.wait_for_function("document.getElementById('status-updated').textContent.includes('UTC')")
    assert re.fullmatch(r"\d\d:\d\d:\d\d UTC", page.inner_text("#status-updated").strip())
