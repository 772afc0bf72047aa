"""The database itself refuses impossible rows, whatever code path tries to store them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction

from pyrosapp import models as m
from pyrosapp.tests.factories import AlbumFactory, FilterFactory, SequenceFactory, UserFactory

pytestmark = pytest.mark.django_db


def _plan(**overrides):
    album = AlbumFactory()
    values = dict(album=album, filter=FilterFactory(), exposure_s=60, count=5, binning=1)
    values.update(overrides)
    return m.Plan(**values)


def test_a_valid_plan_is_stored():
    plan = _plan()
    plan.save()
    assert m.Plan.objects.filter(pk=plan.pk).exists()


@pytest.mark.parametrize("overrides", [
    {"count": 0},
    {"exposure_s": -1.0},
    {"exposure_s": 0.0},
    {"binning": 0},
    {"binning": 9},
])
def test_impossible_plans_cannot_be_stored(overrides):
    with pytest.raises(IntegrityError), transaction.atomic():
        _plan(**overrides).save()


def test_bias_frames_may_have_zero_exposure():
    _plan(frame_type="bias", exposure_s=0.0).save()


@pytest.mark.parametrize("overrides", [
    {"dec_deg": 91.0},
    {"ra_deg": 360.0},
    {"ra_deg": -0.5},
    {"priority": 0},
    {"priority": 11},
    {"max_airmass": 0.9},
    {"min_altitude_deg": -5},
    {"min_moon_separation_deg": 200},
    {"tolerance_early_s": -1},
])
def test_impossible_sequences_cannot_be_stored(overrides):
    seq = SequenceFactory.build(request=SequenceFactory().request, **overrides)
    with pytest.raises(IntegrityError), transaction.atomic():
        seq.save()


def test_a_validity_window_must_end_after_it_starts():
    seq = SequenceFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        m.Sequence.objects.filter(pk=seq.pk).update(window_end=seq.window_start - timedelta(minutes=1))


def test_alert_ivorn_is_unique():
    from django.utils import timezone

    m.Alert.objects.create(ivorn="ivo://test#1", raw_xml=b"<x/>", sha256="a", received_at=timezone.now())
    with pytest.raises(IntegrityError), transaction.atomic():
        m.Alert.objects.create(ivorn="ivo://test#1", raw_xml=b"<y/>", sha256="b", received_at=timezone.now())


def test_one_image_per_exposure_of_a_plan():
    from django.utils import timezone

    plan = _plan()
    plan.save()
    det = plan.album.detector
    m.Image.objects.create(plan=plan, detector=det, index_in_plan=1, file_path="a.fits", date_obs=timezone.now(),
                           exposure_s=60)
    with pytest.raises(IntegrityError), transaction.atomic():
        m.Image.objects.create(plan=plan, detector=det, index_in_plan=1, file_path="b.fits", date_obs=timezone.now(),
                               exposure_s=60)


def test_user_role_must_be_known():
    user = UserFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        m.User.objects.filter(pk=user.pk).update(role="wizard")


def test_backoffice_refuses_a_strategy_with_a_broken_template(client):
    from pyrosapp.tests.factories import UserFactory

    client.force_login(UserFactory(role="administrator", is_staff=True, is_superuser=True))
    response = client.post("/admin/pyrosapp/strategy/add/", {
        "name": "Broken", "missions": "[]", "notice_types": "[]", "triggers": "on", "max_error_deg": "0.2",
        "min_altitude_deg": "20", "template": '{"sequences": []}'})
    assert response.status_code == 200
    assert "non-empty" in response.content.decode()
    assert not m.Strategy.objects.filter(name="Broken").exists()
