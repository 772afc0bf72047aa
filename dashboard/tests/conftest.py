from __future__ import annotations

import pytest

from pyrosapp import models as m
from pyrosapp.tests.factories import SiteFactory, UserFactory


@pytest.fixture
def site(db) -> m.Site:
    site = SiteFactory(name="Test site", is_active=True)
    m.ObservatoryState.objects.create(site=site, phase="night", mode="automatic", safety="safe", version=7)
    return site


@pytest.fixture
def astronomer(db) -> m.User:
    return UserFactory(email="ada@example.org", role=m.User.Role.ASTRONOMER)


@pytest.fixture
def operator(db) -> m.User:
    return UserFactory(email="otto@example.org", role=m.User.Role.OPERATOR)


@pytest.fixture
def astronomer_client(client, astronomer):
    client.force_login(astronomer)
    return client


@pytest.fixture
def operator_client(client, operator):
    client.force_login(operator)
    return client
