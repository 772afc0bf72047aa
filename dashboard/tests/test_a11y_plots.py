"""Plots with titles, axis labels with units and an accessible name (#16).

Pictures drawn on the server (the tiles of a localisation, the finding chart) carry their title and
labelled axes in the picture and an alt text on the page; the charts drawn in the browser (Plotly) sit
in containers the server names (role=figure/img + aria-label). test_a11y_browser.py checks the drawn
Plotly charts: visible title, axis titles, a name."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from PIL import ImageDraw

from pyrosapp import models as m
from pyrosapp.tests.factories import RequestFactory, SequenceFactory


@pytest.fixture
def drawn_text(monkeypatch) -> list[str]:
    """Every string Pillow draws while the test runs."""
    texts: list[str] = []
    original = ImageDraw.ImageDraw.text

    def text(self, xy, value, *args, **kwargs):
        texts.append(str(value))
        return original(self, xy, value, *args, **kwargs)

    monkeypatch.setattr(ImageDraw.ImageDraw, "text", text)
    return texts


def test_the_tiles_picture_has_a_title_and_labelled_axes_with_units(drawn_text):
    from alert_manager import tiling

    png = tiling.render_tiles_png(circle=(187.7, 12.4, 2.0), tiles=[], observed=set(),
                                  title="GRB 261204A: 0 tiles, 0.0% of the probability")
    assert png.startswith(b"\x89PNG")
    assert "GRB 261204A: 0 tiles, 0.0% of the probability" in drawn_text
    assert "RA (deg, J2000)" in drawn_text and "Dec (deg, J2000)" in drawn_text
    assert sum(bool(re.fullmatch(r"-?\d+(\.\d+)?", t)) for t in drawn_text) >= 4  # tick values on both axes


def test_the_finding_chart_has_a_title_orientation_and_scale(drawn_text):
    from astropy.wcs import WCS

    from analyzer.reports import finding_chart_png

    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [187.7, 12.4]
    wcs.wcs.crpix = [100.5, 100.5]
    wcs.wcs.cdelt = [-1.0 / 3600, 1.0 / 3600]  # 1"/px, east left
    data = np.random.default_rng(1).normal(100, 5, (200, 200))
    png = finding_chart_png(data, wcs, centre_ra_deg=187.7, centre_dec_deg=12.4, candidate=None,
                            error_radius_deg=0.01, title="GRB 261204A  PyROS T1")
    assert png.startswith(b"\x89PNG")
    assert {"GRB 261204A  PyROS T1", "N", "E", "1'"} <= set(drawn_text)


def test_chart_containers_are_named_on_the_pages(astronomer_client, astronomer, operator_client, site):
    now = datetime.now(UTC)
    request = RequestFactory(owner=astronomer, program__pi=astronomer, name="M87 monitoring", status="submitted")
    sequence = SequenceFactory(request=request, target_name="M87", ra_deg=187.70593, dec_deg=12.39112,
                               window_start=now, window_end=now + timedelta(days=1))
    html = astronomer_client.get(f"/requests/{request.pk}/").content.decode()
    assert re.search(rf'id="altitude-{sequence.pk}"[^>]*role="figure"\s+aria-label="Altitude of M87 in degrees '
                     r'against time \(UTC\)', html)
    assert 'xaxis: {title: {text: "time (UTC)"}' in html and 'yaxis: {title: {text: "altitude (°)"}' in html
    editor = astronomer_client.get("/requests/new/").content.decode()
    assert 'class="altitude-preview mb-2" style="height: 280px" role="figure" aria-label="Altitude preview' in editor

    event = m.AlertEvent.objects.create(name="GRB 261204A", missions=["Swift"], burst_time=now, ra_deg=187.7,
                                        dec_deg=12.4, error_deg=0.05,
                                        tiles=[{"plan": 1, "rank": 1, "index": 7, "ra_deg": 187.7, "dec_deg": 12.4,
                                                "probability": 0.5, "cumulative_probability": 0.5}])
    detail = operator_client.get(f"/alerts/{event.pk}/").content.decode()
    assert re.search(r'<img [^>]*src="/alerts/\d+/tiles.png"[^>]*alt="Sky map of GRB 261204A with its \d+ tiles',
                     detail, re.S)
    home = operator_client.get("/").content.decode()
    assert 'id="weather-sparkline" class="sparkline" role="img"' in home
    assert 'aria-label="Wind speed (m/s) and humidity (%) over the last 3 hours"' in home


def test_the_light_curve_panel_names_its_chart_and_titles_its_axes(operator_client, site):
    from django.template.loader import render_to_string

    event = m.AlertEvent.objects.create(name="GRB 261204A", burst_time=datetime.now(UTC))
    light_curve = {"n_images": 1, "has_track": True, "points": [{"t_s": 300.0, "mag": 17.2, "mag_err": 0.05, "time_utc": "2026-12-04T23:46:07",
                               "image_id": 1}],
                   "upper_limits": [], "decay_index": None, "decay_index_err": None, "fading": None,
                   "mag_at_1000s": None, "track": {"ra_deg": 187.7, "dec_deg": 12.4, "error_arcsec": 0.4}}
    html = render_to_string("analyzer/_light_curve_body.html", {"event": event, "light_curve": light_curve,
                                                                "candidates": []})
    assert re.search(r'role="figure"\s+aria-label="Light curve of GRB 261204A: AB magnitude against time since '
                     r'the burst \(s, logarithmic\), 1 detection and 0 upper limits"', html)
    # the visible title, wrapped to the chart's width (pyrosChartFit)
    assert 'pyrosChartFit(plot, "Light curve of GRB 261204A")' in html and "title: {text: fit.title" in html
    assert 'title: {text: "Time since the burst (s)"}' in html and 'title: {text: "magnitude (AB)"}' in html
