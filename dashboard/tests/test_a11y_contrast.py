"""Contrast to WCAG AA (#16), computed from the style sheets the pages load (no browser): every text,
button, badge and alert colour class the templates and scripts use, in the site's dark theme.

Text needs 4.5:1 against what lies beneath it (badges and buttons are small text); the boundary of a
control whose look says "this is a field/button" (outline buttons, form fields) needs 3:1 against
the page; a badge's background must differ from the page (>= 1.5:1) so that it reads as a badge (the
"Cancelled" badge had the page's own colour). test_a11y_browser.py checks the same on rendered pages.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dashboard.tests.wcag import El, StyleSheets, contrast, hex_of, parse_colour

REPO = Path(__file__).resolve().parents[2]
THEME = ("primary", "secondary", "success", "danger", "warning", "info", "light", "dark")
TEXT_CLASSES = {f"text-{c}" for c in THEME} | {"text-muted", "text-body-secondary", "text-body-emphasis",
                                               "text-body", "text-white", "text-black"}
BUTTON_CLASSES = {f"btn-{c}" for c in THEME} | {f"btn-outline-{c}" for c in THEME} | {"btn-link"}
BADGE_CLASSES = {f"text-bg-{c}" for c in THEME}
ALERT_CLASSES = {f"alert-{c}" for c in THEME}
WORD = re.compile(r"[\w-]+")

DARK = [El.of("html", **{"data-bs-theme": "dark"}), El.of("body")]
PLACES = {  # where text sits: the page, a card, the navigation bar's tint, a table cell
    "page": DARK,
    "card": [*DARK, El.of("div.card"), El.of("div.card-body")],
    "tertiary": [*DARK, El.of("div.bg-body-tertiary")],
    "table": [*DARK, El.of("table.table.table-sm"), El.of("tbody"), El.of("tr"), El.of("td")],
}


@pytest.fixture(scope="module")
def sheets() -> StyleSheets:
    own = sorted(p for p in REPO.glob("*/static/*/*.css") if "vendor" not in p.parts)
    return StyleSheets([REPO / "static/vendor/bootstrap/bootstrap.min.css", REPO / "static/pyros/pyros.css", *own])


def project_sources() -> list[Path]:
    skip = {".venv", "node_modules", "vendor", "test-artifacts", "var"}
    paths = [*REPO.glob("**/templates/**/*.html"), *REPO.glob("**/static/**/*.js"), *REPO.glob("*/templatetags/*.py")]
    return sorted(p for p in paths if not skip & set(p.relative_to(REPO).parts))


def used_colour_classes() -> set[str]:
    """Every text/button/badge/alert colour class named in a template, a script or a tag library
    (`text-bg-{{ status|badge }}` and `text-bg-${...}` count as every value those can produce: the
    badge filter's colours, and the quoted theme names in the script's expression)."""
    from routine_manager.templatetags.request_tags import BADGE_COLOURS

    names = {f"text-bg-{colour}" for colour in BADGE_COLOURS.values()}
    family = TEXT_CLASSES | BUTTON_CLASSES | BADGE_CLASSES | ALERT_CLASSES
    for path in project_sources():
        source = path.read_text(encoding="utf-8")
        names |= {w for w in WORD.findall(source) if w in family}
        for prefix, expression in re.findall(r"(text-bg-|btn-outline-|btn-|text-)\$\{([^}]*)\}", source):
            names |= {prefix + c for c in re.findall(r"[\"'](\w+)[\"']", expression) if c in THEME}
    return names


def ratio(sheets: StyleSheets, chain: list[El]) -> tuple[float, str]:
    fg, bg, _border = sheets.colours(chain)
    return contrast(fg, bg), f"{hex_of(fg)} on {hex_of(bg)}"


def test_contrast_formula_matches_wcag():
    white, black = parse_colour("#fff"), parse_colour("#000")
    assert contrast(white, black) == pytest.approx(21.0)
    assert contrast(parse_colour("#777777"), white) == pytest.approx(4.48, abs=0.01)
    assert contrast(parse_colour("rgb(255 255 255)"), white) == pytest.approx(1.0)


def test_the_css_reader_finds_bootstraps_own_dark_colours(sheets):
    """The reader sees what a browser sees: Bootstrap's dark body, and the outline button the issue
    measured at 3.3:1 before PyROS's sheet raised it."""
    fg, bg, _ = sheets.colours(DARK)
    assert (hex_of(fg), hex_of(bg)) == ("#dee2e6", "#212529")
    bootstrap_only = StyleSheets([REPO / "static/vendor/bootstrap/bootstrap.min.css"])
    r, _ = ratio(bootstrap_only, [*DARK, El.of("button.btn.btn-outline-secondary")])
    assert r == pytest.approx(3.29, abs=0.01)


def test_every_colour_class_used_is_checked_here():
    used = used_colour_classes()
    assert {"btn-outline-secondary", "text-bg-danger", "text-body-secondary"} <= used  # the scan works
    unchecked = used - (TEXT_CLASSES | BUTTON_CLASSES | BADGE_CLASSES | ALERT_CLASSES)
    assert not unchecked


@pytest.mark.parametrize("place", sorted(PLACES))
def test_text_classes_reach_4_5_to_1(sheets, place):
    failures = []
    for name in sorted(TEXT_CLASSES & used_colour_classes() | {"body"}):
        chain = [*PLACES[place], El.of(f"p.{name}" if name != "body" else "p")]
        r, pair = ratio(sheets, chain)
        if r < 4.5:
            failures.append(f"{name} in {place}: {pair} = {r:.2f}")
        link, pair = ratio(sheets, [*chain, El.of("a", href="#")])
        if link < 4.5:
            failures.append(f"a link in {name} in {place}: {pair} = {link:.2f}")
    assert not failures


def test_buttons_text_4_5_to_1_at_rest_and_under_the_pointer_outline_3_to_1(sheets):
    failures = []
    for name in sorted(BUTTON_CLASSES & used_colour_classes()):
        for place in ("page", "card", "tertiary"):
            for states in ((), ("hover",)):
                chain = [*PLACES[place], El.of(f"button.btn.btn-sm.{name}", states=states)]
                fg, bg, border = sheets.colours(chain)
                r = contrast(fg, bg)
                if r < 4.5:
                    failures.append(f"{name}{':hover' if states else ''} in {place}: "
                                    f"{hex_of(fg)} on {hex_of(bg)} = {r:.2f}")
                if name.startswith("btn-outline-") and not states:
                    page_bg = sheets.colours(PLACES[place])[1]
                    b = contrast(border, page_bg)
                    if b < 3.0:
                        failures.append(f"{name} border in {place}: {hex_of(border)} = {b:.2f}")
    assert not failures


def test_badges_are_readable_and_stand_out_from_the_page(sheets):
    failures = []
    for name in sorted(BADGE_CLASSES):  # all of them: a status may map to any colour
        for place in ("page", "card", "table"):
            fg, bg, _ = sheets.colours([*PLACES[place], El.of(f"span.badge.{name}")])
            page_bg = sheets.colours(PLACES[place])[1]
            if contrast(fg, bg) < 4.5:
                failures.append(f"{name} text in {place}: {hex_of(fg)} on {hex_of(bg)} = {contrast(fg, bg):.2f}")
            if contrast(bg, page_bg) < 1.5:
                failures.append(f"{name} in {place}: badge {hex_of(bg)} on page {hex_of(page_bg)} "
                                f"= {contrast(bg, page_bg):.2f}")
    assert not failures


def test_every_request_status_badge_passes(sheets):
    from routine_manager.templatetags.request_tags import BADGE_COLOURS

    for status, colour in BADGE_COLOURS.items():
        fg, bg, _ = sheets.colours([*DARK, El.of(f"span.badge.status-badge.text-bg-{colour}")])
        assert contrast(fg, bg) >= 4.5, status
        assert contrast(bg, sheets.colours(DARK)[1]) >= 1.5, f"{status} badge invisible on the page"


def test_alerts_and_their_links(sheets):
    failures = []
    for name in sorted(ALERT_CLASSES & used_colour_classes()):
        for inner in ((), (El.of("a.alert-link"),), (El.of("p.small"),)):
            r, pair = ratio(sheets, [*DARK, El.of(f"div.alert.{name}"), *inner])
            if r < 4.5:
                failures.append(f"{name} {inner}: {pair} = {r:.2f}")
    assert not failures


def test_navigation_and_form_fields(sheets):
    nav = [*DARK, El.of("nav.navbar.navbar-expand-lg.bg-body-tertiary"), El.of("ul.navbar-nav")]
    for link in ("a.nav-link", "a.nav-link.active"):
        r, pair = ratio(sheets, [*nav, El.of(link)])
        assert r >= 4.5, f"{link}: {pair}"
    for place in ("page", "card", "tertiary"):
        page_bg = sheets.colours(PLACES[place])[1]
        for field in ("input.form-control", "select.form-select", "input.form-check-input"):
            fg, bg, border = sheets.colours([*PLACES[place], El.of(field)])
            assert border is not None and contrast(border, page_bg) >= 3.0, f"{field} border in {place}"
            if field != "input.form-check-input":
                assert contrast(fg, bg) >= 4.5, f"{field} text in {place}"


def test_the_skip_link_when_focused(sheets):
    """Shown on focus as black on white (the page behind it does not matter)."""
    r, pair = ratio(sheets, [*DARK, El.of("a.skip-link.visually-hidden-focusable", states=("focus",))])
    assert r >= 4.5, pair


TABLE_ROW_CLASSES = {f"table-{c}" for c in ("primary", "secondary", "success", "danger", "warning", "info")}


def test_highlighted_table_rows_keep_their_text_and_links_readable(sheets):
    """A highlighted row (the executing sequence, an observed tile), at rest and under the pointer: its
    text, links and secondary text."""
    used = {w for p in project_sources() for w in WORD.findall(p.read_text(encoding="utf-8"))} & TABLE_ROW_CLASSES
    assert {"table-warning", "table-success"} <= used
    failures = []
    for name in sorted(used):
        for states in ((), ("hover",)):
            row = [*DARK, El.of("table.table.table-sm.table-hover"), El.of("tbody"),
                   El.of(f"tr.{name}", states=states), El.of("td")]
            for inner in ((), (El.of("a", href="#"),), (El.of("span.text-body-secondary"),)):
                r, pair = ratio(sheets, [*row, *inner])
                if r < 4.5:
                    failures.append(f"{name}{':hover' if states else ''} {[e.tag for e in inner]}: {pair} = {r:.2f}")
    assert not failures
