from __future__ import annotations

from datetime import UTC, datetime, timedelta

import factory

from pyrosapp import models as m


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.User
        django_get_or_create = ("email",)

    email = factory.Sequence(lambda n: f"user{n}@example.org")
    first_name = "Test"
    last_name = factory.Sequence(lambda n: f"User{n}")
    role = m.User.Role.ASTRONOMER
    account_state = m.User.AccountState.VALIDATED
    password = factory.django.Password("correct-horse-battery")


class SiteFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.Site

    name = factory.Sequence(lambda n: f"Site {n}")
    latitude_deg = 43.9317
    longitude_deg = 5.7122
    elevation_m = 650.0


class TelescopeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.Telescope

    site = factory.SubFactory(SiteFactory)
    name = factory.Sequence(lambda n: f"Telescope {n}")


class FilterWheelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.FilterWheel

    telescope = factory.SubFactory(TelescopeFactory)
    name = factory.Sequence(lambda n: f"Wheel {n}")


class FilterFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.Filter

    wheel = factory.SubFactory(FilterWheelFactory)
    name = "R"
    slot = 4


class DetectorFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.Detector

    telescope = factory.SubFactory(TelescopeFactory)
    name = factory.Sequence(lambda n: f"Camera {n}")


class ProgramFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.ScientificProgram

    name = factory.Sequence(lambda n: f"Program {n}")
    pi = factory.SubFactory(UserFactory)


class RequestFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.Request

    name = factory.Sequence(lambda n: f"Request {n}")
    owner = factory.SubFactory(UserFactory)
    program = factory.SubFactory(ProgramFactory)


class SequenceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.Sequence

    request = factory.SubFactory(RequestFactory)
    name = factory.Sequence(lambda n: f"Sequence {n}")
    target_name = "M51"
    ra_deg = 202.4696
    dec_deg = 47.1952
    window_start = factory.LazyFunction(lambda: datetime.now(UTC))
    window_end = factory.LazyFunction(lambda: datetime.now(UTC) + timedelta(days=2))


class AlbumFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.Album

    sequence = factory.SubFactory(SequenceFactory)
    detector = factory.SubFactory(DetectorFactory)
