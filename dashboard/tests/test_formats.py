"""Times in ISO UTC and sky positions rounded, the same way on every page (#16): common/formats.py, its
template filters (common/templatetags/pyros_format.py) and the pages that use them."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from django.template import Context, Template

from common import formats
from pyrosapp import models as m
from pyrosapp.tests.factories import RequestFactory, SequenceFactory

REPO = Path(__file__).resolve().parents[2]
BURST = datetime(2026, 12, 4, 23, 41, 7, 123456, tzinfo=UTC)
RA, DEC, ERROR = 187.70593041666667, 12.391123456789, 0.0583333333  # M87; a 3.5' error circle
LONG_FLOAT = re.compile(r"\d+\.\d{6,}")
DJANGO_DATE = re.compile(r"\b(a\.m\.|p\.m\.|midnight|noon)|(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\. \d")


# --- The rules ---------------------------------------------------------------------------------
def test_utc_styles():
    assert formats.utc(BURST) == "2026-12-04 23:41:07 UTC"
    assert formats.utc(BURST, "min") == "2026-12-04 23:41 UTC"
    assert formats.utc(BURST, "ms") == "2026-12-04 23:41:07.123 UTC"
    assert formats.utc(BURST, "time") == "23:41:07 UTC"
    assert formats.utc(BURST, "hm") == "23:41 UTC"
    assert formats.utc(BURST, "date") == "2026-12-04"


def test_utc_converts_to_utc_and_reads_iso_strings():
    paris = timezone(timedelta(hours=1))
    assert formats.utc(datetime(2026, 12, 5, 0, 41, 7, tzinfo=paris)) == "2026-12-04 23:41:07 UTC"
    assert formats.utc(datetime(2026, 12, 4, 23, 41, 7)) == "2026-12-04 23:41:07 UTC"  # noqa: DTZ001 (naive = UTC)
    assert formats.utc("2026-12-04T23:41:07.5Z") == "2026-12-04 23:41:07 UTC"
    assert formats.utc("2026-12-04T23:41:07+00:00", "hm") == "23:41 UTC"
    assert formats.utc(None) == formats.utc("") == formats.utc("not a time") == "—"
    with pytest.raises(ValueError, match="unknown time style"):
        formats.utc(BURST, "locale")


def test_right_ascension_to_a_hundredth_of_a_second():
    assert formats.ra(RA) == "12h30m49.42s"
    assert formats.ra(0) == "00h00m00.00s"
    assert formats.ra(359.99999999) == "00h00m00.00s"  # rounds up into the next day, not "24h"
    assert formats.ra(14.999999999) == "01h00m00.00s"  # no "60.00s"
    assert formats.ra(-15) == "23h00m00.00s"
    assert formats.ra(None) == formats.ra("x") == formats.ra(float("nan")) == "—"


def test_declination_to_a_tenth_of_an_arcsecond():
    assert formats.dec(DEC) == "+12°23′28.0″"
    assert formats.dec(-5.5) == "-05°30′00.0″"
    assert formats.dec(-0.00001) == "+00°00′00.0″"  # no "-00" for a value that rounds to zero
    assert formats.dec(-0.0001) == "-00°00′00.4″"
    assert formats.dec(-45.99999999) == "-46°00′00.0″"  # no 60.0″
    assert formats.dec(90) == "+90°00′00.0″"
    assert formats.dec(None) == "—"


def test_angular_sizes_with_two_or_three_significant_digits():
    assert formats.angle(ERROR) == "3.5′"
    assert formats.angle(0.001) == "3.6″"
    assert formats.angle(0.0139) == "50″"
    assert formats.angle(1 / 3600 * 0.52) == "0.52″"
    assert formats.angle(0.5) == "30′"
    assert formats.angle(2.5) == "2.5°"
    assert formats.angle(12.3456) == "12.3°"
    assert formats.angle(180) == "180°"
    assert formats.angle(None) == "—"
    assert formats.degrees(RA) == "187.7059°" and formats.degrees(RA, 5) == "187.70593°"


def test_the_template_filters():
    html = Template('{% load pyros_format %}{{ t|utc }}|{{ t|utc:"ms" }}|{{ ra|ra }}|{{ dec|dec }}|{{ e|angle }}|'
                    '{{ ra|degrees:5 }}|{{ none|utc }}').render(
        Context({"t": BURST, "ra": RA, "dec": DEC, "e": ERROR, "none": None}))
    assert html == ("2026-12-04 23:41:07 UTC|2026-12-04 23:41:07.123 UTC|12h30m49.42s|+12°23′28.0″|3.5′|"
                    "187.70593°|—")


# --- Every template uses them ------------------------------------------------------------------
def _templates() -> list[Path]:
    return sorted(p for p in REPO.glob("**/templates/**/*.html") if ".venv" not in p.parts)


def test_no_template_formats_a_time_or_a_position_its_own_way():
    own_way = re.compile(r"\|date:|\|time:|_utc\|slice|\|slice:\"11:|(ra|dec|error)_deg\|floatformat")
    offenders = [f"{p.relative_to(REPO)}:{n}: {line.strip()[:100]}"
                 for p in _templates() for n, line in enumerate(p.read_text().splitlines(), 1) if own_way.search(line)]
    assert not offenders


def test_no_script_formats_a_time_its_own_way():
    """Scripts show times through pyrosFormat.utc (static/pyros/pyros.js), not by cutting ISO strings."""
    scripts = [p for p in REPO.glob("*/static/**/*.js") if "vendor" not in p.parts] + \
        list((REPO / "static/pyros").glob("*.js"))
    cut = re.compile(r"(toISOString\(\)|\.tsp|_at\b|\.time|\[0\]|iso)[^;\n]*\.(slice|substring)\(11")
    offenders = [f"{p.relative_to(REPO)}:{n}" for p in scripts
                 for n, line in enumerate(p.read_text().splitlines(), 1) if cut.search(line)
                 and "record.time" not in line]  # the log panel's own column: ISO time to the millisecond
    assert not offenders


# --- Pages -------------------------------------------------------------------------------------
def _page_text(html: str) -> str:
    body = re.sub(r"<script\b.*?</script>", "", html, flags=re.S)
    return re.sub(r"<[^>]+>", " ", body)


def assert_readable(html: str) -> None:
    text = _page_text(html)
    assert not LONG_FLOAT.search(text), LONG_FLOAT.search(text).group(0)
    assert not DJANGO_DATE.search(text), DJANGO_DATE.search(text).group(0)


def test_request_page_shows_rounded_coordinates_and_utc_times(astronomer_client, astronomer, site):
    request = RequestFactory(owner=astronomer, program__pi=astronomer, name="M87 monitoring", status="submitted")
    m.Request.objects.filter(pk=request.pk).update(created=BURST, submitted_at=BURST)
    SequenceFactory(request=request, target_name="M87", ra_deg=RA, dec_deg=DEC, window_start=BURST,
                    window_end=BURST + timedelta(days=1))
    html = astronomer_client.get(f"/requests/{request.pk}/").content.decode()
    assert "RA 12h30m49.42s Dec +12°23′28.0″" in html
    assert "created 2026-12-04 23:41 UTC" in html
    assert "Window 2026-12-04 23:41 UTC – 2026-12-05 23:41 UTC" in html
    assert_readable(html)
    listing = astronomer_client.get("/requests/").content.decode()
    assert "2026-12-04 23:41 UTC" in listing
    assert_readable(listing)


def test_event_pages_show_rounded_positions_and_utc_times(operator_client, site):
    event = m.AlertEvent.objects.create(name="GRB 261204A", missions=["Swift"], burst_time=BURST,
                                        ra_deg=RA, dec_deg=DEC, error_deg=ERROR,
                                        pointed_ra_deg=RA + 1e-9, pointed_dec_deg=DEC)
    listing = operator_client.get("/alerts/").content.decode()
    assert "12h30m49.42s +12°23′28.0″ ± 3.5′" in listing
    assert "2026-12-04 23:41:07 UTC" in listing
    assert_readable(listing)
    detail = operator_client.get(f"/alerts/{event.pk}/").content.decode()
    assert "RA 12h30m49.42s, Dec +12°23′28.0″, error 3.5′" in detail
    assert "2026-12-04 23:41:07.123 UTC" in detail
    assert_readable(detail)


def test_django_formats_dates_the_same_way(settings):
    """What Django formats by itself (the backoffice's lists) follows the same rules, through
    common/locale_formats (settings.FORMAT_MODULE_PATH)."""
    from django.utils import formats as django_formats

    settings.FORMAT_MODULE_PATH = ["common.locale_formats"]
    django_formats._format_cache.clear()
    django_formats._format_modules_cache.clear()
    try:
        assert django_formats.localize(BURST) == "2026-12-04 23:41:07 UTC"
        assert django_formats.localize(BURST.date()) == "2026-12-04"
        assert Template("{{ t }}|{{ t|date }}|{{ t|date:'SHORT_DATETIME_FORMAT' }}").render(Context({"t": BURST})) == \
            "2026-12-04 23:41:07 UTC|2026-12-04|2026-12-04 23:41 UTC"
    finally:
        django_formats._format_cache.clear()
        django_formats._format_modules_cache.clear()


def test_no_page_shows_a_raw_float_or_a_locale_date(client, db, settings):
    """Every page a user reaches, with data on it: no 187.70593041666667, no 'Dec. 4, 2026, 11:41 p.m.'
    (the backoffice's lists format dates through common/locale_formats)."""
    from django.utils import formats as django_formats

    from dashboard.tests.pages import ADMIN_PAGES, ANONYMOUS_PAGES, build_site, user_pages

    settings.FORMAT_MODULE_PATH = ["common.locale_formats"]
    django_formats._format_cache.clear()
    django_formats._format_modules_cache.clear()
    data = build_site()
    walked = 0
    for path in ANONYMOUS_PAGES:
        response = client.get(path)
        assert response.status_code == 200, path
        assert_readable(response.content.decode())
        walked += 1
    for role, paths in [*user_pages(data).items(), ("administrator", ADMIN_PAGES)]:
        client.force_login(m.User.objects.get(email=data.seed.credentials[role][0]))
        for path in paths:
            response = client.get(path)
            assert response.status_code == 200, (role, path)
            try:
                assert_readable(response.content.decode())
            except AssertionError as error:
                raise AssertionError(f"{role} {path}: {error}") from None
            walked += 1
    assert walked >= 30


def test_the_editors_check_shows_observable_windows_in_utc(client, db):
    """'Check' in the request editor lists when each target is observable: ISO order, UTC."""
    import time_machine

    from routine_manager.tests.helpers import NOW, make_observatory
    from routine_manager.tests.test_views import _post

    with time_machine.travel(NOW, tick=True):
        obs = make_observatory()
        client.force_login(obs.astronomer)
        page = client.post("/requests/new/", _post(obs, "check")).content.decode()
    windows = re.findall(r"Observable \(UTC\): ([^<]*)</div>", page)
    assert windows and all(re.fullmatch(r"(\d{4}-\d\d-\d\d \d\d:\d\d–\d\d:\d\d(; )?)+", w.strip()) for w in windows)
    assert_readable(page)
