"""The accessibility walks (#16) over the pages test_a11y_browser.py does not reach, with the data that fills
them: an analysed GRB event (image list, image detail with its quick-look, sources, afterglow candidates and
light curve, the event's report: photometry, finding chart, GCN circular draft), a flow's item page (its step
tree), the alert streams page, a strategy's template form, the schedule's planned sequences, and the request
editor's altitude preview once drawn. On each: the text as drawn reaches WCAG AA, charts have names and
titles, nothing is wider than a 375 px phone, and every time and position reads the PyROS way
(ISO UTC dates, sexagesimal RA/Dec rounded; no raw ISO 'T', no month names, no long decimals)."""

from __future__ import annotations

import re

import pytest

from dashboard.tests.pages import build_site
from dashboard.tests.test_a11y_browser import (
    CHARTS_SCRIPT,
    CONTRAST_SCRIPT,
    DESKTOP,
    PHONE,
    WIDTH_SCRIPT,
    chart_problems,
    settle,
)
from dashboard.tests.test_browser import log_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TIMES_S = (300.0, 600.0, 7200.0)  # two detections of the afterglow, then an upper limit


def seed_flow_item():
    """A flow that ran in this process (no worker): a setup step, a loop of three points of which the
    second failed, and a last step that never ran; its item page shows the step tree."""
    from procedures.sdk import Flow, Loop, Step
    from procedures.tests.test_flows import run

    def setup(ctx):
        ctx.publish(ready=True)

    def point(ctx):
        if ctx.value == 2:
            raise RuntimeError("the camera went away at point 2")
        ctx.publish(point=ctx.value)

    def total(ctx):
        return 0

    return run(Flow(Step("setup", setup), Loop("points", [1, 2, 3], Step("work", point), require="setup"),
                    Step("total", total, require="points")))


def seed_stream_health():
    """GCN Kafka's health as alert-kafka reports it (times as ISO strings): connected, one topic with its last
    message, an outage that ended and the error that caused it."""
    from datetime import UTC, datetime, timedelta

    from pyrosapp.models import AlertStreamHealth

    now = datetime.now(UTC)
    iso = lambda t: t.isoformat(timespec="milliseconds")  # noqa: E731  (as alert_manager.kafka_consumer.iso)
    snapshot = {"at": iso(now), "state": "connected", "connected": True, "server": "127.0.0.1:9092", "group": "pyros",
                "started_at": iso(now - timedelta(hours=3)), "heartbeat_age_s": 0.8, "heartbeats": 4242,
                "heartbeat_alarm": False, "last_heartbeat_at": iso(now), "messages": 3, "stored": 3, "duplicates": 0,
                "total_lag": 0, "last_error": "broker 127.0.0.1:9092 unreachable",
                "last_error_at": iso(now - timedelta(hours=2)),
                "topics": [{"topic": "gcn.notices.einstein_probe.wxt.alert", "messages": 3, "stored": 3,
                            "duplicates": 0, "last_message_at": iso(now - timedelta(minutes=42)), "last_offset": 2,
                            "error": None}],
                "outages": [{"start": iso(now - timedelta(hours=2)), "end": iso(now - timedelta(hours=2) +
                                                                               timedelta(seconds=95)),
                             "seconds": 95.0, "reason": "broker 127.0.0.1:9092 unreachable"}]}
    AlertStreamHealth.objects.update_or_create(source="kafka", defaults={
        "configured": True, "detail": "127.0.0.1:9092", "connected": True, "snapshot": snapshot})


@pytest.fixture
def walked(transactional_db, settings, tmp_path):
    """The demo site (build_site) with an analysed GRB event of the astronomer's, a flow item and a strategy."""
    from analyzer import services as analysis
    from analyzer.tests.test_services import make_alert_request, store_alert_images
    from devices.sky import CameraModel
    from pyrosapp import models as m
    from pyrosapp.tests.factories import DetectorFactory

    settings.PYROS_DATA_DIR = tmp_path / "data"
    settings.PYROS_DATA_DIR.mkdir()
    settings.PYROS_NAME_RESOLVER_ONLINE = False
    site = build_site()
    camera = CameraModel()
    detector = DetectorFactory(width_px=camera.width_px, height_px=camera.height_px)
    astronomer = m.User.objects.get(email=site.seed.credentials["astronomer"][0])
    event, sequence, transient = make_alert_request(detector, owner=astronomer)
    images = store_alert_images(detector, sequence, transient, times_s=TIMES_S)
    for image in images:
        assert analysis.image_analyze(image_id=image.pk).status == "ok"
    item = seed_flow_item()
    seed_stream_health()
    strategy = m.Strategy.objects.order_by("pk").first()
    assert strategy is not None, "the demo seeds the alert strategies"
    return {"site": site, "event": event, "images": images, "item": item, "strategy": strategy}


def walked_pages(w) -> dict[str, list[str]]:
    """The pages, by who reaches them (the strategy template form is the administrators')."""
    return {"operator": ["/images/", f"/images/{w['images'][0].pk}/", f"/images/{w['images'][-1].pk}/",
                         f"/images/events/{w['event'].pk}/report/", f"/procedures/items/{w['item'].uid}/",
                         "/alerts/streams/", "/schedule/", f"/alerts/{w['event'].pk}/"],
            "astronomer": ["/images/", f"/images/{w['images'][1].pk}/", f"/images/events/{w['event'].pk}/report/",
                           f"/requests/{w['images'][0].sequence.request_id}/"],
            "administrator": [f"/alerts/strategies/{w['strategy'].pk}/template/"]}


def walk(browser, live_server, w, viewport, visit) -> int:
    """Each page of walked_pages as its user, at this size: visit(page, where, screenshot name) once it is loaded
    and settled."""
    seen = 0
    for role, paths in walked_pages(w).items():
        phone = viewport is PHONE
        context = browser.new_context(viewport=viewport, is_mobile=phone, has_touch=phone)
        page = context.new_page()
        page.set_default_timeout(20_000)
        log_in(page, live_server, *w["site"].seed.credentials[role])
        for i, path in enumerate(paths):
            response = page.goto(live_server.url + path)
            assert response.ok, (role, path, response.status)
            settle(page)
            if page.locator(".analyzer-afterglow").count():  # an alert image's, an event's: the panel loads
                page.locator(".analyzer-afterglow .js-plotly-plot .main-svg").first.wait_for()
            if "/procedures/items/" in path:
                page.locator('#flow-tree li[data-path="points/2/work"]').wait_for(state="attached")
            visit(page, f"{role} {path}", f"{role}_{i}_{shot_name(path)}")
            seen += 1
        context.close()
    return seen


# --- Times and positions as read on the page ----------------------------------------------------
FORMATS_SCRIPT = """
(skip) => {
  // The text a user reads in the content, not what is meant to be raw: code and the FITS header as written,
  // the circular draft's text area (GCN's own plain-text style), the strategy's raw JSON.
  const main = document.getElementById("main").cloneNode(true);
  main.querySelectorAll("pre, code, textarea, script, #fits-header, .visually-hidden" + skip).forEach((el) => el.remove());
  return main.innerText;
}
"""

# Sentences written by Python (not a template), checked on their own (test_the_stream_summary_reads_utc)
WRITTEN_ELSEWHERE = ", #kafka-summary"

BAD_FORMATS = {
    "raw ISO time": re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d"),
    "date and time without UTC": re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d(?::\d\d(?:\.\d+)?)?(?! ?UTC)(?![\d:.–-])"),
    "month name": re.compile(r"\b(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\.? \d{1,2}\b(?![°′.])"),
    "US date": re.compile(r"\b\d{1,2}/\d{1,2}/\d{2,4}\b"),
    "long decimal (a raw coordinate?)": re.compile(r"\d\.\d{5,}"),
    "decimal RA or Dec": re.compile(r"\b(?:RA|Dec)\s*[:=]?\s*[-+]?\d+\.\d+°?"),
}


def format_problems(text: str) -> list[str]:
    return [f"{what}: {match.group(0)!r} in …{text[max(0, match.start() - 40):match.end() + 20]!r}…"
            for what, pattern in BAD_FORMATS.items() for match in pattern.finditer(text)]


def test_the_formats_check_catches_what_it_should():
    assert format_problems("at 2026-12-04 23:41:07 UTC, RA 12h30m49.42s, Dec +12°23′28.0″ ± 3.5′") == []
    assert format_problems("windows 2026-12-16 17:05–05:21, plan 2026-12-04 23:41 UTC–05:00 UTC") == []
    for bad in ("2026-12-04T23:41:07", "at 2026-12-04 23:41:07 in the night", "Dec. 4, 2026", "12/04/2026",
                "187.70593041", "RA 187.7059°", "Dec: -12.39"):
        assert format_problems(bad), bad


def shot_name(where: str) -> str:
    """A screenshot's file name that does not change from run to run (ids and uids replaced)."""
    where = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "uid", where)
    return re.sub(r"\W+", "_", re.sub(r"\d+", "n", where)).strip("_")


# --- The walks ----------------------------------------------------------------------------------
CHART_LAYOUT_SCRIPT = """
(skip) => {
  // In every chart drawn, what could cover what: the legend over the plotting area, the title or an axis title;
  // the tool bar over the title. Boxes as drawn (the legend's drawn background, not its group's bounding box).
  const box = (node) => { if (!node) return null; const r = node.getBoundingClientRect();
    return r.width && r.height ? {x: r.left, y: r.top, r: r.right, b: r.bottom} : null; };
  const cut = (a, b) => a && b && Math.min(a.r, b.r) - Math.max(a.x, b.x) > 1 && Math.min(a.b, b.b) - Math.max(a.y, b.y) > 1;
  const problems = [];
  for (const el of document.querySelectorAll(".js-plotly-plot")) {
    if (skip && el.matches(skip)) continue;
    const name = el.id || el.className;
    const legend = box(el.querySelector("g.legend rect.bg"));
    const title = box(el.querySelector(".gtitle"));
    const toolbar = box(el.querySelector(".modebar"));
    const axes = [...el.querySelectorAll(".g-xtitle text, .g-ytitle text")].map(box);
    const areas = [...el.querySelectorAll("rect.nsewdrag")].map(box);
    if (areas.some((a) => cut(legend, a))) problems.push(`${name}: the legend covers the plotting area`);
    if (cut(legend, title)) problems.push(`${name}: the legend covers the title`);
    if (axes.some((a) => cut(legend, a))) problems.push(`${name}: the legend covers an axis title`);
    if (cut(toolbar, title) && getComputedStyle(el.querySelector(".modebar")).opacity !== "0")
      problems.push(`${name}: the tool bar covers the title`);
  }
  return problems;
}
"""


# Charts checked on their own, at phone and desktop sizes (test_the_plan_chart_legend_on_a_phone,
# test_the_request_altitude_legend)
DRAWN_ELSEWHERE = "#schedule-timeline, [id^=altitude-]"


def test_new_pages_read_well_as_drawn_with_pyros_formats(require_chromium, walked, live_server, browser,
                                                         screenshot_dir):
    """Desktop: every visible text reaches 4.5:1 (3:1 large), badges stand out, charts are named and titled,
    times and positions read the PyROS way."""
    failures, formats, charts, totals = {}, {}, {}, {"checked": 0, "charts": 0, "chart_texts": 0}

    def visit(page, where, shot):
        result = page.evaluate(CONTRAST_SCRIPT)
        totals["checked"] += result["checked"]
        if result["failures"]:
            failures[where] = result["failures"]
        drawn = page.evaluate(CHARTS_SCRIPT)
        totals["charts"] += len(drawn)
        totals["chart_texts"] += sum(chart["texts"] for chart in drawn)
        if chart_problems(drawn) or page.evaluate(CHART_LAYOUT_SCRIPT, DRAWN_ELSEWHERE):
            charts[where] = chart_problems(drawn) + page.evaluate(CHART_LAYOUT_SCRIPT, DRAWN_ELSEWHERE)
        problems = format_problems(page.evaluate(FORMATS_SCRIPT, WRITTEN_ELSEWHERE))
        if problems:
            formats[where] = problems
        page.screenshot(path=str(screenshot_dir / f"walks2_desktop_{shot}.png"), full_page=True)

    assert walk(browser, live_server, walked, DESKTOP, visit) == 13
    assert totals["checked"] > 400
    assert totals["charts"] >= 6  # the light curve (2 images, the event), the schedule's plan and altitudes
    assert totals["chart_texts"] >= 40
    assert not failures, failures
    assert not charts, charts
    assert not formats, "\n".join(f"{where}: {p}" for where, problems in formats.items() for p in problems)


BROKEN_DATES_SCRIPT = """
() => {
  // Every date drawn in the content ('2026-12-04'): on one line (a break at its hyphens reads '2026-12-' / '04')
  const broken = [];
  const walker = document.createTreeWalker(document.getElementById("main"), NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (node.parentElement.closest("pre, code, textarea, script, .visually-hidden, details:not([open])")) continue;
    for (const match of node.textContent.matchAll(/\\d{4}-\\d\\d-\\d\\d/g)) {
      const range = document.createRange();
      range.setStart(node, match.index);
      range.setEnd(node, match.index + match[0].length);
      const tops = new Set([...range.getClientRects()].filter((r) => r.width > 0).map((r) => Math.round(r.top)));
      if (tops.size > 1 && node.textContent[match.index - 1] !== "/") broken.push(node.parentElement.tagName.toLowerCase() + ": " + node.textContent.trim().slice(0, 60));
    }
  }
  return broken;
}
"""


SQUEEZED_FIELDS_SCRIPT = """
() => {
  // A form field narrower than what it holds: a select's chosen option (with room for its arrow) or a field's
  // value cut off (on a phone the strategy form's filter select showed nothing of 'R').
  const canvas = document.createElement("canvas").getContext("2d");
  const squeezed = [];
  for (const el of document.querySelectorAll("#main select, #main input.form-control")) {
    const style = getComputedStyle(el);
    if (!el.getBoundingClientRect().width || el.closest("[hidden], template")) continue;
    const text = el.tagName === "SELECT" ? (el.selectedOptions[0] || {text: ""}).text : el.value;
    if (!text) continue;
    canvas.font = `${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
    const needed = canvas.measureText(text).width + parseFloat(style.paddingLeft) + parseFloat(style.paddingRight)
      + parseFloat(style.borderLeftWidth) + parseFloat(style.borderRightWidth);
    if (el.getBoundingClientRect().width + 1 < needed)
      squeezed.push(`${el.name || el.id}: '${text}' needs ${Math.ceil(needed)} px, has ${Math.round(el.getBoundingClientRect().width)}`);
  }
  return squeezed;
}
"""


def test_new_pages_fit_a_phone(require_chromium, walked, live_server, browser, screenshot_dir):
    too_wide, failures, broken, charts, squeezed = {}, {}, {}, {}, {}

    def visit(page, where, shot):
        if page.evaluate(SQUEEZED_FIELDS_SCRIPT):
            squeezed[where] = page.evaluate(SQUEEZED_FIELDS_SCRIPT)
        if page.evaluate(CHART_LAYOUT_SCRIPT, DRAWN_ELSEWHERE):
            charts[where] = page.evaluate(CHART_LAYOUT_SCRIPT, DRAWN_ELSEWHERE)
        if page.evaluate(BROKEN_DATES_SCRIPT):
            broken[where] = page.evaluate(BROKEN_DATES_SCRIPT)
        result = page.evaluate(WIDTH_SCRIPT)
        if result["scrollWidth"] > result["width"] or result["wide"]:
            too_wide[where] = result
        contrast = page.evaluate(CONTRAST_SCRIPT)
        if contrast["failures"]:
            failures[where] = contrast["failures"]
        page.screenshot(path=str(screenshot_dir / f"walks2_phone_{shot}.png"), full_page=True)

    assert walk(browser, live_server, walked, PHONE, visit) == 13
    assert not too_wide, "\n".join(f"{where}: {result}" for where, result in too_wide.items())
    assert not failures, failures
    assert not charts, charts
    assert not squeezed, squeezed
    assert not broken, "\n".join(f"{where}: {b}" for where, dates in broken.items() for b in dates)


def test_the_stream_summary_reads_utc(require_chromium, walked, live_server, page):
    log_in(page, live_server, *walked["site"].seed.credentials["operator"])
    page.goto(f"{live_server.url}/alerts/streams/")
    summary = page.inner_text("#kafka-summary")
    assert "stored since" in summary
    assert format_problems(summary) == []


def test_the_plan_chart_legend_on_a_phone(require_chromium, walked, live_server, browser):
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = context.new_page()
    log_in(page, live_server, *walked["site"].seed.credentials["operator"])
    page.goto(f"{live_server.url}/schedule/")
    page.locator("#schedule-timeline .main-svg").first.wait_for()
    problems = page.evaluate(CHART_LAYOUT_SCRIPT, "")
    context.close()
    assert problems == []


def test_the_flow_items_times_say_their_date(require_chromium, walked, live_server, page):
    log_in(page, live_server, *walked["site"].seed.credentials["operator"])
    page.goto(f"{live_server.url}/procedures/items/{walked['item'].uid}/")
    page.locator("#item-facts dt").first.wait_for()
    facts = dict(zip(page.locator("#item-facts > dt").all_inner_texts(),
                     page.locator("#item-facts > dd").all_inner_texts(), strict=False))
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC by .*", facts["added"]), facts
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", facts["ended"]), facts


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_the_request_altitude_legend(require_chromium, walked, live_server, browser, viewport):
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    log_in(page, live_server, *walked["site"].seed.credentials["astronomer"])
    page.goto(f"{live_server.url}/requests/{walked['images'][0].sequence.request_id}/")
    page.locator("[id^=altitude-] .main-svg").first.wait_for()
    problems = page.evaluate(CHART_LAYOUT_SCRIPT, "")
    context.close()
    assert problems == []


LINES_SCRIPT = """
(selector) => [...document.querySelectorAll(selector)].map((cell) => {
  const range = document.createRange();
  range.selectNodeContents(cell);
  const tops = new Set([...range.getClientRects()].filter((r) => r.width > 0).map((r) => Math.round(r.top)));
  return [cell.innerText.trim(), tops.size];
})
"""


def test_the_schedules_dates_do_not_wrap_on_a_phone(require_chromium, walked, live_server, browser):
    """'2026-12-04 23:41:07 UTC' on one line in the planned sequences (the table scrolls sideways instead)."""
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = context.new_page()
    log_in(page, live_server, *walked["site"].seed.credentials["operator"])
    page.goto(f"{live_server.url}/schedule/")
    settle(page)
    cells = page.evaluate(LINES_SCRIPT, "#planned-table tbody td:nth-child(-n+3)")
    context.close()
    assert len(cells) >= 6
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC|\d\d:\d\d:\d\d UTC|-?\d+ min", text)
               for text, _ in cells), cells
    assert [text for text, lines in cells if lines != 1] == [], cells


def test_the_light_curve_hover_says_iso_utc(require_chromium, walked, live_server, page):
    log_in(page, live_server, *walked["site"].seed.credentials["operator"])
    page.goto(f"{live_server.url}/images/{walked['images'][0].pk}/")
    plot = page.locator(".analyzer-afterglow .js-plotly-plot")
    plot.locator(".main-svg").first.wait_for()
    texts = page.evaluate("el => el.data.flatMap((t) => t.text || [])", plot.element_handle())
    assert len(texts) == len(TIMES_S)
    for text in texts:
        assert re.fullmatch(r"image \d+<br>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC( \(5σ limit\))?", text), text


PLOT_AREA_SCRIPT = """
(el) => {
  const box = (node) => { const r = node.getBoundingClientRect(); return {x: r.left, y: r.top, r: r.right, b: r.bottom}; };
  const legend = el.querySelector("g.legend");
  const area = el.querySelector("rect.nsewdrag");
  const fill = el.querySelector("g.legend rect.bg");
  const title = el.querySelector(".gtitle");
  return {legend: legend && box(legend), area: box(area), chart: box(el), title: title && box(title),
          font: getComputedStyle(el.querySelector("g.legend text")).fill,
          legendBg: fill && getComputedStyle(fill).fill};
}
"""


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_the_altitude_preview_legend_covers_no_curve(require_chromium, walked, live_server, browser, viewport,
                                                     screenshot_dir):
    """After 'Altitude preview': the legend sits outside the plotting area (on a phone it covered the target's
    curve at its highest), the chart's text is readable on the page, the resolver's answer is sexagesimal."""
    context = browser.new_context(viewport=viewport, is_mobile=viewport is PHONE, has_touch=viewport is PHONE)
    page = context.new_page()
    page.set_default_timeout(20_000)
    log_in(page, live_server, *walked["site"].seed.credentials["astronomer"])
    page.goto(f"{live_server.url}/requests/new/")
    row = page.locator(".sequence-row").nth(0)
    row.locator("input[name$='-target_name']").fill("M51")
    row.locator("button.resolve-target").click()
    result = row.locator(".target-tools-result")
    page.wait_for_function("el => el.textContent.includes('RA')", arg=result.element_handle())
    assert re.search(r"RA 13h29m5\d\.\d\ds, Dec \+47°11′4\d\.\d″", result.inner_text()), result.inner_text()
    assert not format_problems(result.inner_text())
    row.locator("button.preview-altitude").click()
    preview = row.locator(".altitude-preview")
    preview.locator(".main-svg").first.wait_for()
    page.wait_for_timeout(300)
    boxes = page.evaluate(PLOT_AREA_SCRIPT, preview.element_handle())  # Plotly draws into the box itself
    name = "phone" if viewport is PHONE else "desktop"
    page.screenshot(path=str(screenshot_dir / f"walks2_preview_{name}.png"), full_page=True)
    legend, area, chart = boxes["legend"], boxes["area"], boxes["chart"]
    assert legend is not None
    overlap_x = min(legend["r"], area["r"]) - max(legend["x"], area["x"])
    overlap_y = min(legend["b"], area["b"]) - max(legend["y"], area["y"])
    assert overlap_x <= 0 or overlap_y <= 0, boxes  # the legend covers no part of the plotting area
    title = boxes["title"]
    assert title["b"] <= legend["y"] + 1 or title["r"] <= legend["x"], boxes  # nor the title
    assert legend["x"] >= chart["x"] - 1 and legend["r"] <= chart["r"] + 1, boxes  # and stays in the chart
    drawn = page.evaluate(CHARTS_SCRIPT)
    assert drawn and not chart_problems(drawn), drawn
    assert page.evaluate(WIDTH_SCRIPT)["scrollWidth"] <= page.evaluate("document.documentElement.clientWidth")
    context.close()
