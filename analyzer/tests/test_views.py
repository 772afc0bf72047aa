"""Images pages, protected files, the afterglow panel and /api/images/: who sees what, and what they read."""

from __future__ import annotations

import json
from datetime import timedelta
from unittest import mock

import pytest
from django.template.loader import render_to_string
from django.urls import reverse

from analyzer import selectors, services
from analyzer.tests.test_services import (  # noqa: F401  (fixtures)
    DUSK_UTC,
    NIGHT_UTC,
    data_dir,
    detector,
    make_alert_request,
    store_alert_images,
    store_calibration_series,
    store_image,
)
from pyrosapp import models as m
from pyrosapp.tests import factories as f


@pytest.fixture
def owner(db):
    return f.UserFactory(role=m.User.Role.ASTRONOMER)


@pytest.fixture
def owner_client(client, owner):
    client.force_login(owner)
    return client


@pytest.fixture
def operator_client(client):
    client.force_login(f.UserFactory(role=m.User.Role.OPERATOR))
    return client


@pytest.fixture
def other_client(client):
    client.force_login(f.UserFactory(role=m.User.Role.ASTRONOMER))
    return client


@pytest.fixture
def analysed_image(data_dir, detector, owner):  # noqa: F811
    sequence = f.SequenceFactory(request=f.RequestFactory(owner=owner, name="M51 deep"), target_name="M51")
    image = store_image(detector, seed=31, sequence=sequence)
    services.image_analyze(image_id=image.pk)
    return image


def test_image_list_shows_the_astronomers_own_images_with_their_analysis(analysed_image, detector, owner_client):  # noqa: F811
    store_image(detector, seed=32, when_utc=NIGHT_UTC + timedelta(minutes=5))  # another request's / no request

    response = owner_client.get(reverse("analyzer:image_list"))

    assert response.status_code == 200
    assert [img.pk for img in response.context["images"]] == [analysed_image.pk]
    html = response.content.decode()
    assert 'data-status="ok"' in html and reverse("analyzer:image_detail", args=[analysed_image.pk]) in html


def test_image_list_filters_and_sorts_newest_first(analysed_image, detector, operator_client):  # noqa: F811
    later = store_image(detector, seed=33, when_utc=NIGHT_UTC + timedelta(hours=1), filter_name="V")
    bias = store_image(detector, frame_type="BIAS", exposure_s=0.0, seed=34, when_utc=DUSK_UTC)
    url = reverse("analyzer:image_list")

    assert [img.pk for img in operator_client.get(url).context["images"]] == [later.pk, analysed_image.pk, bias.pk]
    assert [img.pk for img in operator_client.get(url, {"frame_type": "bias"}).context["images"]] == [bias.pk]
    assert [img.pk for img in operator_client.get(url, {"filter_name": "V"}).context["images"]] == [later.pk]
    assert [img.pk for img in operator_client.get(url, {"status": "ok"}).context["images"]] == [analysed_image.pk]
    assert [img.pk for img in operator_client.get(url, {"status": "none"}).context["images"]] == [later.pk, bias.pk]
    request_id = analysed_image.sequence.request_id
    assert [img.pk for img in operator_client.get(url, {"request": request_id}).context["images"]] == [
        analysed_image.pk]


def test_image_detail_shows_results_quicklook_header_and_download(analysed_image, owner_client):
    response = owner_client.get(reverse("analyzer:image_detail", args=[analysed_image.pk]))

    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="analysis-results"' in html and "Zero point" in html
    assert reverse("analyzer:image_quicklook", args=[analysed_image.pk]) in html
    assert reverse("analyzer:image_fits", args=[analysed_image.pk]) in html
    assert "EXPTIME" in html and "M51 deep" in html
    assert "Re-analyse" not in html  # operators only

    png = owner_client.get(reverse("analyzer:image_quicklook", args=[analysed_image.pk]))
    assert png.status_code == 200 and png["Content-Type"] == "image/png"
    assert b"".join(png.streaming_content)[:4] == b"\x89PNG"


def test_a_failed_analysis_shows_its_reason_on_the_image_page(data_dir, detector, operator_client):  # noqa: F811
    image = store_image(detector, content=b"SIMPLE  =                    T" + b"junk" * 300)
    services.image_analyze(image_id=image.pk)

    html = operator_client.get(reverse("analyzer:image_detail", args=[image.pk])).content.decode()

    assert 'id="failure-reason"' in html and "corrupt or unreadable FITS file" in html
    listing = operator_client.get(reverse("analyzer:image_list")).content.decode()
    assert 'data-status="failed"' in listing and "corrupt or unreadable" in listing


def test_fits_download_is_for_the_owner_and_operators_only(analysed_image, client, data_dir):  # noqa: F811
    url = reverse("analyzer:image_fits", args=[analysed_image.pk])
    quicklook_url = reverse("analyzer:image_quicklook", args=[analysed_image.pk])

    assert client.get(url).status_code == 302  # anonymous: to the login page

    client.force_login(f.UserFactory(role=m.User.Role.ASTRONOMER))
    assert client.get(url).status_code == 404
    assert client.get(quicklook_url).status_code == 404
    assert client.get(reverse("analyzer:image_detail", args=[analysed_image.pk])).status_code == 404

    client.force_login(analysed_image.sequence.request.owner)
    response = client.get(url)
    assert response.status_code == 200
    assert "attachment" in response["Content-Disposition"]
    assert b"".join(response.streaming_content) == (data_dir / analysed_image.file_path).read_bytes()

    client.force_login(f.UserFactory(role=m.User.Role.OPERATOR))
    assert client.get(url).status_code == 200


def test_operators_can_queue_a_reanalysis(analysed_image, operator_client, django_capture_on_commit_callbacks):
    from analyzer import tasks

    with mock.patch.object(tasks.analyze_image, "apply_async") as send, \
            django_capture_on_commit_callbacks(execute=True):
        response = operator_client.post(reverse("analyzer:image_reanalyse", args=[analysed_image.pk]))
    assert response.status_code == 302
    send.assert_called_once_with(kwargs={"image_id": analysed_image.pk})
    assert m.AnalysisResult.objects.get(image=analysed_image).status == "pending"


def test_astronomers_cannot_queue_a_reanalysis(analysed_image, owner_client):
    assert owner_client.post(reverse("analyzer:image_reanalyse", args=[analysed_image.pk])).status_code == 403


def test_master_list_shows_the_masters(data_dir, detector, operator_client):  # noqa: F811
    store_calibration_series(detector)
    built = services.calibration_masters_build(detector_id=detector.pk, when=DUSK_UTC + timedelta(hours=1))

    response = operator_client.get(reverse("analyzer:master_list"))

    assert response.status_code == 200
    assert {mm.pk for mm in response.context["page"]} == {mm.pk for mm in built}
    download = operator_client.get(reverse("analyzer:master_fits", args=[built[0].pk]))
    assert download.status_code == 200 and b"".join(download.streaming_content)[:6] == b"SIMPLE"


def test_event_afterglow_panel_plots_the_light_curve(data_dir, detector, owner_client):  # noqa: F811
    event, sequence, transient = make_alert_request(detector)
    for image in store_alert_images(detector, sequence, transient, times_s=(300.0, 600.0, 900.0)):
        services.image_analyze(image_id=image.pk)

    # What the event page includes: a panel that loads itself from analyzer:event_afterglow.
    include = render_to_string("analyzer/_light_curve.html", {"event": event})
    assert reverse("analyzer:event_afterglow", args=[event.pk]) in include and "plotly.min.js" in include

    response = owner_client.get(reverse("analyzer:event_afterglow", args=[event.pk]))

    assert response.status_code == 200
    html = response.content.decode()
    assert "fading" in html and 'type: "log"' in html and 'autorange: "reversed"' in html
    data = json.loads(html.split('<script type="application/json">')[1].split("</script>")[0])
    assert len(data["points"]) == 3 and data["fading"] is True
    table = html.split(f'id="afterglow-{event.pk}-candidates"')[1].split("</table>")[0]
    assert table.count("<tr>") == 1 + len(response.context["candidates"])


def test_event_afterglow_panel_without_images_says_so(db, owner_client):
    event = m.AlertEvent.objects.create(name="GRB 260302A", burst_time=NIGHT_UTC)
    html = owner_client.get(reverse("analyzer:event_afterglow", args=[event.pk])).content.decode()
    assert "No analysed image of this event yet" in html


def test_images_table_partial_for_the_request_page(analysed_image):
    html = render_to_string("analyzer/_images_table.html",
                            {"images": selectors.images_for_request(analysed_image.sequence.request_id)})
    assert f'data-image-id="{analysed_image.pk}"' in html and 'data-status="ok"' in html
    quicklook = render_to_string("analyzer/_quicklook.html", {"image": analysed_image})
    assert reverse("analyzer:image_quicklook", args=[analysed_image.pk]) in quicklook


# --------------------------------------------------------------------------------------------
# REST API
# --------------------------------------------------------------------------------------------


def test_api_lists_a_requests_images_with_their_analysis(analysed_image, detector, owner_client):  # noqa: F811
    store_image(detector, seed=35, when_utc=NIGHT_UTC + timedelta(minutes=10))  # not the owner's
    request_id = analysed_image.sequence.request_id

    body = owner_client.get("/api/images/", {"request": request_id}).json()

    assert body["count"] == 1
    row = body["results"][0]
    assert row["id"] == analysed_image.pk and row["request"] == request_id
    assert row["analysis"]["status"] == "ok" and row["analysis"]["zero_point_mag"] is not None
    assert "results" not in row["analysis"]  # the full result is on the detail endpoint
    assert owner_client.get("/api/images/").json()["count"] == 1
    assert owner_client.get("/api/images/", {"request": "x"}).status_code == 400

    detail = owner_client.get(f"/api/images/{analysed_image.pk}/").json()
    assert detail["analysis"]["results"]["fwhm_arcsec"] == detail["analysis"]["fwhm_arcsec"]
    assert detail["analysis"]["quicklook_url"].endswith(reverse("analyzer:image_quicklook",
                                                                 args=[analysed_image.pk]))


def test_api_hides_other_peoples_images_and_shows_operators_all(analysed_image, detector, client):  # noqa: F811
    store_image(detector, seed=36, when_utc=NIGHT_UTC + timedelta(minutes=10))
    client.force_login(f.UserFactory(role=m.User.Role.ASTRONOMER))
    assert client.get("/api/images/").json()["count"] == 0
    assert client.get(f"/api/images/{analysed_image.pk}/").status_code == 404

    client.force_login(f.UserFactory(role=m.User.Role.OPERATOR))
    assert client.get("/api/images/").json()["count"] == 2
    assert client.get(f"/api/images/{analysed_image.pk}/").status_code == 200


@pytest.mark.browser
@pytest.mark.slow
def test_the_afterglow_panel_draws_the_light_curve_in_a_browser(require_chromium,
                                                                 transactional_db, data_dir, detector,  # noqa: F811
                                                                 live_server, page, client, screenshot_dir):
    event, sequence, transient = make_alert_request(detector)
    images = store_alert_images(detector, sequence, transient, times_s=(300.0, 600.0, 900.0))
    for image in images:
        services.image_analyze(image_id=image.pk)
    client.force_login(sequence.request.owner)
    page.context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value,
                               "url": live_server.url}])
    page.set_default_timeout(20_000)

    page.goto(f"{live_server.url}{reverse('analyzer:image_detail', args=[images[-1].pk])}")

    # htmx loads the panel, Plotly draws three detections on a log time axis with magnitudes reversed.
    page.wait_for_selector(f"#afterglow-{event.pk}-plot .main-svg")
    assert page.locator(f"#afterglow-{event.pk}-plot .scatterlayer .trace").first.locator(".point").count() == 3
    assert page.locator(f"#afterglow-{event.pk}-plot .xtitle").text_content() == "Time since the burst (s)"
    boxes = [p.bounding_box() for p in page.locator(f"#afterglow-{event.pk}-plot .scatterlayer .trace").first
             .locator(".point").all()]
    # Later points are to the right and, fading to larger magnitudes, lower: the magnitude axis is inverted.
    assert [b["x"] for b in boxes] == sorted(b["x"] for b in boxes)
    assert [b["y"] for b in boxes] == sorted(b["y"] for b in boxes) and boxes[0]["y"] < boxes[-1]["y"]
    assert page.locator("img.figure-img").evaluate("img => img.naturalWidth") > 0  # the protected quick-look
    page.screenshot(path=str(screenshot_dir / "analyzer_image_detail_afterglow.png"), full_page=True)
