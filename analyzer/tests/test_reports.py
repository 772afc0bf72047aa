"""What a GRB team sends out, for a test event: the photometry table (AB, times since T0, upper limits),
the finding chart and a GCN Circular draft carrying the right numbers; the pages that offer them."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from astropy.coordinates import Angle
from astropy.table import Table
from django.urls import reverse
from PIL import Image as PILImage

from analyzer import reports, selectors, services
from analyzer.tests.test_services import (  # noqa: F401  (fixtures)
    ALERT_EXPOSURE_S,
    NIGHT_UTC,
    data_dir,
    detector,
    make_alert_request,
    store_alert_images,
)
from analyzer.tests.test_views import owner, owner_client  # noqa: F401  (fixtures)
from devices.catalogs import AB_MINUS_VEGA
from pyrosapp import models as m

TIMES_S = (300.0, 600.0, 7200.0)  # two detections, then the afterglow below the frame's limit


@pytest.fixture
def analysed_event(data_dir, detector, owner):  # noqa: F811
    event, sequence, transient = make_alert_request(detector, owner=owner)
    event.missions = ["Swift"]
    event.save()
    images = store_alert_images(detector, sequence, transient, times_s=TIMES_S)
    for image in images:
        assert services.image_analyze(image_id=image.pk).status == "ok"
    return event, images, transient


def test_the_photometry_table_has_ab_magnitudes_times_since_t0_and_upper_limits(analysed_event):
    event, images, transient = analysed_event
    report = selectors.event_report(event)
    assert [row["image_id"] for row in report.rows] == [img.pk for img in images]
    assert [row["t_minus_t0_s"] for row in report.rows] == pytest.approx([t + ALERT_EXPOSURE_S / 2 for t in TIMES_S])
    for row, t_s in zip(report.rows[:2], TIMES_S[:2], strict=True):
        truth_ab = transient.mean_magnitude(NIGHT_UTC + timedelta(seconds=t_s), ALERT_EXPOSURE_S, "R") + AB_MINUS_VEGA["R"]
        # No flat field here (no masters stored): vignetting costs ~0.1 mag; with masters the AB magnitude is
        # good to 0.1 (test_realsky_afterglow). What matters here is the row: AB = the candidate's R + 0.21.
        assert row["detected"] and row["mag_ab"] == pytest.approx(truth_ab, abs=0.25)
        stored = next(c for c in m.AnalysisResult.objects.get(image_id=row["image_id"]).candidates)
        assert row["mag_ab"] == pytest.approx(stored["mag"] + 0.21, abs=0.001)
        assert 0 < row["mag_ab_err"] < 0.1
    late = report.rows[2]
    assert not late["detected"] and late["mag_ab"] is None
    assert late["upper_limit_ab"] == pytest.approx(images[2].analysis.results["limiting_mag_ab"], abs=0.01)
    table = Table.read(reports.table_bytes(reports.photometry_table(report), "ecsv").decode(),
                       format="ascii.ecsv")
    assert str(table["mag_ab"].unit) == "mag" and table.meta["event"] == "GRB 260301A"
    assert list(table["detected"]) == [True, True, False]
    csv = reports.table_bytes(reports.photometry_table(report), "csv").decode().splitlines()
    assert csv[0].startswith("time_utc,t_minus_t0_s,filter") and len(csv) == 4


def test_the_circular_draft_carries_the_right_numbers(analysed_event):
    event, images, _ = analysed_event
    report = selectors.event_report(event)
    draft = reports.circular_draft(report)
    assert draft.startswith("GRB 260301A: ") and "afterglow candidate" in draft.splitlines()[0]
    assert report.telescope in draft and "Swift trigger" in draft
    assert "5.1 min after the trigger" in draft  # first image's mid-exposure: 305 s
    candidate = report.candidate
    ra = Angle(candidate["ra_deg"], unit="deg").to_string(unit="hourangle", sep=":", precision=2, pad=True)
    dec = Angle(candidate["dec_deg"], unit="deg").to_string(unit="deg", sep=":", precision=1, alwayssign=True, pad=True)
    assert f"RA (J2000) = {ra}" in draft and f"Dec (J2000) = {dec}" in draft
    assert f"uncertainty of {max(candidate['error_arcsec'], 0.1):.1f} arcsec" in draft
    for row in report.rows[:2]:
        assert f"{row['t_minus_t0_s']:8.0f}" in draft and f"{row['mag_ab']:.2f} +/- {row['mag_ab_err']:.2f}" in draft
    assert f"> {report.rows[2]['upper_limit_ab']:.2f}" in draft
    assert "AB magnitudes" in draft and "decay index" in draft


def test_upper_limits_only_when_nothing_is_found(data_dir, detector):  # noqa: F811
    event, sequence, transient = make_alert_request(detector, burst_time=NIGHT_UTC + timedelta(hours=3))
    image = store_alert_images(detector, sequence, transient, times_s=(300.0,))[0]  # before the burst
    services.image_analyze(image_id=image.pk)
    report = selectors.event_report(event)
    draft = reports.circular_draft(report)
    assert report.candidate is None and "upper limits" in draft.splitlines()[0]
    assert "No new source is detected" in draft and f"> {report.rows[0]['upper_limit_ab']:.2f}" in draft


def test_the_report_page_offers_the_draft_the_chart_and_the_tables(analysed_event, owner_client):  # noqa: F811
    event, _, _ = analysed_event
    panel = owner_client.get(reverse("analyzer:event_afterglow", args=[event.pk])).content.decode()
    assert reverse("analyzer:event_report", args=[event.pk]) in panel  # linked from the event page's panel
    page = owner_client.get(reverse("analyzer:event_report", args=[event.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="circular-draft"' in html and "GRB 260301A: " in html and "never sends it" in html
    chart = owner_client.get(reverse("analyzer:event_finding_chart", args=[event.pk]))
    assert chart.status_code == 200 and chart["Content-Type"] == "image/png"
    picture = PILImage.open(io.BytesIO(chart.content))
    assert min(picture.size) >= 400
    # The candidate's ticks are red, the error circle blue.
    import numpy as np

    colours = {tuple(pixel) for pixel in np.asarray(picture.convert("RGB")).reshape(-1, 3)}
    assert (220, 0, 0) in colours and (0, 90, 220) in colours
    ecsv = owner_client.get(reverse("analyzer:event_photometry", args=[event.pk, "ecsv"]))
    assert ecsv.status_code == 200 and b"# %ECSV" in ecsv.content
    assert "attachment" in ecsv["Content-Disposition"]
