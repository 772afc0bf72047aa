"""The request page lists the request's images with their analysis."""

import pytest
from django.utils import timezone

from pyrosapp.models import AnalysisResult, Image
from pyrosapp.tests.factories import AlbumFactory

pytestmark = pytest.mark.django_db


def test_request_page_shows_its_images(client):
    album = AlbumFactory()
    seq = album.sequence
    image = Image.objects.create(sequence=seq, detector=album.detector, file_path="2026-11-20/light/M51_R_60s.fits",
                                 date_obs=timezone.now(), exposure_s=60, filter_name="R")
    AnalysisResult.objects.create(image=image, status="ok", n_sources=321, fwhm_arcsec=2.1)
    client.force_login(seq.request.owner)
    page = client.get(f"/requests/{seq.request_id}/").content.decode()
    assert f"/images/{image.pk}/" in page
    assert "No image yet" not in page
