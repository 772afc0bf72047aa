"""The demo observatory seeded by `manage.py seed_demo` (idempotent)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import transaction

from pyrosapp.models import (
    Allocation,
    Detector,
    Dome,
    Filter,
    FilterWheel,
    ObservatoryState,
    Period,
    ScientificProgram,
    Site,
    Telescope,
    User,
)

# Fixed real sites for PYROS_DEMO_SITE (latitude, east longitude, elevation).
KNOWN_SITES = {
    "ohp": ("Observatoire de Haute-Provence", 43.9317, 5.7122, 650.0),
    "calern": ("Calern (TAROT)", 43.7524, 6.9214, 1270.0),
    "san-pedro-martir": ("San Pedro Mártir (Colibri)", 31.0439, -115.4637, 2830.0),
    "la-silla": ("La Silla", -29.2567, -70.7300, 2400.0),
}
DEMO_SITE_NAME = "Demo site (dark now)"
FILTER_NAMES = ("U", "B", "V", "R", "I", "Clear")

DEMO_USERS = {
    "astronomer": ("astronomer@pyros.local", "astronomer-demo", "Ada", "Astronomer"),
    "operator": ("operator@pyros.local", "operator-demo", "Otto", "Operator"),
    "administrator": ("admin@pyros.local", "admin-demo", "Alice", "Admin"),
}


@dataclass
class DemoSeed:
    site: Site
    telescope: Telescope
    detector: Detector
    program: ScientificProgram
    alert_program: ScientificProgram
    credentials: dict[str, tuple[str, str]]


def dark_site_coordinates(now: datetime) -> tuple[float, float]:
    """(latitude, east longitude) of a place where it is local midnight now and the Sun is far below the
    horizon: longitude opposite the Sun, latitude opposite its declination (kept within ±30°)."""
    from astropy.coordinates import get_sun

    from sky.astro import to_time

    t = to_time(now)
    sun = get_sun(t)
    gmst_deg = t.sidereal_time("mean", "greenwich").deg
    # Hour angle of the Sun = LST - RA; local midnight where it is 180°.
    lon = (sun.ra.deg - gmst_deg + 180.0 + 540.0) % 360.0 - 180.0
    lat = max(-30.0, min(30.0, -sun.dec.deg))
    return round(lat, 4), round(lon, 4)


def _sun_altitude_deg(site: Site, now: datetime) -> float:
    from sky.sun import sun_altitude_deg

    return sun_altitude_deg(site, now)


@transaction.atomic
def seed_demo(*, site_key: str = "", now: datetime | None = None) -> DemoSeed:
    now = now or datetime.now(UTC)
    if site_key:
        if site_key not in KNOWN_SITES:
            raise ValueError(f"unknown PYROS_DEMO_SITE {site_key!r}: choose one of {', '.join(sorted(KNOWN_SITES))}")
        name, lat, lon, elev = KNOWN_SITES[site_key]
        site, _ = Site.objects.update_or_create(name=name, defaults=dict(latitude_deg=lat, longitude_deg=lon,
                                                                         elevation_m=elev))
    else:
        site = Site.objects.filter(name=DEMO_SITE_NAME).first()
        # Move the demo site only when it is not dark there any more: never in the middle of its night.
        if site is None or _sun_altitude_deg(site, now) > -12.0:
            lat, lon = dark_site_coordinates(now)
            site, _ = Site.objects.update_or_create(name=DEMO_SITE_NAME, defaults=dict(
                latitude_deg=lat, longitude_deg=lon, elevation_m=1000.0))
    Site.objects.exclude(pk=site.pk).update(is_active=False)
    Site.objects.filter(pk=site.pk).update(is_active=True)
    site.refresh_from_db()

    telescope, _ = Telescope.objects.get_or_create(name="PyROS T1", defaults=dict(site=site))
    if telescope.site_id != site.pk:
        telescope.site = site
        telescope.save(update_fields=["site"])
    dome, _ = Dome.objects.get_or_create(name="PyROS Dome", defaults=dict(site=site))
    if dome.site_id != site.pk:
        dome.site = site
        dome.save(update_fields=["site"])
    wheel, _ = FilterWheel.objects.get_or_create(name="PyROS Filter Wheel", defaults=dict(telescope=telescope))
    for slot, fname in enumerate(FILTER_NAMES, start=1):
        Filter.objects.get_or_create(wheel=wheel, name=fname, defaults=dict(slot=slot))
    detector, _ = Detector.objects.get_or_create(name="PyROS Camera", defaults=dict(
        telescope=telescope, filter_wheel=wheel,
        calibration_plan={"bias": 7, "darks": [[10, 3], [60, 3]], "flats": {"R": 5, "V": 5}, "flat_exposure_s": 2},
    ))
    ObservatoryState.objects.get_or_create(site=site)

    users = {}
    for role, (email, password, first, last) in DEMO_USERS.items():
        user = User.objects.filter(email=email).first()
        if user is None:
            user = User.objects.create_user(email=email, password=password, first_name=first, last_name=last,
                                            role=role, institute="PyROS demo",
                                            account_state=User.AccountState.VALIDATED,
                                            is_staff=role == "administrator", is_superuser=role == "administrator")
        users[role] = (user, email, password)

    half = 1 if now.month <= 6 else 7
    start = datetime(now.year, half, 1, tzinfo=UTC)
    end = datetime(now.year + (half == 7), 7 if half == 1 else 1, 1, tzinfo=UTC)
    period, _ = Period.objects.get_or_create(name=f"{now.year}{'A' if half == 1 else 'B'}",
                                             defaults=dict(start=start, end=end))

    astronomer, operator, admin = users["astronomer"][0], users["operator"][0], users["administrator"][0]
    program, _ = ScientificProgram.objects.get_or_create(name="Demo program", defaults=dict(
        pi=astronomer, priority=5, description="Demo observing program"))
    program.members.add(astronomer)
    alert_program, _ = ScientificProgram.objects.get_or_create(name="GRB follow-up", defaults=dict(
        pi=admin, priority=10, is_alert_program=True, description="Requests built from VOEvent alerts"))
    alert_program.members.add(operator, admin)
    Allocation.objects.get_or_create(program=program, period=period, defaults=dict(allocated_s=100 * 3600.0))
    Allocation.objects.get_or_create(program=alert_program, period=period, defaults=dict(allocated_s=200 * 3600.0))

    from alert_manager.demo import seed_strategies

    seed_strategies()
    return DemoSeed(site=site, telescope=telescope, detector=detector, program=program, alert_program=alert_program,
                    credentials={role: (email, password) for role, (_, email, password) in users.items()})
