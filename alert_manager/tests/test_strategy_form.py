"""Issue #16: the strategy's request template is edited in a form (sequences and exposure rows, filters from the
telescope), not in raw JSON. A filter the telescope lacks is refused on its row and changes nothing; a good form
saves the JSON the follow-up reads."""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from alert_manager.strategies import default_template, sequence_specs
from alert_manager.tests.test_backoffice_guardrails import camera  # noqa: F401  (fixture: PyROS Camera, V R I)
from pyrosapp import models as m
from pyrosapp.tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def strategy(camera):  # noqa: F811
    return m.Strategy.objects.create(name="Swift GRB", missions=["Swift"], template=default_template(),
                                     is_active=True)


@pytest.fixture
def admin_client(client):
    client.force_login(UserFactory(role=m.User.Role.ADMINISTRATOR))
    return client


def _url(strategy) -> str:
    return reverse("alert_manager:strategy_template", args=[strategy.pk])


def _form_data(rows_per_sequence: list[tuple[str, int, int, list[dict]]]) -> dict[str, str]:
    """POST data in the page's naming: s<S>-..., s<S>-p<P>-... (numbers need only be unique)."""
    data: dict[str, str] = {}
    for s, (name, start, end, rows) in enumerate(rows_per_sequence):
        data.update({f"s{s}-name": name, f"s{s}-from_s": str(start), f"s{s}-to_s": str(end)})
        for p, row in enumerate(rows):
            data.update({f"s{s}-p{p}-{key}": str(value) for key, value in
                         {"detector": "", "binning": 1, **row}.items()})
    return data


def _page(response) -> str:
    return html.unescape(response.content.decode())


def test_the_form_shows_the_template_as_rows_with_the_telescopes_filters(admin_client, strategy):
    page = _page(admin_client.get(_url(strategy)))

    assert 'name="s0-name" value="immediate"' in page and 'name="s1-name" value="cadence"' in page
    assert 'name="s0-from_s" value="0"' in page and 'name="s1-to_s" value="21600"' in page
    assert 'name="s0-p0-exposure_s" value="60"' in page and 'name="s0-p0-count" value="10"' in page
    first_filter = page.split('name="s0-p0-filter"')[1].split("</select>")[0]
    assert [line.split(">")[1].split("<")[0] for line in first_filter.split("<option")[1:]] == ["V", "R", "I"]
    assert '<option value="R" selected>' in first_filter
    assert "Site's camera (PyROS Camera)" in page
    # The JSON stays visible, read-only.
    assert '<details class="mb-5" id="raw-json">' in page and '"after_burst_s": [' in page
    assert "/static/alert_manager/strategy_form.js" in page
    # The strategies page links to it for administrators.
    assert _url(strategy) in admin_client.get(reverse("alert_manager:strategy_list")).content.decode()


def test_a_filter_the_telescope_lacks_is_refused_on_its_row_and_changes_nothing(admin_client, strategy):
    before = m.Strategy.objects.get(pk=strategy.pk).template
    data = _form_data([("immediate", 0, 3600, [{"filter": "R", "exposure_s": 60, "count": 10},
                                                {"filter": "Z", "exposure_s": 30, "count": 2}])])

    response = admin_client.post(_url(strategy), data)

    assert response.status_code == 400
    page = _page(response)
    row = page.split('name="s0-p1-filter"')[1].split("</td>")[0]
    assert "PyROS Camera has no filter 'Z' (its filters: V, R, I)" in row
    assert 'class="form-select form-select-sm filter-select is-invalid"' in page.split('name="s0-p1-filter"')[0][-200:]
    assert '<option value="Z" selected>Z (not on this detector)</option>' in row
    assert "Not saved" in page
    assert m.Strategy.objects.get(pk=strategy.pk).template == before


@pytest.mark.parametrize(("change", "field", "message"), [
    ({"s0-p0-exposure_s": "0"}, "s0-p0-exposure_s", "Must be more than 0 s."),
    ({"s0-p0-exposure_s": "100000"}, "s0-p0-exposure_s", "exposure 100000 s is above"),
    ({"s0-p0-count": "0"}, "s0-p0-count", "Ensure this value is greater than or equal to 1."),
    ({"s0-p0-binning": "4"}, "s0-p0-binning", "PyROS Camera bins at most 2x"),
    ({"s0-p0-detector": "Big Camera"}, "s0-p0-detector", "no detector named 'Big Camera'"),
    ({"s0-from_s": "3600"}, "s0-to_s", "Must be after “From” (3600 s)."),
    ({"s0-name": ""}, "s0-name", "Give the sequence a name."),
])
def test_each_bad_field_gets_its_own_error(admin_client, strategy, change, field, message):
    before = m.Strategy.objects.get(pk=strategy.pk).template
    data = {**_form_data([("immediate", 0, 3600, [{"filter": "R", "exposure_s": 60, "count": 10}])]), **change}

    response = admin_client.post(_url(strategy), data)

    assert response.status_code == 400
    after_field = _page(response).split(f'name="{field}"')[1].split("</td>")[0].split("</div>\n      </div>")[0]
    assert message in after_field
    assert m.Strategy.objects.get(pk=strategy.pk).template == before


def test_a_sequence_without_rows_or_no_sequence_at_all_is_refused(admin_client, strategy):
    before = m.Strategy.objects.get(pk=strategy.pk).template
    response = admin_client.post(_url(strategy), _form_data([("immediate", 0, 3600, [
        {"filter": "", "exposure_s": "", "count": ""}])]))
    assert response.status_code == 400 and "Add at least one exposure row to this sequence." in _page(response)
    response = admin_client.post(_url(strategy), {})
    assert response.status_code == 400 and "Add at least one sequence" in _page(response)
    assert m.Strategy.objects.get(pk=strategy.pk).template == before


def test_a_good_form_saves_the_json_the_follow_up_reads(admin_client, strategy):
    data = _form_data([
        ("immediate", 0, 1800, [{"filter": "R", "exposure_s": 60, "count": 10},
                                {"detector": "PyROS Camera", "filter": "I", "exposure_s": 30, "count": 3, "binning": 2}]),
        ("late", 1800, 7200, [{"filter": "V", "exposure_s": 120.5, "count": 5}]),
    ])

    response = admin_client.post(_url(strategy), data)

    assert response.status_code == 302 and response["Location"] == reverse("alert_manager:strategy_list")
    saved = m.Strategy.objects.get(pk=strategy.pk).template
    assert saved == {"sequences": [
        {"name": "immediate", "after_burst_s": [0, 1800], "albums": [
            {"plans": [{"filter": "R", "exposure_s": 60, "count": 10}]},
            {"detector": "PyROS Camera", "plans": [{"filter": "I", "exposure_s": 30, "count": 3, "binning": 2}]}]},
        {"name": "late", "after_burst_s": [1800, 7200], "albums": [
            {"plans": [{"filter": "V", "exposure_s": 120.5, "count": 5}]}]},
    ]}
    burst = datetime(2026, 12, 16, 22, 0, tzinfo=UTC)
    specs = sequence_specs(saved, burst_time=burst, now=burst)
    assert [(s.name, s.window_end - s.window_start) for s in specs] == [
        ("immediate", timedelta(minutes=30)), ("late", timedelta(hours=1.5))]
    assert specs[0].albums[1].detector == "PyROS Camera" and specs[0].albums[1].plans[0].binning == 2


def test_the_unchanged_form_saves_the_same_template(admin_client, strategy):
    data = _form_data([("immediate", 0, 3600, [{"filter": "R", "exposure_s": 60, "count": 10}]),
                       ("cadence", 3600, 21600, [{"filter": "R", "exposure_s": 120, "count": 5}])])
    assert admin_client.post(_url(strategy), data).status_code == 302
    assert m.Strategy.objects.get(pk=strategy.pk).template == default_template()


def test_only_administrators_edit_templates(client, strategy):
    client.force_login(UserFactory(role=m.User.Role.OPERATOR))
    assert client.get(_url(strategy)).status_code == 403
    assert client.post(_url(strategy), _form_data([("x", 0, 60, [{"filter": "R", "exposure_s": 1, "count": 1}])])
                       ).status_code == 403
    assert m.Strategy.objects.get(pk=strategy.pk).template == default_template()
    assert _url(strategy) not in client.get(reverse("alert_manager:strategy_list")).content.decode()


def test_the_backoffice_shows_an_existing_template_read_only(client, strategy):
    client.force_login(UserFactory(role=m.User.Role.ADMINISTRATOR, is_staff=True, is_superuser=True))
    page = _page(client.get(reverse("admin:pyrosapp_strategy_change", args=[strategy.pk])))
    assert 'name="template"' not in page
    assert '"exposure_s": 60' in page and _url(strategy) in page
